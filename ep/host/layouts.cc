// Where things live in the symmetric buffer and in a handle's memory (plain arithmetic, unit
// tested on the CPU).
#include <algorithm>

#include "host/group.h"

namespace epyard::ep {
namespace {

uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Appends `bytes` to a layout being built at `*at` and returns the piece's offset.
uint64_t take(uint64_t* at, uint64_t bytes, uint64_t align = 256) {
  uint64_t offset = alignUp(*at, align);
  *at = offset + bytes;
  return offset;
}

}  // namespace

LlBufferLayout llBufferLayout(int ranks, int experts, int max_tokens, unsigned max_token_bytes) {
  LlBufferLayout b{};
  const uint64_t R = static_cast<uint64_t>(ranks), B = static_cast<uint64_t>(max_tokens);
  const uint64_t L = static_cast<uint64_t>(experts / ranks);
  b.payload_bytes = max_token_bytes;
  b.header_bytes = static_cast<uint32_t>(alignUp(8 * (1 + L), 16));
  b.slot_bytes = static_cast<uint32_t>(sizeof(LlSlotMeta) + max_token_bytes +
                                       alignUp(max_token_bytes / 2 / kLlScaleBlock * 4, 16));
  b.comb_row_bytes = max_token_bytes;
  // Flags and tagged words first and contiguous: the reset kernel clears everything below
  // barrier_flags.
  uint64_t at = 0;
  b.disp_slot_flags = take(&at, 2 * R * B * 8, 8);
  b.disp_acks = take(&at, 2 * R * 8, 8);
  b.comb_row_flags = take(&at, 2 * B * R * 8, 8);
  b.comb_acks = take(&at, 2 * R * 8, 8);
  b.disp_headers = take(&at, 2 * R * b.header_bytes);
  b.comb_weights = take(&at, 2 * R * B * kLlMaxTopK * 8);
  b.barrier_flags = take(&at, R * 8, 8);
  b.disp_slots = take(&at, 2 * R * B * b.slot_bytes);
  b.comb_slots = take(&at, 2 * B * R * b.comb_row_bytes);
  b.total = alignUp(at, 1 << 21);  // whole 2 MiB pages for the window
  return b;
}

LlHandleLayout llHandleLayout(int ranks, int experts, int max_tokens, int top_k, bool rank_major) {
  LlHandleLayout h{};
  const uint64_t R = static_cast<uint64_t>(ranks), B = static_cast<uint64_t>(max_tokens);
  const uint64_t E = static_cast<uint64_t>(experts), K = static_cast<uint64_t>(top_k);
  uint64_t at = 0;
  h.topk = take(&at, B * K * 4);
  h.send_pos = take(&at, B * K * 4);
  h.dst_rank = take(&at, B * K * 4);
  h.dst_slot = take(&at, B * K * 4);
  h.expert_send_cnt = take(&at, E * 4);
  h.rank_send_cnt = take(&at, R * 4);
  h.recv_src_cnt = take(&at, R * 4);
  h.recv_token = take(&at, R * B * 4);
  h.recv_rows = take(&at, (rank_major ? 1 : R * B * K) * 4);
  h.seqs = take(&at, 2 * 8);
  h.total = alignUp(at, 256);
  return h;
}

}  // namespace epyard::ep
