// Addresses inside a rank's symmetric buffer (see LlBufferLayout). `base` is the buffer of
// whichever rank is addressed: this rank's for reading, a peer's for writing.
#pragma once

#include "device/ll_sync.cuh"

namespace epyard::ep {

__device__ __forceinline__ uint64_t* flagIn(char* base, uint64_t region, int parity, int ranks,
                                            int src) {
  return reinterpret_cast<uint64_t*>(base + region) + parity * ranks + src;
}

__device__ __forceinline__ uint64_t* perRankFlag(char* base, uint64_t region, int src) {
  return reinterpret_cast<uint64_t*>(base + region) + src;
}

// Source `src`'s per-expert counts as this rank holds them: tagged words, [0] its token count,
// [1 + l] its tokens for local expert l.
__device__ __forceinline__ uint64_t* dispatchHeader(const LlCommon& c, char* base, int parity,
                                                    int src) {
  return reinterpret_cast<uint64_t*>(base + c.buf.disp_headers +
                                     static_cast<uint64_t>(parity * c.num_ranks + src) *
                                         c.buf.header_bytes);
}

__device__ __forceinline__ char* dispatchSlot(const LlCommon& c, char* base, int parity, int src,
                                              int slot) {
  const uint64_t index = static_cast<uint64_t>(parity * c.num_ranks + src) * c.max_tokens + slot;
  return base + c.buf.disp_slots + index * c.buf.slot_bytes;
}

__device__ __forceinline__ uint64_t* slotFlag(const LlCommon& c, char* base, int parity, int src,
                                              int slot) {
  return reinterpret_cast<uint64_t*>(base + c.buf.disp_slot_flags) +
         (static_cast<uint64_t>(parity * c.num_ranks + src) * c.max_tokens + slot);
}

// Combine: rank `col`'s (partial) row of this rank's token `token`, and its flag.
__device__ __forceinline__ uint64_t combineIndex(const LlCommon& c, int parity, int token, int col) {
  return (static_cast<uint64_t>(parity) * c.max_tokens + token) * c.num_ranks + col;
}
__device__ __forceinline__ char* combineSlot(const LlCommon& c, char* base, int parity, int token,
                                             int col) {
  return base + c.buf.comb_slots + combineIndex(c, parity, token, col) * c.buf.comb_row_bytes;
}
__device__ __forceinline__ uint64_t* combineRowFlag(const LlCommon& c, char* base, int parity,
                                                    int token, int col) {
  return reinterpret_cast<uint64_t*>(base + c.buf.comb_row_flags) + combineIndex(c, parity, token, col);
}

// Combine weights of source `src` as this rank holds them: [B][kLlMaxTopK] tagged words (float
// bits).
__device__ __forceinline__ uint64_t* combineWeights(const LlCommon& c, char* base, int parity, int src) {
  return reinterpret_cast<uint64_t*>(base + c.buf.comb_weights) +
         static_cast<uint64_t>(parity * c.num_ranks + src) * c.max_tokens * kLlMaxTopK;
}

// Index of the last entry of the non-decreasing `offsets[0..n)` that is <= g.
__device__ __forceinline__ int segmentOf(const int* offsets, int n, int g) {
  int lo = 0, hi = n;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (offsets[mid] <= g) lo = mid; else hi = mid;
  }
  return lo;
}

// Waits for the credit to write half `seq & 1` of every unmasked peer's buffer: each has
// acknowledged seq - 2 in that half's slot (one slot per half, so that staged ops completed
// out of order never lower an acknowledgement). Threads 0..R-1 wait on one peer each. False
// (block-uniform) when a wait gave up: then nothing may be written.
__device__ inline bool waitCredits(const LlCommon& c, uint64_t acks_region, KernelStart* st,
                                   int what) {
  const uint64_t seq = st->seq;
  if (seq > 2) {
    for (int d = threadIdx.x; d < c.num_ranks; d += blockDim.x) {
      if (st->mask[d]) continue;
      if (!waitFlag(c, flagIn(myBuffer(c), acks_region, static_cast<int>(seq & 1), c.num_ranks, d),
                    seq - 2, what, d, seq))
        st->credit_lost = 1;
    }
  }
  __syncthreads();
  return !st->credit_lost;
}

// Acknowledges `seq` to every unmasked peer: its half of my buffer is free again.
__device__ inline void ackPeers(const LlCommon& c, uint64_t acks_region, uint64_t seq,
                                const int* s_mask) {
  for (int d = threadIdx.x; d < c.num_ranks; d += blockDim.x)
    if (!s_mask[d])
      storeRelease(flagIn(peerBuffer(c, d), acks_region, static_cast<int>(seq & 1), c.num_ranks, c.rank), seq);
}

}  // namespace epyard::ep
