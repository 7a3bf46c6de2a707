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

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "comm_state.hpp"

namespace epyard::c10d_backend {

// One communicator (its life in `state`) and the stream its operations run on.
struct DeviceComm {
  CommState state;
  c10::cuda::CUDAStream stream;
  c10::DeviceIndex device;
  DeviceComm(ncclComm_t c, c10::cuda::CUDAStream s, c10::DeviceIndex d);
};

class NcclComms {
 public:
  NcclComms(c10::intrusive_ptr<::c10d::Store> store, int rank, int size, std::string prefix,
            std::chrono::milliseconds timeout);
  // The communicator of `device`, created (collectively) on first use. Creation runs outside
  // the lock, so the watchdog and other devices' calls go on meanwhile; a second caller for the
  // same device waits for it (bounded by the group's timeout).
  std::shared_ptr<DeviceComm> get(c10::DeviceIndex device);
  // Aborts every communicator (after a timeout or on request), those being created included;
  // later use raises with `reason`.
  void abortAll(const std::string& reason);
  // The communicators made so far (not those being created).
  std::vector<std::shared_ptr<DeviceComm>> all();

 private:
  struct Slot {
    std::shared_ptr<DeviceComm> dc;  // set once made
    bool done = false;
    std::string error;  // why it could not be made
  };
  std::shared_ptr<DeviceComm> create(c10::DeviceIndex device, const std::string& key);
  c10::intrusive_ptr<::c10d::Store> store_;
  int rank_, size_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable made_;
  int created_ = 0;  // communicators begun so far: names the store key of the next one's id
  std::string abort_reason_;  // set by abortAll: communicators made later are aborted at once
  std::unordered_map<c10::DeviceIndex, std::shared_ptr<Slot>> comms_;
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
