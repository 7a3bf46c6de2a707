// The life of one NCCL communicator that the caller's threads, the watchdog and epyard.ep groups
// share. Every NCCL call on it runs inside a Use. abort() marks it aborted at once (so waiters
// raise with the reason) but frees it (ncclCommAbort) only once no Use is held: no thread ever
// calls NCCL with a communicator another thread freed. Free of torch, so it is tested alone,
// under ThreadSanitizer, on the CPU.
#pragma once

#include <nccl.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace epyard::c10d_backend {

class CommState {
 public:
  // How the communicator is freed: ncclCommAbort when `aborted`, ncclCommDestroy otherwise.
  using Free = std::function<void(ncclComm_t comm, bool aborted)>;
  CommState(ncclComm_t comm, Free free);
  ~CommState();  // frees the communicator if an abort has not (no Use may be left)
  CommState(const CommState&) = delete;
  CommState& operator=(const CommState&) = delete;

  // While a Use is held the communicator stays valid. Keep the CommState alive longer.
  class Use {
   public:
    Use(Use&& other) noexcept : state_(std::exchange(other.state_, nullptr)), comm_(other.comm_) {}
    Use& operator=(Use&& other) noexcept {
      if (this != &other) {
        if (state_ != nullptr) state_->leave();
        state_ = std::exchange(other.state_, nullptr);
        comm_ = other.comm_;
      }
      return *this;
    }
    Use(const Use&) = delete;
    ~Use() {
      if (state_ != nullptr) state_->leave();
    }
    ncclComm_t comm() const { return comm_; }

   private:
    friend class CommState;
    Use(CommState* state, ncclComm_t comm) : state_(state), comm_(comm) {}
    CommState* state_;
    ncclComm_t comm_;
  };

  // A Use, or none when the communicator was aborted (the reason in *why).
  std::optional<Use> enter(std::string* why);
  // Marks the communicator aborted (the first reason stays) and frees it now if no Use is held,
  // else when the last one ends. Returns the number of Uses the free waits for (0: freed now),
  // or -1 if it was aborted already.
  int abort(const std::string& reason);
  bool aborted() const { return aborted_.load(std::memory_order_acquire); }
  std::string reason() const;
  int uses() const;

 private:
  void leave();
  mutable std::mutex mu_;
  ncclComm_t comm_;  // null once freed
  int uses_ = 0;
  std::atomic<bool> aborted_{false};
  std::string reason_;  // set once, before aborted_, under mu_
  Free free_;
};

}  // namespace epyard::c10d_backend
