// Self-launched ranks for the EP GPU tests and epyard_ep_perf: the parent takes an NCCL unique
// id, forks one process per rank (placed by placement.h: GPU = rank modulo the visible GPUs),
// waits for all with a deadline, and kills the others as soon as one fails, so a broken rank
// never leaves the rest hanging. The parent never initialises CUDA (a forked child could not use
// it then). runThreads runs virtual ranks: one thread per rank in this process, one GPU.
#pragma once

#include <nccl.h>

#include <functional>

#include "launch/placement.h"

namespace epyard::launch {

struct RankEnv {
  int rank = 0;
  int num_ranks = 0;
  int device = 0;
  bool shares_gpu = false;   // more ranks than GPUs (see placement.h)
  void* world = nullptr;     // runThreads: the caller's virtual world (else null)
  ncclUniqueId id{};
};

// GPUs visible to a process (counted in a short-lived child); 0 without a driver or GPU.
int visibleGpus();

// Runs `body` in `num_ranks` processes. Returns 0 when every rank returned 0, else the first
// failing rank's code (124 when the deadline passed).
// `how`: how ranks share a GPU when there are more ranks than GPUs.
int runRanks(int num_ranks, int timeout_s, const std::function<int(const RankEnv&)>& body,
             Sharing how = Sharing::kSeparateHosts);

// Runs `body` in `num_ranks` threads of this process on GPU 0 (env.world = `world`). Returns 0
// when every rank returned 0, else the first failing rank's code; past the deadline the
// process exits with 124 (threads cannot be killed), naming the ranks still running.
int runThreads(int num_ranks, int timeout_s, void* world,
               const std::function<int(const RankEnv&)>& body);

}  // namespace epyard::launch
