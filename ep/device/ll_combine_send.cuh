// LL combine, sending half. Every received token goes back to its owner as one BF16 row per
// (token, expert rank): rank-major, the caller's row (already reduced over local experts);
// expert-major, the float sum over the token's top-k slots held here, in ascending slot order,
// of weight x expert row, rounded once — so a token costs one row per rank, not one per expert.
// The weights are the owner's combine weights, which every owner first writes to every rank.
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

// Expert-major, one team: sum over the slot's n rows (in top-k slot order) of weight x row, in
// float, rounded to BF16 into `out`.
__device__ inline void reduceRows(const LlCombineArgs& a, const int* rows, const float* weights,
                                  int n, char* out, int lane) {
  const int H = a.hidden, pieces = H / 8;
  for (int base = lane; base < pieces; base += kReduceUnroll * kTeamThreads) {
    float acc[kReduceUnroll][8];
#pragma unroll
    for (int u = 0; u < kReduceUnroll; ++u)
#pragma unroll
      for (int q = 0; q < 8; ++q) acc[u][q] = 0.0f;
    for (int k0 = 0; k0 < n; k0 += kRowsInFlight) {
      int4 v[kRowsInFlight][kReduceUnroll];
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
#pragma unroll
      for (int r = 0; r < kRowsInFlight; ++r) {
        if (k0 + r >= n) break;
        const float weight = weights[k0 + r];
#pragma unroll
        for (int u = 0; u < kReduceUnroll; ++u) addScaledBf16x8(acc[u], v[r][u], weight);
      }
    }
#pragma unroll
    for (int u = 0; u < kReduceUnroll; ++u) {
      const int p = base + u * kTeamThreads;
      if (p < pieces) reinterpret_cast<int4*>(out)[p] = packBf16x8(acc[u]);
    }
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

  // One received slot per team; the teams of a block move through items in lock-step.
  const Team team = myTeam();
  const int me = team.local, per_block = blockDim.x / kTeamThreads;
  for (int first = blockIdx.x * per_block; first < s.total; first += team.count) {
    const int g = first + me;
    int d = g < s.total ? segmentOf(s.offset, R, g) : 0;
    const bool active = g < s.total && !s_mask[d];
    const int j = g - s.offset[d];
    const size_t slot = static_cast<size_t>(d) * B + j;
    const int token = active ? c.h.recv_token[slot] : 0;
    char* peer = peerBuffer(c, d);
    char* out = combineSlot(c, peer, parity, token, c.rank);
    if (active && !c.rank_major && team.lane < 32) {  // the team's first warp plans the sum
      const int lane = team.lane;
      const int row = lane < K ? c.h.recv_rows[slot * K + lane] : -1;
      uint32_t bits = 0;
      const bool lost = row >= 0 && !waitTagged(c, combineWeights(c, myBuffer(c), parity, d) +
                                                      token * kLlMaxTopK + lane,
                                                  seq, kWaitCombineWeights, d, &bits);
      const unsigned used = __ballot_sync(0xffffffffu, row >= 0);
      if (row >= 0) {  // compacted, top-k slot order kept
        const int at = __popc(used & ((1u << lane) - 1));
        s.row[me][at] = row;
        s.weight[me][at] = __uint_as_float(bits);
      }
      const bool ok = __ballot_sync(0xffffffffu, lost) == 0;
      if (lane == 0) {
        s.ok[me] = ok;
        s.rows[me] = __popc(used);
      }
    }
    __syncthreads();
    const bool send = active && (c.rank_major || s.ok[me]);  // else the owner is gone
    if (send) {
      if (c.rank_major) {
        copyTeam16(out, a.x + slot * H, 2u * H, team.lane, kTeamThreads);
      } else {
        reduceRows(a, s.row[me], s.weight[me], s.rows[me], out, team.lane);
      }
    }
    __syncthreads();  // the stores are ordered before the release; shared state is reused
    if (send && team.lane == 0) storeRelease(combineRowFlag(c, peer, parity, token, c.rank), seq);
  }
  traceMark(c, 1, 2);
}

}  // namespace epyard::ep
