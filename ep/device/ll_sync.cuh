// Memory-ordering helpers, bounded waits and the trace builds' grid epilogue, shared by the LL
// kernels.
//
// Ordering: a sender's block writes its data, meets at a block barrier, and one thread publishes
// a flag with st.release.sys (release is cumulative: it covers what the barrier made that thread
// observe); the receiver reads the flag with ld.acquire.sys before it reads the data. Flags hold
// sequence numbers. Small messages (per-expert counts, combine weights) need no flag and no
// fence: they travel as tagged words, each 8-byte word carrying its value and the low 32 bits of
// the op's sequence number in one single-copy-atomic store (NCCL's LL protocol uses the idea).
#pragma once

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

__device__ __forceinline__ void storeRelaxed(uint64_t* p, uint64_t v) {
  asm volatile("st.relaxed.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t loadRelaxed(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// A tagged word: value in the low half, tag (low 32 bits of the sequence number) in the high.
__device__ __forceinline__ uint32_t tagOf(uint64_t seq) { return static_cast<uint32_t>(seq); }
__device__ __forceinline__ void storeTagged(uint64_t* p, uint32_t value, uint64_t seq) {
  const uint64_t w = (static_cast<uint64_t>(tagOf(seq)) << 32) | value;
  asm volatile("st.relaxed.sys.global.u64 [%0], %1;" ::"l"(p), "l"(w) : "memory");
}

__device__ __forceinline__ uint64_t nowNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// The symmetric buffer of `peer` (in LL all ranks are one LSA team), from the peer memory.
__device__ __forceinline__ char* peerBuffer(const LlCommon& c, int peer) {
  return c.peers.base + static_cast<uint64_t>(peer) * c.peers.stride;
}
__device__ __forceinline__ char* myBuffer(const LlCommon& c) { return peerBuffer(c, c.rank); }

__device__ __forceinline__ bool isMasked(const LlCommon& c, int rank) {
  return c.enable_mask && *reinterpret_cast<volatile int32_t*>(&c.state->mask[rank]) != 0;
}

__device__ __forceinline__ bool aborted(const LlCommon& c) {
  return *reinterpret_cast<volatile int32_t*>(&c.state->abort) != 0;
}

// What every LL kernel reads first, in one round of parallel loads: a snapshot of the mask (so
// that branches around block barriers never see it change mid-way), the abort word, the op's
// sequence number (`*seq_src + seq_add`, read with acquire: no later memory operation of the
// thread, such as its arrival in beginOp, is performed before it) and, in the block that sends
// acknowledgements, what the op's earlier launches received.
struct KernelStart {
  int mask[kLlMaxRanks];
  uint64_t seq;
  uint64_t pending[2];  // per buffer half (last block only)
  int aborted;
  int credit_lost;  // set when a credit wait gave up (see waitCredits)
};
__device__ inline void loadStart(const LlCommon& c, int op, const uint64_t* seq_src, uint64_t seq_add,
                                 KernelStart* s) {
  for (int d = threadIdx.x; d < c.num_ranks; d += blockDim.x) s->mask[d] = isMasked(c, d) ? 1 : 0;
  if (threadIdx.x == 0) {
    uint64_t v;
    asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(seq_src) : "memory");
    s->seq = v + seq_add;
    s->aborted = aborted(c) ? 1 : 0;
    s->credit_lost = 0;
  }
  if (blockIdx.x == gridDim.x - 1 && threadIdx.x >= 32 && threadIdx.x < 34)
    s->pending[threadIdx.x - 32] = c.state->pending_ack[op][threadIdx.x - 32];
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

// Spins (one thread) until `ready(v)` holds for v = load(). Gives up, returning false, when the
// group was aborted, when `peer` is or becomes masked, or after timeout_ns: then with masks
// enabled the peer is masked (the op goes on without it), otherwise the fault is recorded (with
// `observed(v)`) and the group aborted so that nothing waits forever.
template <class Load, class Ready, class Observed>
__device__ inline bool spinWait(const LlCommon& c, Load load, Ready ready, Observed observed,
                                int what, int peer, uint64_t seq, uint64_t* last) {
  uint64_t start = 0;
  for (uint32_t spin = 0;; ++spin) {
    const uint64_t v = load();
    *last = v;
    if (ready(v)) return true;
    if ((spin & 255) != 0) continue;
    if (aborted(c) || isMasked(c, peer)) return false;
    const uint64_t now = nowNs();
    if (start == 0) {
      start = now;
    } else if (now - start > c.timeout_ns) {
      if (c.enable_mask) {
        atomicExch(&c.state->mask[peer], 1);
      } else {
        recordFault(c, kFaultTimeout, what, peer, seq, now - start, observed(v));
      }
      return false;
    }
  }
}

// Waits until *flag >= target (acquire: the data the flag publishes is visible afterwards).
__device__ inline bool waitFlag(const LlCommon& c, const uint64_t* flag, uint64_t target, int what,
                                int peer, uint64_t seq) {
  uint64_t last;
  return spinWait(
      c, [&] { return loadAcquire(flag); }, [&](uint64_t v) { return v >= target; },
      [](uint64_t v) { return static_cast<int64_t>(v); }, what, peer, seq, &last);
}

// Waits until the tagged word at `p` carries `seq`'s tag; its value goes to *value.
__device__ inline bool waitTagged(const LlCommon& c, const uint64_t* p, uint64_t seq, int what,
                                  int peer, uint32_t* value) {
  uint64_t last = 0;
  const bool ok = spinWait(
      c, [&] { return loadRelaxed(p); },
      [&](uint64_t v) { return static_cast<uint32_t>(v >> 32) == tagOf(seq); },
      [](uint64_t v) { return static_cast<int64_t>(v >> 32); }, what, peer, seq, &last);
  *value = static_cast<uint32_t>(last);
  return ok;
}

// Block-wide: true in the one block that arrives last at `counter`; every block's earlier
// memory operations happen before whatever the last block does next (GPU scope). Only trace
// builds use it now, to commit the phase times after every block is done.
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

// Phase timing (EPYARD_EP_TRACE builds): marks of op `kind` are stamped by block 0 (traceMark;
// mark 0 is its start) or by the slowest block (traceMarkAllBlocks); the block that arrives last
// at the end stamps the last two marks and adds every mark's offset from mark 0 to the sums the
// host prints at group destruction (names and order: printTrace in host/group.cc).
__device__ __forceinline__ void traceMark(const LlCommon& c, int kind, int i) {
#ifdef EPYARD_EP_TRACE
  if (blockIdx.x == 0 && threadIdx.x == 0) c.state->trace_last[kind][i] = nowNs();
#endif
}
// Mark `i` of op `kind` when the slowest block reaches it (every block stamps; the latest wins:
// the timer only grows, so the previous call's stamp never does).
__device__ __forceinline__ void traceMarkAllBlocks(const LlCommon& c, int kind, int i) {
#ifdef EPYARD_EP_TRACE
  if (threadIdx.x == 0)
    atomicMax(reinterpret_cast<unsigned long long*>(&c.state->trace_last[kind][i]),
              static_cast<unsigned long long>(nowNs()));
#endif
}
__device__ __forceinline__ void traceLastBlock(const LlCommon& c, int kind) {
#ifdef EPYARD_EP_TRACE
  if (threadIdx.x == 0) c.state->trace_last[kind][kLlTraceMarks - 2] = nowNs();
#endif
}
__device__ __forceinline__ void traceCommit(const LlCommon& c, int kind) {
#ifdef EPYARD_EP_TRACE
  if (threadIdx.x == 0) {
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
