// LL combine, receiving half: each token's output is the float sum, in ascending rank order, of
// the one row every rank it went to sent back (rank-major: the caller's reduction; expert-major:
// the weighted partial sum made there), rounded to BF16 once. Rows are used as their flags rise.
#pragma once

#include "device/ll_buffers.cuh"
#include "device/ll_numeric.cuh"

namespace epyard::ep {

constexpr int kColsInFlight = 4;    // ranks' rows of a token loaded together
constexpr int kPiecesInFlight = 2;  // 8-channel pieces per thread loaded together

// `first_dst`: thread k's destination rank of the block's first token, loaded at kernel start
// so that the block polls for its rows as soon as its own sending is done.
__device__ inline void combineRecv(const LlCombineArgs& a, uint64_t seq, const int* s_mask,
                                   int first_dst) {
  const LlCommon& c = a.c;
  const int K = c.top_k, H = a.hidden;
  const int parity = static_cast<int>(seq & 1);
  __shared__ int s_col[kLlMaxTopK];  // ranks this token went to, ascending
  __shared__ int s_ok[kLlMaxTopK];
  __shared__ int s_cols;
  __shared__ int s_dst[kLlMaxTopK];
  char* mine = myBuffer(c);
  const bool self_masked = s_mask[c.rank];

  for (int t = blockIdx.x; t < c.num_tokens; t += gridDim.x) {
    if (threadIdx.x < K)
      s_dst[threadIdx.x] = t == static_cast<int>(blockIdx.x) ? first_dst : c.h.dst_rank[t * K + threadIdx.x];
    __syncthreads();
    if (threadIdx.x == 0) {
      int n = 0;
      for (int j = 0; j < K && s_dst[j] >= 0 && !self_masked; ++j) {
        const int d = s_dst[j];
        if (s_mask[d]) continue;
        int at = n++;
        while (at > 0 && s_col[at - 1] > d) {  // insertion: ascending rank order
          s_col[at] = s_col[at - 1];
          --at;
        }
        s_col[at] = d;
      }
      s_cols = n;
    }
    __syncthreads();
    if (threadIdx.x < s_cols)
      s_ok[threadIdx.x] = waitFlag(c, combineRowFlag(c, mine, parity, t, s_col[threadIdx.x]), seq,
                                   kWaitCombineData, s_col[threadIdx.x], seq);
    __syncthreads();
    if (t == static_cast<int>(blockIdx.x)) traceMark(c, 1, 4);  // first token's rows are here
    traceMarkAllBlocks(c, 1, 5);
    // Every thread takes kPiecesInFlight pieces a pass (hidden <= 8192 is one pass), loading
    // them from kColsInFlight ranks at once; sums stay in ascending rank order per piece.
    const int pieces = H / 8;
    for (int base = threadIdx.x; base < pieces; base += kPiecesInFlight * blockDim.x) {
      float acc[kPiecesInFlight][8];
#pragma unroll
      for (int u = 0; u < kPiecesInFlight; ++u)
#pragma unroll
        for (int q = 0; q < 8; ++q) acc[u][q] = 0.0f;
      for (int i0 = 0; i0 < s_cols; i0 += kColsInFlight) {
        int4 v[kColsInFlight][kPiecesInFlight];
#pragma unroll
        for (int r = 0; r < kColsInFlight; ++r) {
          if (i0 + r >= s_cols || !s_ok[i0 + r]) continue;
          const int4* src = reinterpret_cast<const int4*>(combineSlot(c, mine, parity, t, s_col[i0 + r]));
#pragma unroll
          for (int u = 0; u < kPiecesInFlight; ++u) {
            const int p = base + u * blockDim.x;
            if (p < pieces) v[r][u] = src[p];
          }
        }
#pragma unroll
        for (int r = 0; r < kColsInFlight; ++r) {
          if (i0 + r >= s_cols || !s_ok[i0 + r]) continue;
#pragma unroll
          for (int u = 0; u < kPiecesInFlight; ++u) addBf16x8(acc[u], v[r][u]);
        }
      }
#pragma unroll
      for (int u = 0; u < kPiecesInFlight; ++u) {
        const int p = base + u * blockDim.x;
        if (p < pieces) reinterpret_cast<int4*>(a.out + static_cast<size_t>(t) * H)[p] = packBf16x8(acc[u]);
      }
    }
    __syncthreads();  // s_col is refilled for the next token
  }
  traceMarkAllBlocks(c, 1, 6);
}

}  // namespace epyard::ep
