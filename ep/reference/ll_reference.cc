#include "reference/ll_reference.h"

#include <algorithm>
#include <cmath>

#include "reference/numeric.h"

namespace epyard::ep::ref {
namespace {

bool isMasked(const LlOptions& o, int rank) {
  return !o.masked.empty() && o.masked[static_cast<size_t>(rank)];
}

// Distinct experts token t of `routing` names, in first-appearance order, that are reachable
// (not on a masked rank) from an unmasked source.
std::vector<int> targets(const LlShape& s, const RankRouting& routing, int t) {
  std::vector<int> out;
  for (int k = 0; k < s.top_k; ++k) {
    int64_t e = routing.topk_idx[static_cast<size_t>(t) * s.top_k + k];
    if (e < 0) continue;
    if (std::find(out.begin(), out.end(), static_cast<int>(e)) == out.end())
      out.push_back(static_cast<int>(e));
  }
  return out;
}

void copyRow(const LlShape& s, const LlOptions& o, const uint16_t* src, LlDispatchResult* r,
             size_t row) {
  const size_t h = static_cast<size_t>(s.hidden);
  if (!o.fp8) {
    std::copy(src, src + h, r->tokens_bf16.begin() + row * h);
    return;
  }
  const size_t blocks = h / kScaleBlock;
  for (size_t b = 0; b < blocks; ++b) {
    float amax = 0;
    for (size_t c = 0; c < kScaleBlock; ++c)
      amax = std::max(amax, std::fabs(bf16ToFloat(src[b * kScaleBlock + c])));
    float scale = fp8Scale(amax, o.round_scales);
    r->scales[row * blocks + b] = scale;
    for (size_t c = 0; c < kScaleBlock; ++c)
      r->tokens_fp8[row * h + b * kScaleBlock + c] =
          floatToE4m3(bf16ToFloat(src[b * kScaleBlock + c]) / scale);
  }
}

}  // namespace

std::string validate(const LlShape& s, const std::vector<RankRouting>& ranks) {
  if (s.num_ranks < 1) return "num_ranks must be at least 1";
  if (s.num_experts < 1 || s.num_experts % s.num_ranks != 0)
    return "num_experts (" + std::to_string(s.num_experts) + ") must be a positive multiple of " +
           "the number of ranks (" + std::to_string(s.num_ranks) + ")";
  if (s.hidden < kScaleBlock || s.hidden % kScaleBlock != 0)
    return "hidden (" + std::to_string(s.hidden) + ") must be a positive multiple of 128";
  if (s.top_k < 1 || s.top_k > 16) return "top_k must be in [1, 16]";
  if (static_cast<int>(ranks.size()) != s.num_ranks) return "one routing per rank is needed";
  for (int r = 0; r < s.num_ranks; ++r) {
    const RankRouting& in = ranks[r];
    if (in.num_tokens < 0 || in.num_tokens > s.max_tokens)
      return "rank " + std::to_string(r) + " has " + std::to_string(in.num_tokens) +
             " tokens; max_dispatch_tokens_per_rank is " + std::to_string(s.max_tokens);
    size_t t = static_cast<size_t>(in.num_tokens);
    if (in.tokens.size() != t * s.hidden || in.topk_idx.size() != t * s.top_k ||
        in.topk_weights.size() != t * s.top_k)
      return "rank " + std::to_string(r) + ": tensor sizes do not match [T, H] / [T, K]";
    for (int64_t e : in.topk_idx)
      if (e < -1 || e >= s.num_experts)
        return "rank " + std::to_string(r) + ": expert id " + std::to_string(e) + " outside [-1, " +
               std::to_string(s.num_experts) + ")";
  }
  return "";
}

std::vector<LlDispatchResult> dispatch(const LlShape& s, const std::vector<RankRouting>& ranks,
                                       const LlOptions& o) {
  const int R = s.num_ranks, L = s.localExperts(), B = s.max_tokens, K = s.top_k;
  const size_t H = static_cast<size_t>(s.hidden);
  const bool em = o.layout == LlLayout::kExpertMajor;
  const size_t rows = em ? static_cast<size_t>(L) * R * B : static_cast<size_t>(R) * B;
  std::vector<LlDispatchResult> out(static_cast<size_t>(R));
  for (LlDispatchResult& r : out) {
    r.expert_counters.assign(L, 0);
    r.src_rank_counters.assign(R, 0);
    r.expert_offsets.assign(L, 0);
    r.origin.assign(rows, RowOrigin{});
    if (o.fp8) {
      r.tokens_fp8.assign(rows * H, 0);
      r.scales.assign(rows * (H / kScaleBlock), 0.0f);
    } else {
      r.tokens_bf16.assign(rows * H, 0);
    }
    if (!em) {
      r.recv_topk_idx.assign(rows * K, -1);
      r.recv_topk_weights.assign(rows * K, 0.0f);
    }
  }
  for (int src = 0; src < R; ++src) {  // ascending source, then ascending token
    if (isMasked(o, src)) continue;
    const RankRouting& in = ranks[src];
    for (int t = 0; t < in.num_tokens; ++t) {
      const uint16_t* data = &in.tokens[static_cast<size_t>(t) * H];
      std::vector<bool> reached(static_cast<size_t>(R), false);
      for (int e : targets(s, in, t)) {
        int dst = e / L;
        if (isMasked(o, dst)) continue;
        LlDispatchResult& r = out[dst];
        if (!reached[dst]) {
          reached[dst] = true;
          if (!em) {
            size_t row = static_cast<size_t>(src) * B + r.src_rank_counters[src];
            r.origin[row] = {src, t};
            copyRow(s, o, data, &r, row);
          }
          ++r.src_rank_counters[src];
        }
        if (em) {
          int l = e % L;
          size_t row = static_cast<size_t>(l) * R * B + r.expert_counters[l];
          r.origin[row] = {src, t};
          copyRow(s, o, data, &r, row);
        } else {
          // Rank-major: the row's local expert ids and weights, at the top-k slots naming them.
          size_t row = static_cast<size_t>(src) * B + r.src_rank_counters[src] - 1;
          for (int k = 0; k < K; ++k) {
            if (in.topk_idx[static_cast<size_t>(t) * K + k] == e) {
              r.recv_topk_idx[row * K + k] = e % L;
              r.recv_topk_weights[row * K + k] = in.topk_weights[static_cast<size_t>(t) * K + k];
            }
          }
        }
        ++r.expert_counters[e % L];
      }
    }
  }
  for (LlDispatchResult& r : out) {
    int sum = 0;
    for (int l = 0; l < L; ++l) {
      r.expert_offsets[l] = sum;
      sum += r.expert_counters[l];
    }
    r.recv_total = 0;
    for (int c : (em ? r.expert_counters : r.src_rank_counters)) r.recv_total += c;
  }
  return out;
}

std::vector<std::vector<uint16_t>> combine(const LlShape& s, const std::vector<RankRouting>& ranks,
                                           const std::vector<LlDispatchResult>& dispatched,
                                           const std::vector<std::vector<uint16_t>>& expert_out,
                                           const LlOptions& o) {
  const int R = s.num_ranks, L = s.localExperts(), B = s.max_tokens, K = s.top_k;
  const size_t H = static_cast<size_t>(s.hidden);
  const bool em = o.layout == LlLayout::kExpertMajor;
  std::vector<std::vector<uint16_t>> result(static_cast<size_t>(R));
  for (int src = 0; src < R; ++src) {
    const RankRouting& in = ranks[src];
    result[src].assign(static_cast<size_t>(in.num_tokens) * H, 0);
    if (isMasked(o, src)) continue;
    for (int t = 0; t < in.num_tokens; ++t) {
      std::vector<float> acc(H, 0.0f);
      auto addRow = [&](int rank, size_t row, float weight) {
        const uint16_t* v = &expert_out[rank][row * H];
        for (size_t c = 0; c < H; ++c) acc[c] += weight * bf16ToFloat(v[c]);
      };
      // Finds the row holding (src, t) in `rank`'s dispatch output, within [first, first+n).
      auto findRow = [&](int rank, size_t first, int n) -> long {
        for (int i = 0; i < n; ++i) {
          const RowOrigin& g = dispatched[rank].origin[first + i];
          if (g.src_rank == src && g.token == t) return static_cast<long>(first + i);
        }
        return -1;
      };
      for (int dst = 0; dst < R; ++dst) {
        if (isMasked(o, dst)) continue;
        if (!em) {
          long row =
              findRow(dst, static_cast<size_t>(src) * B, dispatched[dst].src_rank_counters[src]);
          if (row >= 0) addRow(dst, static_cast<size_t>(row), 1.0f);
          continue;
        }
        // The expert rank's partial sum over the slots naming its experts, rounded once.
        std::vector<float> partial(H, 0.0f);
        bool reached = false;
        for (int k = 0; k < K; ++k) {
          int64_t e = in.topk_idx[static_cast<size_t>(t) * K + k];
          if (e < 0 || e / L != dst) continue;
          const int l = static_cast<int>(e % L);
          long row = findRow(dst, static_cast<size_t>(l) * R * B, dispatched[dst].expert_counters[l]);
          if (row < 0) continue;
          reached = true;
          const uint16_t* v = &expert_out[dst][static_cast<size_t>(row) * H];
          const float w = in.topk_weights[static_cast<size_t>(t) * K + k];
          for (size_t c = 0; c < H; ++c) partial[c] += w * bf16ToFloat(v[c]);
        }
        if (!reached) continue;
        for (size_t c = 0; c < H; ++c) acc[c] += bf16ToFloat(floatToBf16(partial[c]));
      }
      for (size_t c = 0; c < H; ++c) result[src][t * H + c] = floatToBf16(acc[c]);
    }
  }
  return result;
}

}  // namespace epyard::ep::ref
