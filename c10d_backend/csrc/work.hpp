// The Work an epyard collective returns: an event recorded on the group's stream after the
// NCCL call. wait() makes the caller's current stream wait on it (no CPU block, as
// ProcessGroupNCCL); the future carries the output tensors and is CUDA-aware, so DDP comm hooks
// chain on it. A barrier's wait() blocks the CPU until done. Tensors stay referenced by the
// Work (and recorded on the stream) until it is destroyed. Errors and timeouts found by the
// group's watchdog make wait()/isCompleted() raise with the reason.
#pragma once

#include <ATen/core/ivalue.h>
#include <ATen/cuda/CUDAEvent.h>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <chrono>
#include <memory>

#include "nccl_comms.hpp"

namespace epyard::c10d_backend {

class WorkEpyard : public ::c10d::Work {
 public:
  WorkEpyard(int rank, ::c10d::OpType type, const char* name, std::shared_ptr<DeviceComm> dc,
             std::vector<at::Tensor> outputs, std::vector<at::Tensor> inputs,
             std::chrono::milliseconds timeout, bool blocking);
  // Records the end event on the comm's stream and completes the future (call right after the
  // NCCL calls were enqueued).
  void finish();

  bool isCompleted() override;
  bool isSuccess() const override;
  bool wait(std::chrono::milliseconds timeout = kNoTimeout) override;
  void synchronize() override;
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override;
  std::vector<at::Tensor> result() override;

  // For the watchdog.
  bool overdue() const;
  std::string describe() const;

 private:
  void raiseIfAborted() const;
  const char* name_;
  std::shared_ptr<DeviceComm> dc_;
  at::cuda::CUDAEvent end_;
  std::vector<at::Tensor> outputs_, inputs_;
  c10::intrusive_ptr<at::ivalue::Future> future_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::milliseconds timeout_;
  bool blocking_;
};

}  // namespace epyard::c10d_backend
