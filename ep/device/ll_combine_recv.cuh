// LL combine, receiving half: once every unmasked rank has sent its rows, each token's output is
// the float sum, in ascending order, of weight x row over its top-k slots (expert-major; a
// repeated expert's row is added once per slot naming it, with that slot's weight) or of one row
// per rank it went to (rank-major), rounded to BF16 once — exactly as the reference does it.
#pragma once

#include "device/ll_buffers.cuh"
#include "device/ll_numeric.cuh"

namespace epyard::ep {

__device__ inline void combineRecv(const LlCombineArgs& a, uint64_t seq, const int* s_mask) {
  const LlCommon& c = a.c;
  const int R = c.num_ranks, L = c.local_experts, K = c.top_k, H = a.hidden;
  const int parity = static_cast<int>(seq & 1);
  __shared__ int s_ok[kLlMaxRanks];    // rank d's rows are here
  __shared__ int s_col[kLlMaxRanks];   // this token's columns, in summing order
  __shared__ float s_weight[kLlMaxRanks];
  __shared__ int s_cols;
  char* mine = myBuffer(c);
  const bool self_masked = s_mask[c.rank];
  for (int d = threadIdx.x; d < R; d += blockDim.x)
    s_ok[d] = !self_masked && !s_mask[d] &&
              waitFlag(c, flagIn(mine, c.buf.comb_data_flags, parity, R, d), seq, kWaitCombineData,
                       d, seq);
  __syncthreads();

  const int pieces = H / 8;  // 8 channels = 16 bytes
  for (int t = blockIdx.x; t < c.num_tokens; t += gridDim.x) {
    if (threadIdx.x == 0) {
      int n = 0;
      if (!c.rank_major) {
        for (int k = 0; k < K; ++k) {
          const int e = c.h.topk[t * K + k];
          if (e < 0 || !s_ok[e / L]) continue;
          int first = k;  // the lowest slot naming e holds the row
          for (int j = 0; j < k; ++j)
            if (c.h.topk[t * K + j] == e) {
              first = j;
              break;
            }
          s_col[n] = first;
          s_weight[n] = a.topk_weights[t * K + k];
          ++n;
        }
      } else {
        for (int d = 0; d < R; ++d) {
          if (!s_ok[d]) continue;
          bool reached = false;
          for (int j = 0; j < K && c.h.dst_rank[t * K + j] >= 0; ++j) reached |= c.h.dst_rank[t * K + j] == d;
          if (reached) {
            s_col[n] = d;
            s_weight[n] = 1.0f;
            ++n;
          }
        }
      }
      s_cols = n;
    }
    __syncthreads();
    for (int p = threadIdx.x; p < pieces; p += blockDim.x) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int i = 0; i < s_cols; ++i) {
        const int4 v = reinterpret_cast<const int4*>(combineSlot(c, mine, parity, t, s_col[i]))[p];
        const uint32_t* w = reinterpret_cast<const uint32_t*>(&v);
        const float weight = s_weight[i];
        for (int q = 0; q < 4; ++q) {
          acc[2 * q] = __fadd_rn(acc[2 * q], c.rank_major ? bf16Bits(w[q] & 0xffffu)
                                                          : __fmul_rn(weight, bf16Bits(w[q] & 0xffffu)));
          acc[2 * q + 1] = __fadd_rn(acc[2 * q + 1], c.rank_major ? bf16Bits(w[q] >> 16)
                                                                  : __fmul_rn(weight, bf16Bits(w[q] >> 16)));
        }
      }
      int4 o;
      uint32_t* ow = reinterpret_cast<uint32_t*>(&o);
      for (int q = 0; q < 4; ++q)
        ow[q] = uint32_t(toBf16Bits(acc[2 * q])) | (uint32_t(toBf16Bits(acc[2 * q + 1])) << 16);
      reinterpret_cast<int4*>(a.out + static_cast<size_t>(t) * H)[p] = o;
    }
    __syncthreads();  // s_col is refilled for the next token
  }
}

}  // namespace epyard::ep
