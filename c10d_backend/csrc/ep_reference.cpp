// epyard._C.ep_reference_*: the CPU reference of LL dispatch/combine (ep/reference) for Python
// tests, so GPU results from epyard.ep are checked against the same rules as the C tests.
// Tensors cross as CPU tensors; BF16 rows travel as int16 bit patterns.
#include <torch/extension.h>

#include "reference/ll_reference.h"

namespace epyard::c10d_backend {
namespace {

namespace ref = ::epyard::ep::ref;

template <typename T>
std::vector<T> toVector(const at::Tensor& t) {
  at::Tensor c = t.contiguous().cpu();
  const T* p = static_cast<const T*>(c.data_ptr());
  return std::vector<T>(p, p + c.numel());
}

template <typename T>
at::Tensor toTensor(const std::vector<T>& v, at::ScalarType type) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::TensorOptions().dtype(type));
  std::memcpy(t.data_ptr(), v.data(), v.size() * sizeof(T));
  return t;
}

struct Setup {
  ref::LlShape shape;
  ref::LlOptions options;
  std::vector<ref::RankRouting> ranks;
};

// routings: per rank (tokens int16 [T, H] holding BF16 bits, topk_idx int64 [T, K], weights float32 [T, K]).
Setup setup(int64_t num_ranks, int64_t num_experts, int64_t max_tokens, int64_t hidden, int64_t top_k,
            const std::vector<std::vector<at::Tensor>>& routings, bool rank_major, bool fp8,
            bool round_scales, const std::vector<bool>& masked) {
  Setup s;
  s.shape = {static_cast<int>(num_ranks), static_cast<int>(num_experts), static_cast<int>(max_tokens),
             static_cast<int>(hidden), static_cast<int>(top_k)};
  s.options.layout = rank_major ? ref::LlLayout::kRankMajor : ref::LlLayout::kExpertMajor;
  s.options.fp8 = fp8;
  s.options.round_scales = round_scales;
  s.options.masked = masked;
  for (const auto& r : routings) {
    TORCH_CHECK(r.size() == 3, "ep_reference: each routing is (tokens, topk_idx, topk_weights)");
    ref::RankRouting rr;
    rr.num_tokens = static_cast<int>(r[1].size(0));
    std::vector<int16_t> bits = toVector<int16_t>(r[0]);
    rr.tokens.assign(bits.begin(), bits.end());
    rr.topk_idx = toVector<int64_t>(r[1]);
    rr.topk_weights = toVector<float>(r[2]);
    s.ranks.push_back(std::move(rr));
  }
  const std::string bad = ref::validate(s.shape, s.ranks);
  TORCH_CHECK(bad.empty(), "ep_reference: ", bad);
  return s;
}

std::vector<std::map<std::string, at::Tensor>> referenceDispatch(
    int64_t num_ranks, int64_t num_experts, int64_t max_tokens, int64_t hidden, int64_t top_k,
    const std::vector<std::vector<at::Tensor>>& routings, bool rank_major, bool fp8, bool round_scales,
    const std::vector<bool>& masked) {
  Setup s = setup(num_ranks, num_experts, max_tokens, hidden, top_k, routings, rank_major, fp8,
                  round_scales, masked);
  std::vector<std::map<std::string, at::Tensor>> out;
  for (const ref::LlDispatchResult& r : ref::dispatch(s.shape, s.ranks, s.options)) {
    std::map<std::string, at::Tensor> m;
    std::vector<int32_t> src, tok;
    for (const ref::RowOrigin& o : r.origin) src.push_back(o.src_rank), tok.push_back(o.token);
    m["origin_rank"] = toTensor(src, at::kInt);
    m["origin_token"] = toTensor(tok, at::kInt);
    m["expert_counters"] = toTensor(std::vector<int32_t>(r.expert_counters.begin(), r.expert_counters.end()), at::kInt);
    m["src_rank_counters"] = toTensor(std::vector<int32_t>(r.src_rank_counters.begin(), r.src_rank_counters.end()), at::kInt);
    m["expert_offsets"] = toTensor(std::vector<int32_t>(r.expert_offsets.begin(), r.expert_offsets.end()), at::kInt);
    m["recv_total"] = toTensor(std::vector<int32_t>{r.recv_total}, at::kInt);
    if (fp8) {
      m["tokens"] = toTensor(r.tokens_fp8, at::kByte);
      m["scales"] = toTensor(r.scales, at::kFloat);
    } else {
      m["tokens"] = toTensor(std::vector<int16_t>(r.tokens_bf16.begin(), r.tokens_bf16.end()), at::kShort);
    }
    if (rank_major) {
      m["topk_idx"] = toTensor(r.recv_topk_idx, at::kLong);
      m["topk_weights"] = toTensor(r.recv_topk_weights, at::kFloat);
    }
    out.push_back(std::move(m));
  }
  return out;
}

// expert_out: per rank, int16 BF16 bits shaped like its dispatch rows. Returns per rank [T*H] bits.
std::vector<at::Tensor> referenceCombine(int64_t num_ranks, int64_t num_experts, int64_t max_tokens,
                                         int64_t hidden, int64_t top_k,
                                         const std::vector<std::vector<at::Tensor>>& routings,
                                         bool rank_major, const std::vector<at::Tensor>& expert_out,
                                         const std::vector<bool>& masked) {
  Setup s = setup(num_ranks, num_experts, max_tokens, hidden, top_k, routings, rank_major, false,
                  false, masked);
  const std::vector<ref::LlDispatchResult> dispatched = ref::dispatch(s.shape, s.ranks, s.options);
  std::vector<std::vector<uint16_t>> eo;
  for (const at::Tensor& t : expert_out) {
    std::vector<int16_t> bits = toVector<int16_t>(t);
    eo.emplace_back(bits.begin(), bits.end());
  }
  std::vector<at::Tensor> out;
  for (const auto& r : ref::combine(s.shape, s.ranks, dispatched, eo, s.options))
    out.push_back(toTensor(std::vector<int16_t>(r.begin(), r.end()), at::kShort));
  return out;
}

}  // namespace

void bindReference(pybind11::module& m) {
  m.def("ep_reference_dispatch", &referenceDispatch, "CPU reference of LL dispatch (all ranks)");
  m.def("ep_reference_combine", &referenceCombine, "CPU reference of LL combine (all ranks)");
}

}  // namespace epyard::c10d_backend
