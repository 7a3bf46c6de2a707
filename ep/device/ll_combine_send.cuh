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
  int offset[kLlMaxRanks];  // received slots before source d
  int row[32][kLlMaxTopK];  // per warp: the expert row of each top-k slot, -1 none
  float weight[32][kLlMaxTopK];
  int total, skip;
};

// Expert-major, one warp: the weighted sum of this slot's expert rows, written to `out` (BF16).
__device__ inline void reduceRows(const LlCombineArgs& a, const int* rows, const float* weights,
                                  char* out, int lane) {
  const int K = a.c.top_k, H = a.hidden;
  for (int p = lane; p < H / 8; p += 32) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < K; ++k) {
      const int row = rows[k];
      if (row < 0) continue;
      const int4 v = reinterpret_cast<const int4*>(a.x + static_cast<size_t>(row) * H)[p];
      const uint32_t* w = reinterpret_cast<const uint32_t*>(&v);
      const float weight = weights[k];
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
    }
    s.total = run;
    s.skip = aborted(c) || s_mask[c.rank];
  }
  __syncthreads();
  if (s.skip) return;
  if (!c.rank_major) publishWeights(a, seq, s_mask);

  // One received slot per warp.
  const int lane = threadIdx.x % 32, warp_in_block = threadIdx.x / 32;
  const int warps = static_cast<int>(gridDim.x * (blockDim.x / 32));
  for (int g = blockIdx.x * (blockDim.x / 32) + warp_in_block; g < s.total; g += warps) {
    const int d = segmentOf(s.offset, R, g), j = g - s.offset[d];
    if (s_mask[d]) continue;
    const size_t slot = static_cast<size_t>(d) * B + j;
    const int token = c.h.recv_token[slot];
    char* peer = peerBuffer(c, d);
    char* out = combineSlot(c, peer, parity, token, c.rank);
    if (c.rank_major) {
      copyWarp16(out, a.x + slot * H, 2u * H, lane);
    } else {
      int ok = 0;
      if (lane == 0)
        ok = waitFlag(c, flagIn(myBuffer(c), c.buf.comb_weight_flags, parity, R, d), seq,
                      kWaitCombineWeights, d, seq);
      if (!__shfl_sync(0xffffffffu, ok, 0)) continue;  // the owner is gone: its token is dropped
      if (lane < K) {
        s.row[warp_in_block][lane] = c.h.recv_rows[slot * K + lane];
        s.weight[warp_in_block][lane] =
            combineWeights(c, myBuffer(c), parity, d)[token * kLlMaxTopK + lane];
      }
      __syncwarp();
      reduceRows(a, s.row[warp_in_block], s.weight[warp_in_block], out, lane);
    }
    __syncwarp();  // the warp's stores are ordered before lane 0's release
    if (lane == 0) storeRelease(combineRowFlag(c, peer, parity, token, c.rank), seq);
  }
}

}  // namespace epyard::ep
