// CPU reference of low-latency (LL) dispatch and combine: for any routing, exactly what every
// rank's outputs and counters must be. GPU tests compare against it. All ranks live in one
// process here; a "rank" is just an index.
//
// Semantic rules (the kernels follow these; tests check them):
//  * E experts over R ranks, L = E / R per rank: expert e lives on rank e / L as local e % L.
//  * topk_idx[t][k] = -1 means "no expert". Any other value outside [0, E) is an error.
//  * A token goes to each distinct expert it names once; if it names an expert twice, combine
//    applies the sum of those weights.
//  * Experts on a masked rank receive nothing; a masked rank sends nothing; their combine
//    contributions are zero.
//  * Expert-major rows of local expert l: the tokens of source rank 0 in ascending token order,
//    then those of rank 1, ...; expert_counters[l] rows are valid, the rest are untouched.
//  * Rank-major rows of source rank s: its tokens that name at least one expert of this rank, in
//    ascending order; topk_idx holds local expert ids (-1 where the expert is elsewhere).
//  * FP8 dispatch: per row, per block of 128 channels, scale = max(amax, 1e-4) / 448 (rounded
//    up to a power of two with round_scales); value = E4M3(bf16 value / scale), nearest even,
//    saturating. The scale is stored as float.
//  * Combine returns one BF16 row per (token, rank it went to) and the owner sums those rows in
//    float in ascending rank order, rounding to BF16 once. Rank-major: that row is the caller's
//    (already reduced over local experts). Expert-major: the expert rank forms it as the float sum,
//    in ascending top-k slot order over the slots naming its experts, of weight x expert row
//    (a repeated expert is added once per slot naming it), rounded to BF16.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace epyard::ep::ref {

struct LlShape {
  int num_ranks = 0;
  int num_experts = 0;
  int max_tokens = 0;  // B: tokens one rank may dispatch
  int hidden = 0;
  int top_k = 0;
  int localExperts() const { return num_experts / num_ranks; }
};

struct RankRouting {
  int num_tokens = 0;
  std::vector<uint16_t> tokens;     // [T, H] BF16
  std::vector<int64_t> topk_idx;    // [T, K]
  std::vector<float> topk_weights;  // [T, K]
};

struct RowOrigin {
  int src_rank = -1;
  int token = -1;
};

// What one rank holds after dispatch.
struct LlDispatchResult {
  // Counters (layout_info).
  std::vector<int> expert_counters;    // [L] rows received per local expert
  std::vector<int> src_rank_counters;  // [R] tokens received from each source rank
  std::vector<int> expert_offsets;     // [L] exclusive prefix of expert_counters
  int recv_total = 0;                  // expert-major: rows; rank-major: tokens
  // Expert-major: [L, R*B] rows; rank-major: [R, B] rows.
  std::vector<RowOrigin> origin;
  std::vector<uint16_t> tokens_bf16;     // rows x H (when BF16 out)
  std::vector<uint8_t> tokens_fp8;       // rows x H (when FP8 out)
  std::vector<float> scales;             // rows x H/128 (when FP8 out)
  std::vector<int64_t> recv_topk_idx;    // rank-major: [R, B, K] local ids or -1
  std::vector<float> recv_topk_weights;  // rank-major: [R, B, K]
};

enum class LlLayout { kExpertMajor, kRankMajor };

struct LlOptions {
  LlLayout layout = LlLayout::kExpertMajor;
  bool fp8 = false;
  bool round_scales = false;
  std::vector<bool> masked;  // [R], empty = none masked
};

// Checks shapes and routing; empty string when valid, else what is wrong.
std::string validate(const LlShape& shape, const std::vector<RankRouting>& ranks);

// Dispatch seen by every rank. results[r] is rank r's output.
std::vector<LlDispatchResult> dispatch(const LlShape& shape, const std::vector<RankRouting>& ranks,
                                       const LlOptions& options);

// Combine. expert_out[r] is what rank r feeds combine, shaped like its dispatch output rows
// (expert-major: [L, R*B, H]; rank-major: [R, B, H], already reduced over local experts).
// Returns, per rank, its [T, H] BF16 output.
std::vector<std::vector<uint16_t>> combine(const LlShape& shape,
                                           const std::vector<RankRouting>& ranks,
                                           const std::vector<LlDispatchResult>& dispatched,
                                           const std::vector<std::vector<uint16_t>>& expert_out,
                                           const LlOptions& options);

}  // namespace epyard::ep::ref
