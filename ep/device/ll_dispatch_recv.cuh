// LL dispatch, receiving half: wait for every source's per-expert counts, place rows
// (expert-major: expert l's rows are source 0's tokens in token order, then source 1's, ...;
// rank-major: source d's tokens at rows [d*B, d*B + count)), then copy each slot out of the
// symmetric buffer into the caller's tensors as soon as its flag is up. The counters go to the
// layout-info tensors; the handle keeps the per-source counts and, per received slot, its token
// and (expert-major) the row of each top-k slot: combine reads them.
#pragma once

#include "device/ll_buffers.cuh"

namespace epyard::ep {

struct RecvShared {
  int count[kLlMaxRanks];   // tokens from each source, -1: nothing (masked or lost)
  int lost[kLlMaxRanks];    // the source's counts did not come (or it is masked)
  int prefix[kLlMaxRanks];  // [R][L]: rows of expert l from sources before d
  int total[kLlMaxRanks];   // [L]: rows per local expert
  int offset[kLlMaxRanks];  // slots of sources before d (lost sources count 0)
  int slots;                 // slots from all sources
  int ready[kLlBlockTeams];  // per team: the item's flag is up
  int rows[kLlBlockTeams][kLlMaxTopK];  // per team: output rows of its slot
  int nrows[kLlBlockTeams];
};

// Every source's counts (tagged words, R x (1 + L) of them, waited for in parallel), then the
// placement of rows: per-expert prefixes over sources and each source's first slot.
__device__ inline void gatherCounts(const LlDispatchArgs& a, uint64_t seq, const int* s_mask,
                                    RecvShared* s) {
  const LlCommon& c = a.c;
  const int R = c.num_ranks, L = c.local_experts, W = L + 1, parity = static_cast<int>(seq & 1);
  char* mine = myBuffer(c);
  for (int d = threadIdx.x; d < R; d += blockDim.x) s->lost[d] = s_mask[c.rank] || s_mask[d];
  __syncthreads();
  for (int i = threadIdx.x; i < R * W; i += blockDim.x) {
    const int d = i / W, l = i % W;
    uint32_t v = 0;
    if (!s_mask[c.rank] && !s_mask[d] &&
        !waitTagged(c, dispatchHeader(c, mine, parity, d) + l, seq, kWaitDispatchCounts, d, &v))
      s->lost[d] = 1;  // (lost[] is only read after the barrier below)
    if (l == 0) s->count[d] = static_cast<int>(v); else s->prefix[d * L + l - 1] = static_cast<int>(v);
  }
  __syncthreads();
  for (int l = threadIdx.x; l < L; l += blockDim.x) {
    int run = 0;
    for (int d = 0; d < R; ++d) {
      const int n = s->lost[d] ? 0 : s->prefix[d * L + l];
      s->prefix[d * L + l] = run;
      run += n;
    }
    s->total[l] = run;
  }
  if (threadIdx.x == 0) {
    int run = 0;
    for (int d = 0; d < R; ++d) {
      if (s->lost[d]) s->count[d] = -1;
      s->offset[d] = run;
      run += s->count[d] > 0 ? s->count[d] : 0;
    }
    s->slots = run;
  }
  __syncthreads();
}

__device__ inline void writeCounters(const LlDispatchArgs& a, const RecvShared* s) {
  const LlCommon& c = a.c;
  const LlCounters& out = a.counters;
  for (int l = threadIdx.x; l < c.local_experts; l += blockDim.x) {
    int offset = 0;
    for (int i = 0; i < l; ++i) offset += s->total[i];
    if (out.expert_counters) out.expert_counters[l] = s->total[l];
    if (out.expert_offsets) out.expert_offsets[l] = offset;
  }
  for (int d = threadIdx.x; d < c.num_ranks; d += blockDim.x) {
    const int n = s->count[d] > 0 ? s->count[d] : 0;
    c.h.recv_src_cnt[d] = n;
    if (out.src_rank_counters) out.src_rank_counters[d] = n;
  }
  if (threadIdx.x == 0 && out.recv_total) {
    int sum = 0;
    if (c.rank_major) {
      for (int d = 0; d < c.num_ranks; ++d) sum += s->count[d] > 0 ? s->count[d] : 0;
    } else {
      for (int l = 0; l < c.local_experts; ++l) sum += s->total[l];
    }
    *out.recv_total = sum;
  }
}

// Plans slot j of source d (lanes 0..31 of a team, after its flag was seen): the output rows it
// goes to, in parallel over top-k slots; also combine's recipe and the rank-major top-k outputs.
__device__ inline void planSlot(const LlDispatchArgs& a, RecvShared* s, int team, int parity, int d,
                                int j, int lane) {
  const LlCommon& c = a.c;
  const int R = c.num_ranks, L = c.local_experts, B = c.max_tokens, K = c.top_k;
  const LlSlotMeta* meta =
      reinterpret_cast<const LlSlotMeta*>(dispatchSlot(c, myBuffer(c), parity, d, j));
  const size_t slot_index = static_cast<size_t>(d) * B + j;
  const int l = lane < K ? meta->local[lane] : -1, pos = lane < K ? meta->pos[lane] : -1;
  if (lane == 0) c.h.recv_token[slot_index] = meta->token;
  if (c.rank_major) {
    if (lane == 0) {
      s->rows[team][0] = static_cast<int>(slot_index);
      s->nrows[team] = 1;
    }
    if (lane < K) {
      if (a.out_topk_idx) a.out_topk_idx[slot_index * K + lane] = l;
      if (a.out_topk_weights) a.out_topk_weights[slot_index * K + lane] = l >= 0 ? meta->weight[lane] : 0.0f;
    }
    return;
  }
  // Expert-major: a row per first naming of a local expert; a repeat reuses the first's row.
  const bool first = l >= 0 && pos >= 0;
  const int row = first ? l * R * B + s->prefix[d * L + l] + pos : -1;
  const unsigned firsts = __ballot_sync(0xffffffffu, first);
  if (first) s->rows[team][__popc(firsts & ((1u << lane) - 1))] = row;
  if (lane == 0) s->nrows[team] = __popc(firsts);
  int recipe = row;
  for (int f = 0; f < K; ++f) {  // the row of the first slot naming the same expert
    const int lf = __shfl_sync(0xffffffffu, l, f), rf = __shfl_sync(0xffffffffu, row, f);
    if (f < lane && recipe < 0 && l >= 0 && lf == l && rf >= 0) recipe = rf;
  }
  if (lane < K) c.h.recv_rows[slot_index * K + lane] = recipe;
}

// A received slot's bytes move in chunks of kCopyPieces 16-byte pieces per lane; the first
// chunk is loaded while the slot is being planned (one round of loads for both).
constexpr int kCopyPieces = 8;  // a whole BF16 row of hidden 8192 per 128-thread team
struct SlotChunk {
  int4 v[kCopyPieces];
  float scale;
};

__device__ __forceinline__ void loadChunk(const int4* src, uint32_t n16, uint32_t base, int lane,
                                          SlotChunk* chunk) {
#pragma unroll
  for (int r = 0; r < kCopyPieces; ++r) {
    const uint32_t i = base + lane + r * kTeamThreads;
    if (i < n16) chunk->v[r] = src[i];
  }
}

__device__ __forceinline__ void storeChunk(char* out, const int* rows, int n, uint32_t row_bytes,
                                           uint32_t n16, uint32_t base, int lane,
                                           const SlotChunk& chunk) {
#pragma unroll
  for (int r = 0; r < kCopyPieces; ++r) {
    const uint32_t i = base + lane + r * kTeamThreads;
    if (i >= n16) continue;
    for (int k = 0; k < n; ++k)
      reinterpret_cast<int4*>(out + static_cast<size_t>(rows[k]) * row_bytes)[i] = chunk.v[r];
  }
}

__device__ __forceinline__ const char* slotPayload(const LlDispatchArgs& a, int parity, int d, int j) {
  return dispatchSlot(a.c, myBuffer(a.c), parity, d, j) + sizeof(LlSlotMeta);
}

// The first chunk of slot j of source d and its first scale (every lane of a team).
__device__ inline void loadSlotStart(const LlDispatchArgs& a, int parity, int d, int j, int lane,
                                     SlotChunk* chunk) {
  const char* payload = slotPayload(a, parity, d, j);
  const uint32_t row_bytes = a.fp8 ? a.hidden : 2 * a.hidden;
  loadChunk(reinterpret_cast<const int4*>(payload), row_bytes / 16, 0, lane, chunk);
  if (a.fp8 && lane < a.hidden / kLlScaleBlock)
    chunk->scale = reinterpret_cast<const float*>(payload + a.c.buf.payload_bytes)[lane];
}

// Copies the planned slot to its rows (a team): the payload is read once and stored to each.
__device__ inline void copySlot(const LlDispatchArgs& a, const RecvShared* s, int team, int parity,
                                int d, int j, int lane, SlotChunk* chunk) {
  const int H = a.hidden, n = s->nrows[team];
  const int* rows = s->rows[team];
  const char* payload = slotPayload(a, parity, d, j);
  const uint32_t row_bytes = a.fp8 ? H : 2 * H, n16 = row_bytes / 16;
  char* out = static_cast<char*>(a.out_tokens);
  storeChunk(out, rows, n, row_bytes, n16, 0, lane, *chunk);
  for (uint32_t base = kCopyPieces * kTeamThreads; base < n16; base += kCopyPieces * kTeamThreads) {
    loadChunk(reinterpret_cast<const int4*>(payload), n16, base, lane, chunk);
    storeChunk(out, rows, n, row_bytes, n16, base, lane, *chunk);
  }
  if (a.fp8) {
    const int groups = H / kLlScaleBlock;
    const float* scales = reinterpret_cast<const float*>(payload + a.c.buf.payload_bytes);
    for (int g = lane; g < groups; g += kTeamThreads) {
      const float v = g == lane ? chunk->scale : scales[g];
      for (int r = 0; r < n; ++r) a.out_scales[static_cast<size_t>(rows[r]) * groups + g] = v;
    }
  }
}

__device__ inline void dispatchRecv(const LlDispatchArgs& a, uint64_t seq, const int* s_mask) {
  const LlCommon& c = a.c;
  const int R = c.num_ranks, B = c.max_tokens, K = c.top_k, parity = static_cast<int>(seq & 1);
  __shared__ RecvShared s;
  gatherCounts(a, seq, s_mask, &s);
  traceMark(c, 0, 3);
  if (blockIdx.x == 0) writeCounters(a, &s);

  // Slots of all sources in one sequence; the teams of block b take items b*T .. b*T+T-1, then
  // the next T items for the grid, ...; each copies its slot as soon as the slot's flag is up.
  const Team team = myTeam();
  const int per_block = blockDim.x / kTeamThreads;
  for (int first = blockIdx.x * per_block; first < s.slots; first += team.count) {
    const int g = first + team.local;
    const bool active = g < s.slots;
    const int d = active ? segmentOf(s.offset, R, g) : 0, j = active ? g - s.offset[d] : 0;
    if (active && team.lane == 0)
      s.ready[team.local] = waitFlag(c, slotFlag(c, myBuffer(c), parity, d, j), seq, kWaitDispatchData, d, seq);
    __syncthreads();
    const bool ready = active && s.ready[team.local];
    SlotChunk chunk;
    if (ready) loadSlotStart(a, parity, d, j, team.lane, &chunk);
    if (ready && team.lane < 32) planSlot(a, &s, team.local, parity, d, j, team.lane);
    __syncthreads();
    if (ready) copySlot(a, &s, team.local, parity, d, j, team.lane, &chunk);
    __syncthreads();  // ready[] and rows[] are rewritten for the next items
  }
  traceMarkAllBlocks(c, 0, 4);

  // Rank-major rows past a source's count read as "no expert".
  if (c.rank_major && (a.out_topk_idx || a.out_topk_weights)) {
    const size_t n = static_cast<size_t>(R) * B * K;
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
      const int row = static_cast<int>(i / K), d = row / B, j = row % B;
      if (j < (s.count[d] > 0 ? s.count[d] : 0)) continue;
      if (a.out_topk_idx) a.out_topk_idx[i] = -1;
      if (a.out_topk_weights) a.out_topk_weights[i] = 0.0f;
    }
  }
}

}  // namespace epyard::ep
