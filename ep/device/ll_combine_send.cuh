// LL combine, sending half. Every received token goes back to its owner as one BF16 row per
// (token, expert rank): rank-major, the caller's row (already reduced over local experts);
// expert-major, the float sum over the token's top-k slots held here, in ascending slot order,
// of weight x expert row, rounded once — so a token costs one row per rank, not one per expert.
// The weights are the owner's combine weights, which every owner first writes to every rank.
#pragma once

#include "device/ll_buffers.cuh"
#include "device/ll_numeric.cuh"

namespace epyard::ep {

// Index of the last entry of the non-decreasing `offsets[0..n)` that is <= g.
__device__ __forceinline__ int segmentOf(const int* offsets, int n, int g) {
  int lo = 0, hi = n;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (offsets[mid] <= g) lo = mid; else hi = mid;
  }
  return lo;
}

// Expert-major: this rank's combine weights [T][K] to every unmasked rank (block b: rank b, ...).
__device__ inline void publishWeights(const LlCombineArgs& a, uint64_t seq, const int* s_mask) {
  const LlCommon& c = a.c;
  const int parity = static_cast<int>(seq & 1), K = c.top_k, n = c.num_tokens * K;
  for (int d = blockIdx.x; d < c.num_ranks; d += gridDim.x) {
    if (s_mask[d]) continue;
    char* peer = peerBuffer(c, d);
    float* dst = combineWeights(c, peer, parity, c.rank);
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[(i / K) * kLlMaxTopK + i % K] = a.topk_weights[i];
    __syncthreads();
    if (threadIdx.x == 0)
      storeRelease(flagIn(peer, c.buf.comb_weight_flags, parity, c.num_ranks, c.rank), seq);
  }
}

struct CombineSendShared {
  int offset[kLlMaxRanks];       // received slots before source d
  int weights_ready[kLlMaxRanks];  // -1 unknown, 0 lost, 1 here
  int row[kLlMaxTopK];
  float weight[kLlMaxTopK];
  int total, skip, ok;
};

// Expert-major: the weighted sum of this slot's expert rows, written to `out` (BF16).
__device__ inline void reduceRows(const LlCombineArgs& a, const CombineSendShared* s, char* out) {
  const int K = a.c.top_k, H = a.hidden;
  for (int p = threadIdx.x; p < H / 8; p += blockDim.x) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < K; ++k) {
      const int row = s->row[k];
      if (row < 0) continue;
      const int4 v = reinterpret_cast<const int4*>(a.x + static_cast<size_t>(row) * H)[p];
      const uint32_t* w = reinterpret_cast<const uint32_t*>(&v);
      const float weight = s->weight[k];
      for (int q = 0; q < 4; ++q) {
        acc[2 * q] = __fadd_rn(acc[2 * q], __fmul_rn(weight, bf16Bits(w[q] & 0xffffu)));
        acc[2 * q + 1] = __fadd_rn(acc[2 * q + 1], __fmul_rn(weight, bf16Bits(w[q] >> 16)));
      }
    }
    int4 o;
    uint32_t* ow = reinterpret_cast<uint32_t*>(&o);
    for (int q = 0; q < 4; ++q)
      ow[q] = uint32_t(toBf16Bits(acc[2 * q])) | (uint32_t(toBf16Bits(acc[2 * q + 1])) << 16);
    reinterpret_cast<int4*>(out)[p] = o;
  }
}

__device__ inline void combineSend(const LlCombineArgs& a, uint64_t seq, const int* s_mask) {
  const LlCommon& c = a.c;
  const int R = c.num_ranks, B = c.max_tokens, K = c.top_k, H = a.hidden;
  const int parity = static_cast<int>(seq & 1);
  __shared__ CombineSendShared s;
  waitCredits(c, c.buf.comb_acks, seq, kWaitCombineCredit);
  if (threadIdx.x == 0) {
    int run = 0;
    for (int d = 0; d < R; ++d) {
      s.offset[d] = run;
      run += c.h.recv_src_cnt[d];
      s.weights_ready[d] = -1;
    }
    s.total = run;
    s.skip = aborted(c) || s_mask[c.rank];
  }
  __syncthreads();
  if (s.skip) return;
  if (!c.rank_major) publishWeights(a, seq, s_mask);

  for (int g = blockIdx.x; g < s.total; g += gridDim.x) {
    const int d = segmentOf(s.offset, R, g), j = g - s.offset[d];
    if (s_mask[d]) continue;
    const size_t slot = static_cast<size_t>(d) * B + j;
    const int token = c.h.recv_token[slot];
    char* peer = peerBuffer(c, d);
    char* out = combineSlot(c, peer, parity, token, c.rank);
    if (c.rank_major) {
      copyBlock16(out, a.x + slot * H, 2u * H);
    } else {
      if (threadIdx.x == 0) {
        if (s.weights_ready[d] < 0)
          s.weights_ready[d] = waitFlag(c, flagIn(myBuffer(c), c.buf.comb_weight_flags, parity, R, d),
                                        seq, kWaitCombineWeights, d, seq);
        s.ok = s.weights_ready[d];
      }
      if (threadIdx.x < K) {
        s.row[threadIdx.x] = c.h.recv_rows[slot * K + threadIdx.x];
      }
      __syncthreads();
      const bool ok = s.ok;
      __syncthreads();  // s.ok is rewritten for the next slot
      if (!ok) continue;  // uniform: the source is gone, its token is dropped
      if (threadIdx.x < K)
        s.weight[threadIdx.x] = combineWeights(c, myBuffer(c), parity, d)[token * kLlMaxTopK + threadIdx.x];
      __syncthreads();
      reduceRows(a, &s, out);
    }
    __syncthreads();
    if (threadIdx.x == 0) storeRelease(combineRowFlag(c, peer, parity, token, c.rank), seq);
  }
}

}  // namespace epyard::ep
