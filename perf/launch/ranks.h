// Self-launched ranks for the EP GPU tests and epyard_ep_perf: the parent takes an NCCL unique
// id, forks one process per rank (GPU = rank modulo the visible GPUs), waits for all with a
// deadline, and kills the others as soon as one fails, so a broken rank never leaves the rest
// hanging. The parent never initialises CUDA (a forked child could not use it then).
#pragma once

#include <nccl.h>

#include <functional>

namespace epyard::launch {

struct RankEnv {
  int rank = 0;
  int num_ranks = 0;
  int device = 0;
  ncclUniqueId id{};
};

// GPUs visible to a process (counted in a short-lived child); 0 without a driver or GPU.
int visibleGpus();

// Runs `body` in `num_ranks` processes. Returns 0 when every rank returned 0, else the first
// failing rank's code (124 when the deadline passed).
int runRanks(int num_ranks, int timeout_s, const std::function<int(const RankEnv&)>& body);

}  // namespace epyard::launch
