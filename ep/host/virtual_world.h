// The in-process stand-in for NCCL's collective host steps under virtual ranks (see
// virtual_ranks.h): a bounded barrier whose last arriving rank may act for everybody (allocate
// or free the world's shared buffer) while the others wait.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <nccl.h>

#include "host/config_check.h"
#include "host/virtual_ranks.h"

struct epyardEpVirtualWorld {
  int num_ranks = 0;
  int device = 0;
  uint64_t timeout_ms = 0;

  // Every rank of the world enters with the same `what`; the last to arrive runs `last` (under
  // the world's lock; it may fill in a message) and its result is everybody's. Fails, naming
  // the ranks that did not come, when the others do not all arrive within timeout_ms, or when a
  // rank arrives for another step; then nobody runs `last`. On failure *error holds the message.
  using Step = std::function<ncclResult_t(std::string* error)>;
  ncclResult_t collective(int rank, const std::string& what, const Step& last, std::string* error);

  // Set by the `last` step of a buffer exchange, read by every rank after it.
  void* shared = nullptr;
  size_t shared_bytes = 0;
  // One slot per rank, written by that rank before the configuration check's step.
  std::vector<epyard::ep::GroupSignature> signatures;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;
  std::vector<int> arrived_;  // ranks in the step now filling
  std::string step_;          // its `what`
  ncclResult_t result_ = ncclSuccess;
  std::string result_error_;
};
