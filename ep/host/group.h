// The host objects behind ncclEpGroup_t and ncclEpHandle_t. A group owns the symmetric buffer
// (registered as an NCCL window, or a virtual rank's slice of its world's buffer), the device
// comm, the peer memory, the device state and the host-mapped error word; a handle owns (or borrows) the routing memory of one batch and remembers what a
// send_only op needs for ncclEpComplete.
#pragma once

#include <nccl.h>
// NCCL 2.30's device headers define static helpers that host code never calls.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <nccl_device.h>
#pragma GCC diagnostic pop

#include <mutex>
#include <string>

#include "device/ll_types.h"
#include "nccl_ep.h"

namespace epyard::ep {

// The caller's allocator (callbacks report with cudaError_t), or cudaMalloc/cudaFree.
struct Allocator {
  ncclEpAllocConfig_t fns{};
  ncclResult_t allocate(void** ptr, size_t bytes) const;
  void release(void* ptr) const;
};

// Sizes of everything in the symmetric buffer, from the group's configuration.
LlBufferLayout llBufferLayout(int ranks, int experts, int max_tokens, unsigned max_token_bytes);
// Sizes of a handle's memory.
LlHandleLayout llHandleLayout(int ranks, int experts, int max_tokens, int top_k, bool rank_major);

// ncclEpGroup::staged: send_only ops of each kind waiting for ncclEpComplete, at most kMaxStaged.
constexpr int kStagedDispatch = 0, kStagedCombine = 1, kMaxStaged = 2;

}  // namespace epyard::ep

struct epyardEpVirtualWorld;

struct ncclEpGroup {
  ncclComm_t comm = nullptr;               // NCCL groups
  epyardEpVirtualWorld* world = nullptr;   // virtual-rank groups (tests; virtual_ranks.h)
  int rank = 0;
  int num_ranks = 0;
  int device = 0;
  ncclEpGroupConfig_t config{};
  epyard::ep::Allocator alloc;
  uint64_t timeout_ns = 0;
  int grid = 0;  // blocks of a dispatch/combine launch
  // send_only ops waiting for ncclEpComplete, per kind (dispatch, combine). Each op's launch
  // needs the credit that the receive of the op two before it returns, so a third op of a kind
  // behind two staged ones would wait for a complete queued after it: it is refused instead.
  int staged[2] = {0, 0};  // indexed by epyard::ep::kStagedDispatch, kStagedCombine

  ncclDevComm dev_comm{};
  bool dev_comm_made = false;
  void* buffer = nullptr;
  bool buffer_from_nccl = false;  // ncclMemAlloc, else the caller's allocator
  ncclWindow_t window = nullptr;
  bool shares_world_buffer = false;  // virtual ranks: `buffer` is this rank's slice
  epyard::ep::LlPeers peers{};
  epyard::ep::LlBufferLayout layout{};
  epyard::ep::LlDeviceState* state = nullptr;
  epyard::ep::LlAsyncError* error_host = nullptr;  // host-mapped
  epyard::ep::LlAsyncError* error_dev = nullptr;
  cudaStream_t setup_stream = nullptr;

  std::mutex mu;
  std::string last_error;
  int live_handles = 0;

  // The part of every kernel's arguments that comes from the group.
  epyard::ep::LlCommon common() const;
};

struct ncclEpHandle {
  enum class Pending { kNone, kDispatch, kCombine };
  ncclEpGroup* group = nullptr;
  bool rank_major = false;
  int top_k = 0;
  void* mem = nullptr;
  bool owns_mem = false;
  epyard::ep::LlHandleDev dev{};
  int num_tokens = -1;       // set by ncclEpUpdateHandle
  bool dispatched = false;   // combine needs a finished dispatch
  epyard::ep::LlCounters update_counters{};  // layout_info given to ncclEpUpdateHandle
  Pending pending = Pending::kNone;
  epyard::ep::LlDispatchArgs pending_dispatch{};
  epyard::ep::LlCombineArgs pending_combine{};

  epyard::ep::LlCommon common() const;
};
