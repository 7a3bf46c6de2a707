#include "comm_state.hpp"

#include <utility>

namespace epyard::c10d_backend {

CommState::CommState(ncclComm_t comm, Free free) : comm_(comm), free_(std::move(free)) {}

CommState::~CommState() {
  if (comm_ != nullptr) free_(comm_, aborted());
}

std::optional<CommState::Use> CommState::enter(std::string* why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted()) {
    if (why != nullptr) *why = reason_;
    return std::nullopt;
  }
  ++uses_;
  return Use(this, comm_);
}

void CommState::leave() {
  ncclComm_t to_free = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (--uses_ == 0 && aborted()) to_free = std::exchange(comm_, nullptr);
  }
  if (to_free != nullptr) free_(to_free, true);  // outside the lock: ncclCommAbort takes a while
}

int CommState::abort(const std::string& reason) {
  ncclComm_t to_free = nullptr;
  int waiting = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (aborted()) return -1;
    reason_ = reason;
    aborted_.store(true, std::memory_order_release);
    waiting = uses_;
    if (uses_ == 0) to_free = std::exchange(comm_, nullptr);
  }
  if (to_free != nullptr) free_(to_free, true);
  return waiting;
}

std::string CommState::reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reason_;
}

int CommState::uses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return uses_;
}

}  // namespace epyard::c10d_backend
