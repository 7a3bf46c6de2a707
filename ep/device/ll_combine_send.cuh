// LL combine, sending half: every row this rank received in dispatch goes back to the rank that
// owns the token, into the combine area at (token, column): the top-k slot that first named the
// expert (expert-major) or this rank's index (rank-major). Rows are spread over blocks.
#pragma once

#include "device/ll_buffers.cuh"

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

__device__ inline void combineSend(const LlCombineArgs& a, uint64_t seq, const int* s_mask) {
  const LlCommon& c = a.c;
  const int R = c.num_ranks, L = c.local_experts, B = c.max_tokens, H = a.hidden;
  const int parity = static_cast<int>(seq & 1);
  __shared__ int s_offset[kLlMaxRanks];  // expert-major: per local expert; rank-major: per source
  __shared__ int s_total, s_skip;
  waitCredits(c, c.buf.comb_acks, seq, kWaitCombineCredit);
  const int segments = c.rank_major ? R : L;
  const int* counts = c.rank_major ? c.h.recv_src_cnt : c.h.recv_expert_cnt;
  if (threadIdx.x == 0) {
    int run = 0;
    for (int i = 0; i < segments; ++i) {
      s_offset[i] = run;
      run += counts[i];
    }
    s_total = run;
    s_skip = aborted(c) || s_mask[c.rank];
  }
  __syncthreads();
  if (s_skip) return;

  const uint32_t row_bytes = 2u * H;
  for (int g = blockIdx.x; g < s_total; g += gridDim.x) {
    const int seg = segmentOf(s_offset, segments, g);
    const int i = g - s_offset[seg];
    size_t in_row;
    int dst, token, col;
    if (c.rank_major) {
      in_row = static_cast<size_t>(seg) * B + i;
      dst = seg;
      token = c.h.recv_origin[in_row];
      col = c.rank;
    } else {
      in_row = static_cast<size_t>(seg) * R * B + i;
      const int origin = c.h.recv_origin[in_row];
      dst = origin >> 16;
      col = (origin >> 11) & 0x1f;
      token = origin & 0x7ff;
    }
    if (s_mask[dst]) continue;
    char* out = combineSlot(c, peerBuffer(c, dst), parity, token, col);
    copyBlock16(out, a.x + in_row * H, row_bytes);
  }
}

}  // namespace epyard::ep
