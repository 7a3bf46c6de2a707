#include "launch/placement.h"

#include <cstdio>
#include <cstdlib>

namespace epyard::launch {

Placement placeRank(int rank, int num_ranks, int gpus) {
  Placement p;
  p.device = gpus > 0 ? rank % gpus : 0;
  p.shares_gpu = gpus > 0 && num_ranks > gpus;
  return p;
}

void applyPlacement(const Placement& p, int rank, Sharing how) {
  if (!p.shares_gpu) return;
  if (how == Sharing::kSeparateHosts) {
    const std::string id = "epyard-host-" + std::to_string(rank);
    setenv("NCCL_HOSTID", id.c_str(), 1);
    setenv("NCCL_MNNVL_ENABLE", "0", 1);
  } else {
    setenv("NCCL_MULTI_RANK_GPU_ENABLE", "1", 1);
  }
}

std::string describePlacement(int num_ranks, int gpus, Sharing how) {
  std::string text = std::to_string(num_ranks) + " ranks on " + std::to_string(gpus) + " GPU" +
                     (gpus == 1 ? "" : "s");
  if (gpus <= 0 || num_ranks <= gpus) return text + ": one per GPU";
  const int per = (num_ranks + gpus - 1) / gpus;
  return text + ": up to " + std::to_string(per) + " per GPU, " +
         (how == Sharing::kSeparateHosts
              ? "each its own host (NCCL_HOSTID per rank, NCCL_MNNVL_ENABLE=0; network transport)"
              : "one host (NCCL_MULTI_RANK_GPU_ENABLE=1, NCCL >= 2.30.3)");
}

bool parseSharing(const std::string& text, Sharing* out) {
  if (text == "separate-hosts") {
    *out = Sharing::kSeparateHosts;
  } else if (text == "shared-gpu") {
    *out = Sharing::kSharedGpu;
  } else {
    return false;
  }
  return true;
}

}  // namespace epyard::launch
