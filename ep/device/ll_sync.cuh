// Memory-ordering helpers, bounded waits and grid epilogues shared by the LL kernels.
//
// Ordering: a sender makes all its stores visible system-wide (block barrier, then one thread's
// __threadfence_system) before it publishes a flag with st.release.sys; the receiver reads the
// flag with ld.acquire.sys before it reads the data. Flags hold sequence numbers.
#pragma once

#include <nccl_device.h>

#include "device/ll_types.h"

namespace epyard::ep {

__device__ __forceinline__ uint64_t loadAcquire(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void storeRelease(uint64_t* p, uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t nowNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// The symmetric buffer of `peer` (an LSA rank: in LL all ranks are one LSA team).
__device__ __forceinline__ char* peerBuffer(const LlCommon& c, int peer) {
  return static_cast<char*>(ncclGetLsaPointer(static_cast<ncclWindow_t>(c.window), 0, peer));
}
__device__ __forceinline__ char* myBuffer(const LlCommon& c) { return peerBuffer(c, c.rank); }

__device__ __forceinline__ bool isMasked(const LlCommon& c, int rank) {
  return c.enable_mask && *reinterpret_cast<volatile int32_t*>(&c.state->mask[rank]) != 0;
}

__device__ __forceinline__ bool aborted(const LlCommon& c) {
  return *reinterpret_cast<volatile int32_t*>(&c.state->abort) != 0;
}

// Block-wide snapshot of the mask (branches around barriers must not see it change mid-way).
__device__ inline void loadMask(const LlCommon& c, int* s_mask) {
  for (int d = threadIdx.x; d < c.num_ranks; d += blockDim.x) s_mask[d] = isMasked(c, d) ? 1 : 0;
  __syncthreads();
}

// Records the first fault of this group (later ones keep the first message) and makes every
// block of every LL kernel stop waiting.
__device__ inline void recordFault(const LlCommon& c, int fault, int what, int peer, uint64_t seq,
                                   uint64_t waited_ns, int64_t observed) {
  if (atomicCAS(reinterpret_cast<int*>(&c.error->fault), kFaultNone, fault) == kFaultNone) {
    volatile LlAsyncError* e = c.error;
    e->what = what;
    e->peer = peer;
    e->rank = c.rank;
    e->seq = seq;
    e->waited_ns = waited_ns;
    e->observed = observed;
    __threadfence_system();
  }
  if (fault == kFaultTimeout) atomicExch(&c.state->abort, 1);
}

// Waits (one thread) until *flag >= target. Gives up, returning false, when the group was
// aborted, when `peer` is or becomes masked, or after timeout_ns: then with masks enabled the
// peer is masked (the op goes on without it), otherwise the fault is recorded and the group
// aborted so that nothing waits forever.
__device__ inline bool waitFlag(const LlCommon& c, const uint64_t* flag, uint64_t target, int what,
                                int peer, uint64_t seq) {
  uint64_t start = 0;
  for (uint32_t spin = 0;; ++spin) {
    uint64_t v = loadAcquire(flag);
    if (v >= target) return true;
    if ((spin & 255) != 0) continue;
    if (aborted(c) || isMasked(c, peer)) return false;
    uint64_t now = nowNs();
    if (start == 0) {
      start = now;
    } else if (now - start > c.timeout_ns) {
      if (c.enable_mask) {
        atomicExch(&c.state->mask[peer], 1);
      } else {
        recordFault(c, kFaultTimeout, what, peer, seq, now - start, static_cast<int64_t>(v));
      }
      return false;
    }
  }
}

// Block-wide: true in the one block that arrives last at `counter`; every block's earlier
// memory operations happen before whatever the last block does next (GPU scope: the last block
// only publishes with system-scope release stores, which carry that ordering to peers).
__device__ inline bool lastBlockToArrive(uint32_t* counter) {
  __shared__ bool last;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    last = atomicAdd(counter, 1u) == gridDim.x - 1;
    if (last) {
      *counter = 0;  // every block has arrived: ready for the next launch
      __threadfence();
    }
  }
  __syncthreads();
  return last;
}

// Phase timing (EPYARD_EP_TRACE builds): block 0 stamps mark `i` of op `kind`; the kernel's
// end adds every mark's offset from mark 0 to the sums the host prints at group destruction.
__device__ __forceinline__ void traceMark(const LlCommon& c, int kind, int i) {
#ifdef EPYARD_EP_TRACE
  if (blockIdx.x == 0 && threadIdx.x == 0) c.state->trace_last[kind][i] = nowNs();
#endif
}
__device__ __forceinline__ void traceCommit(const LlCommon& c, int kind) {
#ifdef EPYARD_EP_TRACE
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    c.state->trace_last[kind][kLlTraceMarks - 1] = nowNs();
    const uint64_t t0 = c.state->trace_last[kind][0];
    for (int i = 1; i < kLlTraceMarks; ++i) {
      const uint64_t t = c.state->trace_last[kind][i];
      c.state->trace_sum[kind][i] += t >= t0 ? t - t0 : 0;
    }
    ++c.state->trace_calls[kind];
  }
#endif
}

// A team: kTeamThreads consecutive threads of a block that work on one item together. The
// teams of a block step through their items in lock-step (block-uniform loops), so plain
// __syncthreads() is their barrier: no named barriers.
constexpr int kTeamThreads = 128;
struct Team {
  int lane;   // 0 .. kTeamThreads-1
  int local;  // team index inside the block
  int index;  // team index in the grid
  int count;  // teams in the grid
};
__device__ __forceinline__ Team myTeam() {
  Team t;
  const int per_block = blockDim.x / kTeamThreads;
  t.lane = threadIdx.x % kTeamThreads;
  t.local = threadIdx.x / kTeamThreads;
  t.index = blockIdx.x * per_block + t.local;
  t.count = gridDim.x * per_block;
  return t;
}

// 16-byte copies by the `width` threads of a team or warp, four loads in flight per thread.
__device__ __forceinline__ void copyTeam16(void* dst, const void* src, uint32_t bytes, int lane,
                                           int width) {
  const int4* s = static_cast<const int4*>(src);
  int4* d = static_cast<int4*>(dst);
  const uint32_t n = bytes / 16;
  uint32_t i = lane;
  for (; i + 3 * width < n; i += 4 * width) {
    const int4 a = s[i], b = s[i + width], c = s[i + 2 * width], e = s[i + 3 * width];
    d[i] = a;
    d[i + width] = b;
    d[i + 2 * width] = c;
    d[i + 3 * width] = e;
  }
  for (; i < n; i += width) d[i] = s[i];
}

}  // namespace epyard::ep
