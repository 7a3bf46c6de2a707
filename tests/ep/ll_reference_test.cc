// The LL reference against the rules written in ep/reference/ll_reference.h, checked from the
// routing alone (not from the reference's own bookkeeping).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "reference/ll_reference.h"
#include "reference/numeric.h"

namespace epyard::ep::ref {
namespace {

LlShape smallShape() {
  LlShape s;
  s.num_ranks = 4;
  s.num_experts = 16;
  s.max_tokens = 12;
  s.hidden = 256;
  s.top_k = 4;
  return s;
}

// Random routing: distinct experts per token unless `duplicates`, some -1 slots, and some ranks
// with fewer (or zero) tokens.
std::vector<RankRouting> randomRouting(const LlShape& s, uint32_t seed, bool duplicates = false) {
  std::mt19937 rng(seed);
  std::vector<RankRouting> ranks(static_cast<size_t>(s.num_ranks));
  for (int r = 0; r < s.num_ranks; ++r) {
    RankRouting& in = ranks[r];
    in.num_tokens = r == 1 ? 0 : static_cast<int>(rng() % (s.max_tokens + 1));
    in.tokens.resize(static_cast<size_t>(in.num_tokens) * s.hidden);
    for (auto& v : in.tokens)
      v = floatToBf16(std::ldexp(static_cast<float>(static_cast<int>(rng() % 2001) - 1000), -7));
    in.topk_idx.assign(static_cast<size_t>(in.num_tokens) * s.top_k, -1);
    in.topk_weights.assign(in.topk_idx.size(), 0.0f);
    for (int t = 0; t < in.num_tokens; ++t) {
      std::set<int> used;
      for (int k = 0; k < s.top_k; ++k) {
        size_t i = static_cast<size_t>(t) * s.top_k + k;
        in.topk_weights[i] = static_cast<float>(rng() % 1000) / 1000.0f;
        if (rng() % 5 == 0) continue;  // leave -1
        int e = static_cast<int>(rng() % s.num_experts);
        if (!duplicates)
          while (used.count(e)) e = static_cast<int>(rng() % s.num_experts);
        used.insert(e);
        in.topk_idx[i] = e;
      }
    }
  }
  return ranks;
}

TEST(LlReference, ValidateNamesTheProblem) {
  LlShape s = smallShape();
  auto ranks = randomRouting(s, 1);
  EXPECT_EQ(validate(s, ranks), "");
  auto bad = ranks;
  bad[0].num_tokens = 3;
  bad[0].tokens.assign(3 * s.hidden, 0);
  bad[0].topk_idx.assign(3 * s.top_k, 16);
  bad[0].topk_weights.assign(3 * s.top_k, 0);
  EXPECT_NE(validate(s, bad).find("expert id 16"), std::string::npos);
  LlShape odd = s;
  odd.num_experts = 18;
  EXPECT_NE(validate(odd, ranks).find("multiple of the number of ranks"), std::string::npos);
  LlShape h = s;
  h.hidden = 200;
  EXPECT_NE(validate(h, ranks).find("multiple of 128"), std::string::npos);
  LlShape b = s;
  b.max_tokens = 1;
  EXPECT_NE(validate(b, ranks).find("max_dispatch_tokens_per_rank"), std::string::npos);
}

TEST(LlReference, ExpertMajorPlacesEveryPairOnceInOrder) {
  LlShape s = smallShape();
  const int L = s.localExperts(), R = s.num_ranks, B = s.max_tokens;
  for (uint32_t seed = 0; seed < 20; ++seed) {
    auto ranks = randomRouting(s, seed);
    ASSERT_EQ(validate(s, ranks), "");
    auto out = dispatch(s, ranks, LlOptions{});
    // Expected rows per (dst rank, local expert), straight from the routing.
    std::map<std::pair<int, int>, std::vector<std::pair<int, int>>> want;
    for (int src = 0; src < R; ++src)
      for (int t = 0; t < ranks[src].num_tokens; ++t)
        for (int k = 0; k < s.top_k; ++k) {
          int64_t e = ranks[src].topk_idx[t * s.top_k + k];
          if (e >= 0) want[{static_cast<int>(e / L), static_cast<int>(e % L)}].push_back({src, t});
        }
    for (int dst = 0; dst < R; ++dst) {
      int total = 0;
      for (int l = 0; l < L; ++l) {
        const auto& rows = want[{dst, l}];
        ASSERT_EQ(out[dst].expert_counters[l], static_cast<int>(rows.size()));
        EXPECT_EQ(out[dst].expert_offsets[l], total);
        total += static_cast<int>(rows.size());
        for (size_t i = 0; i < rows.size(); ++i) {
          size_t row = static_cast<size_t>(l) * R * B + i;
          const RowOrigin& g = out[dst].origin[row];
          ASSERT_EQ(g.src_rank, rows[i].first);
          ASSERT_EQ(g.token, rows[i].second);
          for (int c = 0; c < s.hidden; ++c)
            ASSERT_EQ(out[dst].tokens_bf16[row * s.hidden + c],
                      ranks[g.src_rank].tokens[static_cast<size_t>(g.token) * s.hidden + c]);
        }
      }
      EXPECT_EQ(out[dst].recv_total, total);
    }
  }
}

TEST(LlReference, RankMajorSendsEachTokenOncePerRankWithLocalIds) {
  LlShape s = smallShape();
  const int L = s.localExperts(), R = s.num_ranks, B = s.max_tokens, K = s.top_k;
  auto ranks = randomRouting(s, 7);
  LlOptions o;
  o.layout = LlLayout::kRankMajor;
  auto out = dispatch(s, ranks, o);
  for (int dst = 0; dst < R; ++dst) {
    for (int src = 0; src < R; ++src) {
      int n = 0;
      for (int t = 0; t < ranks[src].num_tokens; ++t) {
        bool goes = false;
        for (int k = 0; k < K; ++k)
          goes |= ranks[src].topk_idx[t * K + k] >= 0 && ranks[src].topk_idx[t * K + k] / L == dst;
        if (!goes) continue;
        size_t row = static_cast<size_t>(src) * B + n++;
        ASSERT_EQ(out[dst].origin[row].token, t);
        for (int k = 0; k < K; ++k) {
          int64_t e = ranks[src].topk_idx[t * K + k];
          int64_t want = (e >= 0 && e / L == dst) ? e % L : -1;
          EXPECT_EQ(out[dst].recv_topk_idx[row * K + k], want);
          if (want >= 0) {
            EXPECT_EQ(out[dst].recv_topk_weights[row * K + k], ranks[src].topk_weights[t * K + k]);
          }
        }
      }
      EXPECT_EQ(out[dst].src_rank_counters[src], n);
    }
  }
}

// Identity experts: per rank, bf16(sum over that rank's slots of w_k * x) in slot order; then
// the sum of those partials in rank order, rounded once.
TEST(LlReference, ExpertMajorCombineOfIdentityExpertsIsWeightedSum) {
  LlShape s = smallShape();
  for (bool dup : {false, true}) {
    auto ranks = randomRouting(s, 11, dup);
    auto out = dispatch(s, ranks, LlOptions{});
    std::vector<std::vector<uint16_t>> expert_out;
    for (auto& r : out) expert_out.push_back(r.tokens_bf16);
    auto combined = combine(s, ranks, out, expert_out, LlOptions{});
    for (int src = 0; src < s.num_ranks; ++src)
      for (int t = 0; t < ranks[src].num_tokens; ++t)
        for (int c = 0; c < s.hidden; ++c) {
          float acc = 0;
          float x = bf16ToFloat(ranks[src].tokens[t * s.hidden + c]);
          for (int dst = 0; dst < s.num_ranks; ++dst) {
            float partial = 0;
            bool reached = false;
            for (int k = 0; k < s.top_k; ++k) {
              int64_t e = ranks[src].topk_idx[t * s.top_k + k];
              if (e < 0 || e / s.localExperts() != dst) continue;
              partial += ranks[src].topk_weights[t * s.top_k + k] * x;
              reached = true;
            }
            if (reached) acc += bf16ToFloat(floatToBf16(partial));
          }
          ASSERT_EQ(combined[src][t * s.hidden + c], floatToBf16(acc))
              << "rank " << src << " token " << t << " channel " << c << " dup " << dup;
        }
  }
}

TEST(LlReference, RankMajorCombineSumsOneContributionPerRank) {
  LlShape s = smallShape();
  auto ranks = randomRouting(s, 5);
  LlOptions o;
  o.layout = LlLayout::kRankMajor;
  auto out = dispatch(s, ranks, o);
  std::vector<std::vector<uint16_t>> expert_out;
  for (auto& r : out) expert_out.push_back(r.tokens_bf16);
  auto combined = combine(s, ranks, out, expert_out, o);
  const int L = s.localExperts();
  for (int src = 0; src < s.num_ranks; ++src)
    for (int t = 0; t < ranks[src].num_tokens; ++t) {
      std::set<int> dsts;
      for (int k = 0; k < s.top_k; ++k) {
        int64_t e = ranks[src].topk_idx[t * s.top_k + k];
        if (e >= 0) dsts.insert(static_cast<int>(e / L));
      }
      for (int c = 0; c < s.hidden; ++c) {
        float x = bf16ToFloat(ranks[src].tokens[t * s.hidden + c]);
        float acc = 0;
        for (size_t i = 0; i < dsts.size(); ++i) acc += x;
        ASSERT_EQ(combined[src][t * s.hidden + c], floatToBf16(acc));
      }
    }
}

TEST(LlReference, MaskedRankNeitherSendsNorReceives) {
  LlShape s = smallShape();
  auto ranks = randomRouting(s, 3);
  LlOptions o;
  o.masked = {false, false, true, false};
  auto out = dispatch(s, ranks, o);
  EXPECT_EQ(out[2].recv_total, 0);
  for (int dst = 0; dst < s.num_ranks; ++dst) EXPECT_EQ(out[dst].src_rank_counters[2], 0);
  std::vector<std::vector<uint16_t>> expert_out;
  for (auto& r : out) expert_out.push_back(r.tokens_bf16);
  auto combined = combine(s, ranks, out, expert_out, o);
  for (uint16_t v : combined[2]) EXPECT_EQ(v, 0);
  // Other ranks lose exactly the contributions of experts on rank 2.
  const int L = s.localExperts();
  for (int t = 0; t < ranks[0].num_tokens; ++t) {
    float x = bf16ToFloat(ranks[0].tokens[t * s.hidden]);
    float acc = 0;
    for (int dst = 0; dst < s.num_ranks; ++dst) {
      if (dst == 2) continue;
      float partial = 0;
      bool reached = false;
      for (int k = 0; k < s.top_k; ++k) {
        int64_t e = ranks[0].topk_idx[t * s.top_k + k];
        if (e >= 0 && e / L == dst) partial += ranks[0].topk_weights[t * s.top_k + k] * x, reached = true;
      }
      if (reached) acc += bf16ToFloat(floatToBf16(partial));
    }
    EXPECT_EQ(combined[0][t * s.hidden], floatToBf16(acc));
  }
}

TEST(LlReference, Fp8RowsDequantiseWithinHalfAnUlp) {
  LlShape s = smallShape();
  auto ranks = randomRouting(s, 9);
  for (bool round : {false, true}) {
    LlOptions o;
    o.fp8 = true;
    o.round_scales = round;
    auto out = dispatch(s, ranks, o);
    const int R = s.num_ranks, B = s.max_tokens, L = s.localExperts();
    const int blocks = s.hidden / kScaleBlock;
    for (int dst = 0; dst < R; ++dst)
      for (int l = 0; l < L; ++l)
        for (int i = 0; i < out[dst].expert_counters[l]; ++i) {
          size_t row = static_cast<size_t>(l) * R * B + i;
          const RowOrigin& g = out[dst].origin[row];
          for (int c = 0; c < s.hidden; ++c) {
            float scale = out[dst].scales[row * blocks + c / kScaleBlock];
            if (round) {
              ASSERT_EQ(scale, std::exp2(std::round(std::log2(scale))));
            }
            float x = bf16ToFloat(ranks[g.src_rank].tokens[g.token * s.hidden + c]);
            float y = e4m3ToFloat(out[dst].tokens_fp8[row * s.hidden + c]) * scale;
            // 3 mantissa bits: half an ulp is 1/16 relative; subnormals: 2^-10 absolute.
            float tol = std::max(std::fabs(x) / 16.0f, scale * std::ldexp(1.0f, -10)) * 1.0001f;
            ASSERT_LE(std::fabs(y - x), tol) << "x " << x << " y " << y << " scale " << scale;
          }
        }
  }
}

}  // namespace
}  // namespace epyard::ep::ref
