// Where a rank runs when there may be fewer GPUs than ranks (the one-GPU machines): rank r uses
// GPU r % gpus. With more ranks than GPUs, several ranks share a GPU, in one of two ways:
//   kSeparateHosts: each rank gets NCCL_HOSTID=epyard-host-<r> (and NCCL_MNNVL_ENABLE=0), so NCCL
//     takes it for a node of its own; ranks reach each other only through the network transport
//     (NCCL's Socket or a net plugin). Any NCCL.
//   kSharedGpu: NCCL_MULTI_RANK_GPU_ENABLE=1 (NCCL >= 2.30.3): the ranks stay one host, so
//     NCCL's P2P transport and symmetric windows may join them in one LSA team.
// Test and benchmark launchers only (the libraries never set environment variables).
#pragma once

#include <string>

namespace epyard::launch {

enum class Sharing { kSeparateHosts, kSharedGpu };

struct Placement {
  int device = 0;
  bool shares_gpu = false;  // more ranks than GPUs
};

Placement placeRank(int rank, int num_ranks, int gpus);

// Sets the environment of this process (a rank, before it initialises NCCL) for `p`.
void applyPlacement(const Placement& p, int rank, Sharing how);

// One line for the logs: "4 ranks on 1 GPU: 4 per GPU, each its own host (NCCL_HOSTID)".
std::string describePlacement(int num_ranks, int gpus, Sharing how);

// "separate-hosts" / "shared-gpu" (the value of a --sharing option); false if unknown.
bool parseSharing(const std::string& text, Sharing* out);

}  // namespace epyard::launch
