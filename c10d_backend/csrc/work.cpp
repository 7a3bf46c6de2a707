#include "work.hpp"

#include <c10/cuda/CUDAGuard.h>

#include <thread>

namespace epyard::c10d_backend {

WorkEpyard::WorkEpyard(int rank, ::c10d::OpType type, const char* name, std::shared_ptr<DeviceComm> dc,
                       std::vector<at::Tensor> outputs, std::vector<at::Tensor> inputs,
                       std::chrono::milliseconds timeout, bool blocking)
    : Work(rank, type),
      name_(name),
      dc_(std::move(dc)),
      outputs_(std::move(outputs)),
      inputs_(std::move(inputs)),
      future_(c10::make_intrusive<at::ivalue::Future>(
          c10::ListType::create(c10::TensorType::get()),
          std::vector<c10::Device>{c10::Device(c10::DeviceType::CUDA, dc_->device)})),
      start_(std::chrono::steady_clock::now()),
      timeout_(timeout),
      blocking_(blocking) {}

void WorkEpyard::finish() {
  end_.record(dc_->stream);
  c10::cuda::CUDAStreamGuard guard(dc_->stream);
  future_->markCompleted(at::IValue(outputs_));
}

void WorkEpyard::raiseIfAborted() const {
  if (dc_->state.aborted()) TORCH_CHECK(false, "epyard: ", name_, " failed: ", dc_->state.reason());
}

bool WorkEpyard::isCompleted() {
  if (dc_->state.aborted()) return true;
  return end_.query();
}

bool WorkEpyard::isSuccess() const { return !dc_->state.aborted() && const_cast<at::cuda::CUDAEvent&>(end_).query(); }

bool WorkEpyard::wait(std::chrono::milliseconds timeout) {
  raiseIfAborted();
  end_.block(c10::cuda::getCurrentCUDAStream(dc_->device));
  if (blocking_ || timeout != kNoTimeout) {
    const auto limit = timeout != kNoTimeout ? timeout : timeout_;
    while (!end_.query()) {
      raiseIfAborted();
      TORCH_CHECK(std::chrono::steady_clock::now() - start_ < limit, "epyard: ", name_,
                  " did not complete within ", limit.count(), " ms");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  raiseIfAborted();
  return true;
}

void WorkEpyard::synchronize() { wait(); }

c10::intrusive_ptr<c10::ivalue::Future> WorkEpyard::getFuture() { return future_; }

std::vector<at::Tensor> WorkEpyard::result() { return outputs_; }

bool WorkEpyard::overdue() const {
  return !dc_->state.aborted() && !const_cast<at::cuda::CUDAEvent&>(end_).query() &&
         std::chrono::steady_clock::now() - start_ > timeout_;
}

std::string WorkEpyard::describe() const {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_);
  return std::string(name_) + " on cuda:" + std::to_string(dc_->device) + " has not completed after " +
         std::to_string(ms.count()) + " ms (timeout " + std::to_string(timeout_.count()) +
         " ms): a peer is probably gone or stuck";
}

}  // namespace epyard::c10d_backend
