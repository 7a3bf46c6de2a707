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

// The bookkeeping of a launch of op `op` (0 dispatch, 1 combine), all at its start, so that no
// block waits for the whole grid at its end:
//  - acknowledgements: a launch that receives seq records it as pending (below); every later
//    launch of the op acknowledges the pending numbers of both buffer halves to every unmasked
//    peer (the last block; re-sending a number is harmless, they only grow per half). By then
//    the receiving launch has finished reading its half: launches of one op are stream-ordered,
//    as the sequence numbers already require. A peer needs seq's acknowledgement only for its
//    op seq + 2, which cannot start before this rank has started op seq + 1;
//  - the sequence number: every block read it in loadStart (acquire) before arriving here; the
//    last block to arrive advances the group's counter (a sending launch) and the handle's
//    copy, and records the pending acknowledgement. The arrival is made by the second warp, so
//    its round trip overlaps the credit wait of the first.
__device__ inline void beginOp(const LlCommon& c, int op, bool send, bool recv, const KernelStart& st) {
  if (blockIdx.x == gridDim.x - 1 && !st.mask[c.rank]) {
    const uint64_t region = op == 0 ? c.buf.disp_acks : c.buf.comb_acks;
    for (int d = threadIdx.x; d < c.num_ranks; d += blockDim.x) {
      if (st.mask[d]) continue;
      for (int h = 0; h < 2; ++h)
        if (st.pending[h] != 0)
          storeRelaxed(flagIn(peerBuffer(c, d), region, h, c.num_ranks, c.rank), st.pending[h]);
    }
  }
  if (threadIdx.x == 32 && atomicAdd(&c.state->arrivals[op], 1u) == gridDim.x - 1) {
    c.state->arrivals[op] = 0;  // every block has arrived: ready for the next launch
    if (send) {
      if (op == 0) c.state->disp_seq = st.seq; else c.state->comb_seq = st.seq;
      c.h.seqs[op] = st.seq;
    }
    if (recv && !st.mask[c.rank]) c.state->pending_ack[op][st.seq & 1] = st.seq;
  }
}

}  // namespace epyard::ep
