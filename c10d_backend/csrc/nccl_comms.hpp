// NCCL communicators of one epyard process group: one per CUDA device, created on first use
// from an ncclUniqueId that rank 0 publishes through the c10d Store (the n-th communicator of
// the group under key "<prefix>/nccl_unique_id/<n>"). Also the mapping of torch
// dtypes and reduce ops to NCCL's, with errors that name what is not supported.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace epyard::c10d_backend {

// One communicator and the stream its operations run on.
struct DeviceComm {
  ncclComm_t comm = nullptr;
  c10::cuda::CUDAStream stream;
  c10::DeviceIndex device;
  std::atomic<bool> aborted{false};
  std::string abort_reason;
  DeviceComm(ncclComm_t c, c10::cuda::CUDAStream s, c10::DeviceIndex d) : comm(c), stream(s), device(d) {}
};

class NcclComms {
 public:
  NcclComms(c10::intrusive_ptr<::c10d::Store> store, int rank, int size, std::string prefix,
            std::chrono::milliseconds timeout);
  ~NcclComms();
  // The communicator of `device`, created (collectively) on first use.
  std::shared_ptr<DeviceComm> get(c10::DeviceIndex device);
  // Aborts every communicator (after a timeout or on request); later use raises.
  void abortAll(const std::string& reason);
  std::vector<std::shared_ptr<DeviceComm>> all();

 private:
  c10::intrusive_ptr<::c10d::Store> store_;
  int rank_, size_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  int created_ = 0;  // communicators made so far: names the store key of the next one's id
  std::unordered_map<c10::DeviceIndex, std::shared_ptr<DeviceComm>> comms_;
};

ncclDataType_t toNcclType(const at::Tensor& t, const char* op);
ncclRedOp_t toNcclOp(const ::c10d::ReduceOp& op, const at::Tensor& t, const char* what);
[[noreturn]] void throwNccl(ncclResult_t r, ncclComm_t comm, const char* call);

#define EPYARD_NCCL(comm, call)                                  \
  do {                                                           \
    ncclResult_t r_ = (call);                                    \
    if (r_ != ncclSuccess) ::epyard::c10d_backend::throwNccl(r_, comm, #call); \
  } while (0)

}  // namespace epyard::c10d_backend
