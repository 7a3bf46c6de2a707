// Layout arithmetic of the symmetric buffer and of handle memory: every region aligned, none
// overlapping, flags first (the reset kernel clears everything below barrier_flags), and the
// sizes follow the group's limits.
#include <gtest/gtest.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "device/ll_types.h"
#include "host/group.h"

namespace epyard::ep {
namespace {

using Region = std::pair<uint64_t, uint64_t>;  // [begin, end)

void expectDisjoint(std::vector<Region> regions, uint64_t total) {
  std::sort(regions.begin(), regions.end());
  for (size_t i = 0; i < regions.size(); ++i) {
    EXPECT_LE(regions[i].first, regions[i].second);
    EXPECT_LE(regions[i].second, total);
    if (i > 0) {
      EXPECT_LE(regions[i - 1].second, regions[i].first) << "regions overlap";
    }
  }
}

TEST(LlLayout, BufferRegionsAreDisjointAlignedAndFlagsComeFirst) {
  for (int ranks : {2, 4, 8}) {
    for (auto [experts, tokens, bytes] : {std::tuple{256, 128, 14336u}, std::tuple{512, 1024, 16384u},
                                          std::tuple{8, 1, 256u}}) {
      const LlBufferLayout b = llBufferLayout(ranks, experts, tokens, bytes);
      const uint64_t R = ranks, B = tokens, L = experts / ranks;
      // Flags and tagged words: all cleared by the reset kernel (everything below barrier_flags).
      std::vector<Region> cleared = {
          {b.disp_slot_flags, b.disp_slot_flags + 2 * R * B * 8},
          {b.disp_acks, b.disp_acks + 2 * R * 8},
          {b.comb_row_flags, b.comb_row_flags + 2 * B * R * 8},
          {b.comb_acks, b.comb_acks + 2 * R * 8},
          {b.disp_headers, b.disp_headers + 2 * R * b.header_bytes},
          {b.comb_weights, b.comb_weights + 2 * R * B * kLlMaxTopK * 8},
      };
      for (const Region& f : cleared) {
        EXPECT_EQ(f.first % 8, 0u);
        EXPECT_LE(f.second, b.barrier_flags) << "a flag region is not cleared by the reset";
      }
      std::vector<Region> all = cleared;
      all.push_back({b.barrier_flags, b.barrier_flags + R * 8});
      all.push_back({b.disp_slots, b.disp_slots + 2 * R * B * b.slot_bytes});
      all.push_back({b.comb_slots, b.comb_slots + 2 * B * R * b.comb_row_bytes});
      expectDisjoint(all, b.total);
      for (uint64_t o : {b.disp_headers, b.disp_slots, b.comb_weights, b.comb_slots}) EXPECT_EQ(o % 256, 0u);
      EXPECT_EQ(b.total % (1u << 21), 0u) << "whole 2 MiB pages";
      EXPECT_GE(b.header_bytes, 8 * (1 + L)) << "a tagged word per count";
      EXPECT_EQ(b.header_bytes % 16, 0u);
      EXPECT_EQ(b.slot_bytes % 16, 0u);
      EXPECT_GE(b.slot_bytes, sizeof(LlSlotMeta) + bytes + bytes / 256 * 4) << "meta, BF16 row, scales";
      EXPECT_EQ(b.comb_row_bytes, bytes);
    }
  }
}

TEST(LlLayout, HandleRegionsAreDisjointAndSizedByLayout) {
  for (bool rank_major : {false, true}) {
    const int R = 4, E = 256, B = 128, K = 8;
    const LlHandleLayout h = llHandleLayout(R, E, B, K, rank_major);
    const uint64_t rows = rank_major ? 1 : uint64_t(R) * B * K;
    expectDisjoint({{h.topk, h.topk + B * K * 4},
                    {h.send_pos, h.send_pos + B * K * 4},
                    {h.dst_rank, h.dst_rank + B * K * 4},
                    {h.dst_slot, h.dst_slot + B * K * 4},
                    {h.expert_send_cnt, h.expert_send_cnt + E * 4},
                    {h.rank_send_cnt, h.rank_send_cnt + R * 4},
                    {h.recv_src_cnt, h.recv_src_cnt + R * 4},
                    {h.recv_token, h.recv_token + R * B * 4},
                    {h.recv_rows, h.recv_rows + rows * 4},
                    {h.seqs, h.seqs + 16}},
                   h.total);
    EXPECT_EQ(h.seqs % 8, 0u);
  }
  EXPECT_GT(llHandleLayout(4, 256, 128, 8, false).total, llHandleLayout(4, 256, 128, 8, true).total)
      << "expert-major keeps combine's per-slot row recipe";
}

}  // namespace
}  // namespace epyard::ep
