#include "ep_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>

#include "reference/numeric.h"

namespace epyard::ep::test {

thread_local int g_rank = -1;

void die(const char* fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "[rank %d] FAIL: %s\n", g_rank, msg);
  std::fflush(stdout);
  std::fflush(stderr);
  // Not exit(): virtual ranks are threads, and several failing at once ran the static
  // destructors concurrently (a double free, then a segfault, on 4 ranks).
  std::_Exit(1);
}

DevTensor::DevTensor(ncclDataType_t type, std::vector<size_t> dims) : sizes(std::move(dims)) {
  size_t element = type == ncclBfloat16 ? 2 : (type == ncclFloat8e4m3 || type == ncclUint8) ? 1
                   : (type == ncclInt64) ? 8 : 4;
  bytes = element;
  for (size_t d : sizes) bytes *= d;
  // cudaMalloc/cudaMemset/cudaFree on the legacy stream: these tests' streams are non-blocking,
  // so the synchronous memset never waits for (or races with) another virtual rank's kernels.
  if (bytes > 0) CUDA_CHECK(cudaMalloc(&data, bytes));
  if (bytes > 0) CUDA_CHECK(cudaMemset(data, 0, bytes));
  if (bytes > 0) CUDA_CHECK(cudaStreamSynchronize(nullptr));
  t.ndim = static_cast<unsigned int>(sizes.size());
  t.datatype = type;
  t.data = data;
  t.sizes = sizes.data();
}

DevTensor::~DevTensor() {
  if (data != nullptr) cudaFree(data);
}

std::vector<ref::RankRouting> makeRouting(const ref::LlShape& s, uint64_t seed,
                                          const RoutingSpec& spec) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f), chance(0.0f, 1.0f);
  const size_t H = static_cast<size_t>(s.hidden);
  std::vector<ref::RankRouting> out(static_cast<size_t>(s.num_ranks));
  std::vector<int> experts(static_cast<size_t>(s.num_experts));
  for (int r = 0; r < s.num_ranks; ++r) {
    ref::RankRouting& in = out[r];
    in.num_tokens = spec.full ? s.max_tokens : std::max(s.max_tokens - r, 0);
    if (r == spec.empty_rank) in.num_tokens = 0;
    const size_t T = static_cast<size_t>(in.num_tokens);
    in.tokens.resize(T * H);
    for (size_t t = 0; t < T; ++t) {
      for (size_t b = 0; b < H / 128; ++b) {
        const float amplitude = std::ldexp(1.0f, static_cast<int>(rng() % 13) - 6);
        for (size_t c = 0; c < 128; ++c)
          in.tokens[t * H + b * 128 + c] = ref::floatToBf16(unit(rng) * amplitude);
      }
      in.tokens[t * H + 0] = ref::floatToBf16(static_cast<float>(r));
      in.tokens[t * H + 1] = ref::floatToBf16(static_cast<float>(t >> 4));
      in.tokens[t * H + 2] = ref::floatToBf16(static_cast<float>(t & 15));
    }
    in.topk_idx.resize(T * s.top_k);
    in.topk_weights.resize(T * s.top_k);
    for (size_t t = 0; t < T; ++t) {
      std::iota(experts.begin(), experts.end(), 0);
      for (int k = 0; k < s.top_k; ++k) {
        std::swap(experts[k], experts[k + rng() % (experts.size() - k)]);
        int64_t e = experts[k];
        if (chance(rng) < spec.drop) e = -1;
        if (k > 0 && chance(rng) < spec.repeat) e = in.topk_idx[t * s.top_k + rng() % k];
        in.topk_idx[t * s.top_k + k] = e;
        in.topk_weights[t * s.top_k + k] = 0.05f + 0.9f * chance(rng);
      }
    }
  }
  return out;
}

std::vector<uint16_t> expertOutputs(const ref::LlShape& s, const ref::LlDispatchResult& d,
                                    bool rank_major) {
  const size_t H = static_cast<size_t>(s.hidden), rows = d.origin.size();
  const size_t per_expert = static_cast<size_t>(s.num_ranks) * s.max_tokens;
  std::vector<uint16_t> out(rows * H, 0);
  for (size_t row = 0; row < rows; ++row) {
    const ref::RowOrigin& g = d.origin[row];
    if (g.src_rank < 0) continue;
    const int l = rank_major ? -1 : static_cast<int>(row / per_expert);
    for (size_t c = 0; c < H; ++c) {
      const int v = static_cast<int>((g.src_rank * 131 + g.token * 7 + (l + 1) * 13 + c * 3) % 97) - 48;
      out[row * H + c] = ref::floatToBf16(static_cast<float>(v) / 16.0f);
    }
  }
  return out;
}

namespace {

// (rank, token) a received row says it holds (channels 0..2).
std::string decodeOrigin(const uint16_t* bf16_row) {
  char text[64];
  std::snprintf(text, sizeof(text), "(rank %g, token %g)", ref::bf16ToFloat(bf16_row[0]),
                ref::bf16ToFloat(bf16_row[1]) * 16 + ref::bf16ToFloat(bf16_row[2]));
  return text;
}

std::string rowName(const ref::LlShape& s, const ref::LlOptions& o, size_t row) {
  const size_t per = static_cast<size_t>(s.num_ranks) * s.max_tokens;
  char text[96];
  if (o.layout == ref::LlLayout::kExpertMajor) {
    std::snprintf(text, sizeof(text), "expert %zu row %zu", row / per, row % per);
  } else {
    std::snprintf(text, sizeof(text), "source %zu row %zu", row / s.max_tokens, row % s.max_tokens);
  }
  return text;
}

}  // namespace

std::string compareDispatch(const ref::LlShape& s, const ref::LlOptions& o,
                            const ref::LlDispatchResult& want, const DevTensor& tokens,
                            const DevTensor* scales, const DevTensor* topk_idx,
                            const DevTensor* topk_weights) {
  const size_t H = static_cast<size_t>(s.hidden), G = H / 128, rows = want.origin.size();
  char msg[512];
  if (!o.fp8) {
    std::vector<uint16_t> got = tokens.download<uint16_t>();
    for (size_t row = 0; row < rows; ++row) {
      const ref::RowOrigin& g = want.origin[row];
      if (g.src_rank < 0) continue;
      if (std::memcmp(&got[row * H], &want.tokens_bf16[row * H], H * 2) != 0) {
        std::snprintf(msg, sizeof(msg), "%s should hold (rank %d, token %d) bit for bit; it holds %s",
                      rowName(s, o, row).c_str(), g.src_rank, g.token, decodeOrigin(&got[row * H]).c_str());
        return msg;
      }
    }
  } else {
    std::vector<uint8_t> got = tokens.download<uint8_t>();
    std::vector<float> got_scales = scales->download<float>();
    for (size_t row = 0; row < rows; ++row) {
      const ref::RowOrigin& g = want.origin[row];
      if (g.src_rank < 0) continue;
      for (size_t b = 0; b < G; ++b) {
        if (got_scales[row * G + b] != want.scales[row * G + b]) {
          std::snprintf(msg, sizeof(msg), "%s (rank %d, token %d) scale %zu: got %a, want %a",
                        rowName(s, o, row).c_str(), g.src_rank, g.token, b,
                        got_scales[row * G + b], want.scales[row * G + b]);
          return msg;
        }
      }
      for (size_t c = 0; c < H; ++c) {
        if (got[row * H + c] != want.tokens_fp8[row * H + c]) {
          std::snprintf(msg, sizeof(msg), "%s (rank %d, token %d) channel %zu: E4M3 0x%02x, want 0x%02x",
                        rowName(s, o, row).c_str(), g.src_rank, g.token, c, got[row * H + c],
                        want.tokens_fp8[row * H + c]);
          return msg;
        }
      }
    }
  }
  if (topk_idx != nullptr) {
    std::vector<int64_t> got = topk_idx->download<int64_t>();
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != want.recv_topk_idx[i]) {
        std::snprintf(msg, sizeof(msg), "topk_idx[%zu] (%s, slot %zu) is %lld, want %lld", i,
                      rowName(s, o, i / s.top_k).c_str(), i % s.top_k, static_cast<long long>(got[i]),
                      static_cast<long long>(want.recv_topk_idx[i]));
        return msg;
      }
  }
  if (topk_weights != nullptr) {
    std::vector<float> got = topk_weights->download<float>();
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != want.recv_topk_weights[i]) {
        std::snprintf(msg, sizeof(msg), "topk_weights[%zu] is %g, want %g", i, got[i],
                      want.recv_topk_weights[i]);
        return msg;
      }
  }
  return "";
}

std::string compareCounters(const ref::LlDispatchResult& want,
                            const DevTensor& expert_counters, const DevTensor& src_counters,
                            const DevTensor& offsets, const DevTensor& total) {
  auto same = [](const char* name, const std::vector<int32_t>& got, const std::vector<int>& w) {
    for (size_t i = 0; i < w.size(); ++i)
      if (got[i] != w[i]) return std::string(name) + "[" + std::to_string(i) + "] is " +
                                 std::to_string(got[i]) + ", want " + std::to_string(w[i]);
    return std::string();
  };
  std::string bad = same("expert_counters", expert_counters.download<int32_t>(), want.expert_counters);
  if (bad.empty()) bad = same("src_rank_counters", src_counters.download<int32_t>(), want.src_rank_counters);
  if (bad.empty()) bad = same("expert_offsets", offsets.download<int32_t>(), want.expert_offsets);
  if (bad.empty()) bad = same("recv_total_counter", total.download<int32_t>(), {want.recv_total});
  return bad;
}

std::string compareCombine(const std::vector<uint16_t>& want, const DevTensor& out) {
  std::vector<uint16_t> got = out.download<uint16_t>();
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i]) {
      char msg[160];
      std::snprintf(msg, sizeof(msg), "combine output element %zu is %g (0x%04x), want %g (0x%04x)", i,
                    ref::bf16ToFloat(got[i]), got[i], ref::bf16ToFloat(want[i]), want[i]);
      return msg;
    }
  return "";
}

uint64_t hashBytes(const void* p, size_t n, uint64_t h) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

}  // namespace epyard::ep::test
