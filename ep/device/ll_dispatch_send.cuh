// LL dispatch, sending half: each block takes tokens t = block, block + grid, ...; reads the
// BF16 row once, quantises it to E4M3 with a scale per 128 channels when FP8 is asked for, and
// stores it with its routing header into the slot the layout gave it at every destination rank
// (NVLink stores through LSA pointers), then raises that slot's flag. Before the tokens go, every
// destination gets this rank's per-expert counts (tagged words), so it can place rows while
// tokens arrive.
#pragma once

#include "device/ll_buffers.cuh"
#include "device/ll_numeric.cuh"

namespace epyard::ep {

constexpr int kMaxPiecesPerThread = 4;  // 16-channel pieces: hidden <= 4 x 16 x blockDim

// This rank's counts for destination d (block b takes d = b, b + grid, ...): tagged words, so
// they need no flag and no fence and the receiver sees them one NVLink trip after the stores.
__device__ inline void sendCounts(const LlDispatchArgs& a, uint64_t seq, const int* s_mask) {
  const LlCommon& c = a.c;
  const int parity = static_cast<int>(seq & 1), L = c.local_experts;
  for (int d = blockIdx.x; d < c.num_ranks; d += gridDim.x) {
    if (s_mask[d]) continue;
    uint64_t* header = dispatchHeader(c, peerBuffer(c, d), parity, c.rank);
    for (int l = threadIdx.x; l <= L; l += blockDim.x) {
      const int n = l == 0 ? c.h.rank_send_cnt[d] : c.h.expert_send_cnt[d * L + l - 1];
      storeTagged(&header[l], static_cast<uint32_t>(n), seq);
    }
  }
}

// Token t's routing, loaded once per token by threads 0..K-1 in one round of parallel loads.
struct TokenRoute {
  int dst[kLlMaxTopK];   // destination ranks, -1 terminated
  int slot[kLlMaxTopK];  // the token's slot at each
  int expert[kLlMaxTopK];
  int pos[kLlMaxTopK];
  float weight[kLlMaxTopK];
};

// Writes the routing header of token t as destination rank d sees it (threads 0..15).
__device__ inline void writeMeta(const LlCommon& c, const TokenRoute& r, int t, int d,
                                 LlSlotMeta* meta) {
  if (threadIdx.x < kLlMaxTopK) {
    const int k = threadIdx.x, e = k < c.top_k ? r.expert[k] : -1;
    const bool here = e >= 0 && e / c.local_experts == d;
    meta->local[k] = here ? e % c.local_experts : -1;
    meta->pos[k] = here ? r.pos[k] : -1;
    meta->weight[k] = here ? r.weight[k] : 0.0f;
    if (k == 0) meta->token = t;
  }
}

__device__ inline void dispatchSend(const LlDispatchArgs& a, KernelStart* st) {
  const LlCommon& c = a.c;
  const uint64_t seq = st->seq;
  const int* s_mask = st->mask;
  const int K = c.top_k, H = a.hidden, parity = static_cast<int>(seq & 1);
  if (st->aborted || s_mask[c.rank]) return;  // a masked rank sends nothing
  const bool credited = waitCredits(c, c.buf.disp_acks, st, kWaitDispatchCredit);
  traceMark(c, 0, 1);
  if (!credited) return;
  sendCounts(a, seq, s_mask);

  const int pieces = H / 16;
  const int rounds = (pieces + blockDim.x - 1) / blockDim.x;
  __shared__ TokenRoute s_route;
  for (int t = blockIdx.x; t < c.num_tokens; t += gridDim.x) {
    __syncthreads();  // the previous token's route is no longer read
    if (threadIdx.x < K) {
      const int i = t * K + threadIdx.x;
      s_route.dst[threadIdx.x] = c.h.dst_rank[i];
      s_route.slot[threadIdx.x] = c.h.dst_slot[i];
      s_route.expert[threadIdx.x] = c.h.topk[i];
      s_route.pos[threadIdx.x] = c.h.send_pos[i];
      s_route.weight[threadIdx.x] = a.topk_weights != nullptr ? a.topk_weights[i] : 0.0f;
    }
    int4 raw[kMaxPiecesPerThread][2];
    int4 quant[kMaxPiecesPerThread];
    float scale[kMaxPiecesPerThread];
    const int4* row = reinterpret_cast<const int4*>(a.x + static_cast<size_t>(t) * H);
#pragma unroll
    for (int r = 0; r < kMaxPiecesPerThread; ++r) {
      if (r >= rounds) break;  // uniform across the block: the shuffles below stay converged
      const int p = threadIdx.x + r * blockDim.x;
      const bool on = p < pieces;
      if (on) {
        raw[r][0] = row[2 * p];
        raw[r][1] = row[2 * p + 1];
      }
      if (a.fp8) {  // 8 consecutive threads hold one 128-channel block
        float v[16];
        float amax = 0.0f;
        if (on) {
          unpackBf16x16(raw[r], v);
          for (int i = 0; i < 16; ++i) amax = fmaxf(amax, fabsf(v[i]));
        }
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 4));
        scale[r] = fp8ScaleFor(amax, a.round_scales != 0);
        if (on) quant[r] = quantizeE4m3x16(v, scale[r]);
      }
    }
    __syncthreads();  // s_route is filled
    for (int j = 0; j < K; ++j) {
      const int d = s_route.dst[j];
      if (d < 0) break;
      if (s_mask[d]) continue;
      char* slot = dispatchSlot(c, peerBuffer(c, d), parity, c.rank, s_route.slot[j]);
      writeMeta(c, s_route, t, d, reinterpret_cast<LlSlotMeta*>(slot));
      int4* payload = reinterpret_cast<int4*>(slot + sizeof(LlSlotMeta));
      float* scales = reinterpret_cast<float*>(slot + sizeof(LlSlotMeta) + c.buf.payload_bytes);
#pragma unroll
      for (int r = 0; r < kMaxPiecesPerThread; ++r) {
        const int p = threadIdx.x + r * blockDim.x;
        if (r >= rounds || p >= pieces) continue;
        if (a.fp8) {
          payload[p] = quant[r];
          if (p % 8 == 0) scales[p / 8] = scale[r];
        } else {
          payload[2 * p] = raw[r][0];
          payload[2 * p + 1] = raw[r][1];
        }
      }
    }
    __syncthreads();
    // The block's stores to every destination are done (the barrier above orders them before
    // these release stores): one flag per destination slot. (No barrier is needed before the
    // next token: its stores go to other slots.)
    if (threadIdx.x < K) {
      const int d = s_route.dst[threadIdx.x];
      if (d >= 0 && !s_mask[d])
        storeRelease(slotFlag(c, peerBuffer(c, d), parity, c.rank, s_route.slot[threadIdx.x]), seq);
    }
  }
  traceMarkAllBlocks(c, 0, 2);
}

}  // namespace epyard::ep
