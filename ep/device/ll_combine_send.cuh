// LL combine, sending half. Every received token goes back to its owner as one BF16 row per
// (token, expert rank): rank-major, the caller's row (already reduced over local experts);
// expert-major, the float sum over the token's top-k slots held here, in ascending slot order,
// of weight x expert row, rounded once — so a token costs one row per rank, not one per expert.
// The weights are the owner's combine weights, which every owner first writes to every rank;
// a team loads its first expert rows while they are on their way.
#pragma once

#include "device/ll_buffers.cuh"
#include "device/ll_numeric.cuh"

namespace epyard::ep {

// Expert-major: this rank's combine weights to every unmasked rank (block b: rank b, ...) as
// tagged words, B x top-k of them (zero past this call's tokens, so that every word a receiver
// may read was rewritten by the op before last at the latest and its tag cannot be stale).
__device__ inline void publishWeights(const LlCombineArgs& a, uint64_t seq, const int* s_mask) {
  const LlCommon& c = a.c;
  const int parity = static_cast<int>(seq & 1), K = c.top_k, n = c.max_tokens * K;
  const int live = c.num_tokens * K;
  for (int d = blockIdx.x; d < c.num_ranks; d += gridDim.x) {
    if (s_mask[d]) continue;
    uint64_t* dst = combineWeights(c, peerBuffer(c, d), parity, c.rank);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const float w = i < live ? a.topk_weights[i] : 0.0f;
      storeTagged(&dst[(i / K) * kLlMaxTopK + i % K], __float_as_uint(w), seq);
    }
  }
}

struct CombineSendShared {
  int offset[kLlMaxRanks];  // received slots before source d
  int row[kLlBlockTeams][kLlMaxTopK];  // per team: expert rows of the slot (distinct slots' rows)
  float weight[kLlBlockTeams][kLlMaxTopK];
  int rows[kLlBlockTeams];
  int ok[kLlBlockTeams];
  int total, skip;
};

constexpr int kReduceUnroll = 4;    // pieces per thread in flight
constexpr int kRowsInFlight = 2;    // expert rows loaded together

// Expert-major, one team: rows k0 .. k0+kRowsInFlight-1 of the slot's n, pieces base,
// base + kTeamThreads, ... (kReduceUnroll of them) into v.
__device__ __forceinline__ void loadRowGroup(const LlCombineArgs& a, const int* rows, int n, int k0,
                                             int base, int4 (&v)[kRowsInFlight][kReduceUnroll]) {
  const int H = a.hidden, pieces = H / 8;
#pragma unroll
  for (int r = 0; r < kRowsInFlight; ++r) {
    if (k0 + r >= n) break;
    const int4* src = reinterpret_cast<const int4*>(a.x + static_cast<size_t>(rows[k0 + r]) * H);
#pragma unroll
    for (int u = 0; u < kReduceUnroll; ++u) {
      const int p = base + u * kTeamThreads;
      if (p < pieces) v[r][u] = src[p];
    }
  }
}

// Expert-major, one team, the pieces at `base` (kReduceUnroll of them, kTeamThreads apart):
// the sum over the slot's n rows (in top-k slot order) of weight x row, in float, rounded to
// BF16 into `out`. On entry v holds the pieces of the first row group; it is reused for the
// others.
__device__ inline void reducePieces(const LlCombineArgs& a, const int* rows, const float* weights,
                                    int n, char* out, int base,
                                    int4 (&v)[kRowsInFlight][kReduceUnroll]) {
  const int pieces = a.hidden / 8;
  float acc[kReduceUnroll][8];
#pragma unroll
  for (int u = 0; u < kReduceUnroll; ++u)
#pragma unroll
    for (int q = 0; q < 8; ++q) acc[u][q] = 0.0f;
  for (int k0 = 0;;) {
#pragma unroll
    for (int r = 0; r < kRowsInFlight; ++r) {
      if (k0 + r >= n) break;
      const float weight = weights[k0 + r];
#pragma unroll
      for (int u = 0; u < kReduceUnroll; ++u) addScaledBf16x8(acc[u], v[r][u], weight);
    }
    k0 += kRowsInFlight;
    if (k0 >= n) break;
    loadRowGroup(a, rows, n, k0, base, v);
  }
#pragma unroll
  for (int u = 0; u < kReduceUnroll; ++u) {
    const int p = base + u * kTeamThreads;
    if (p < pieces) reinterpret_cast<int4*>(out)[p] = packBf16x8(acc[u]);
  }
}

// Expert-major, one team: the whole row. `group0` holds the first row group at the lane's
// first pieces, loaded before the weights arrived.
__device__ inline void reduceRows(const LlCombineArgs& a, const int* rows, const float* weights,
                                  int n, char* out, int lane,
                                  int4 (&group0)[kRowsInFlight][kReduceUnroll]) {
  const int pieces = a.hidden / 8, step = kReduceUnroll * kTeamThreads;
  reducePieces(a, rows, weights, n, out, lane, group0);
  for (int base = lane + step; base < pieces; base += step) {
    loadRowGroup(a, rows, n, 0, base, group0);
    reducePieces(a, rows, weights, n, out, base, group0);
  }
}

__device__ inline void combineSend(const LlCombineArgs& a, KernelStart* st) {
  const LlCommon& c = a.c;
  const uint64_t seq = st->seq;
  const int* s_mask = st->mask;
  const int R = c.num_ranks, B = c.max_tokens, K = c.top_k, H = a.hidden;
  const int parity = static_cast<int>(seq & 1);
  __shared__ CombineSendShared s;
  if (st->aborted || s_mask[c.rank]) return;  // a masked rank sends nothing
  for (int d = threadIdx.x; d < R; d += blockDim.x) s.offset[d] = c.h.recv_src_cnt[d];
  const bool credited = waitCredits(c, c.buf.comb_acks, st, kWaitCombineCredit);
  traceMark(c, 1, 1);
  if (!credited) return;
  if (threadIdx.x == 0) {
    int run = 0;
    for (int d = 0; d < R; ++d) {
      const int n = s.offset[d];
      s.offset[d] = run;
      run += n;
    }
    s.total = run;
  }
  __syncthreads();
  if (!c.rank_major) publishWeights(a, seq, s_mask);

  // One received slot per team; the teams of a block move through items in lock-step. The slots
  // are ordered by owner. Expert-major: they are cut into one part per team of a block, and
  // team i of block b takes item b of part i, then b + grid, ...: a block's teams serve
  // different owners (and mix this rank's own rows with remote ones), ~0.6 us faster at the
  // target shape than four neighbouring slots per block. Rank-major (a plain copy per slot) is
  // ~2 us faster with the neighbouring slots (team i of block b: slot 4b + i, ...).
  const Team team = myTeam();
  const int me = team.local, per_block = blockDim.x / kTeamThreads;
  const int part = (s.total + per_block - 1) / per_block;
  for (int item = blockIdx.x; item < part; item += gridDim.x) {
    const int g = c.rank_major ? item * per_block + me : me * part + item;
    int d = g < s.total ? segmentOf(s.offset, R, g) : 0;
    const bool active = g < s.total && !s_mask[d];
    const int j = g - s.offset[d];
    const size_t slot = static_cast<size_t>(d) * B + j;
    const int token = active ? c.h.recv_token[slot] : 0;
    char* peer = peerBuffer(c, d);
    char* out = combineSlot(c, peer, parity, token, c.rank);
    // Expert-major: the team's first warp lists the slot's rows (compacted, top-k slot order
    // kept); every thread loads its first row group; then the first warp waits for the weights.
    const bool plan = active && !c.rank_major;
    const int lane = team.lane;
    const int row = plan && lane < K ? c.h.recv_rows[slot * K + lane] : -1;
    int at = 0;  // this lane's row among the slot's rows
    if (plan && lane < 32) {
      const unsigned used = __ballot_sync(0xffffffffu, row >= 0);
      at = __popc(used & ((1u << lane) - 1));
      if (row >= 0) s.row[me][at] = row;
      if (lane == 0) s.rows[me] = __popc(used);
    }
    if (!c.rank_major) __syncthreads();
    int4 group0[kRowsInFlight][kReduceUnroll];
    if (plan) loadRowGroup(a, s.row[me], s.rows[me], 0, lane, group0);
    if (plan && lane < 32) {
      uint32_t bits = 0;
      const bool lost = row >= 0 && !waitTagged(c, combineWeights(c, myBuffer(c), parity, d) +
                                                      token * kLlMaxTopK + lane,
                                                  seq, kWaitCombineWeights, d, &bits);
      if (row >= 0) s.weight[me][at] = __uint_as_float(bits);
      const bool ok = __ballot_sync(0xffffffffu, lost) == 0;
      if (lane == 0) s.ok[me] = ok;
    }
    __syncthreads();
    const bool send = active && (c.rank_major || s.ok[me]);  // else the owner is gone
    if (send) {
      if (c.rank_major) {
        copyTeam16(out, a.x + slot * H, 2u * H, team.lane, kTeamThreads);
      } else {
        reduceRows(a, s.row[me], s.weight[me], s.rows[me], out, team.lane, group0);
      }
    }
    __syncthreads();  // the stores are ordered before the release; shared state is reused
    traceMarkAllBlocks(c, 1, 2);
    if (send && team.lane == 0) storeRelease(combineRowFlag(c, peer, parity, token, c.rank), seq);
  }
  traceMarkAllBlocks(c, 1, 3);
}

}  // namespace epyard::ep
