// EP from torch: epyard._C functions that create EP groups and handles on an epyard process
// group's communicator, and torch.library ops (epyard::ep_update / ep_dispatch / ep_combine /
// ep_complete) that run the C API on the current CUDA stream, so torch.compile can trace them
// (fake kernels are registered in epyard/ep.py) and CUDA graphs capture them; the ops write
// into outputs they are given. Eager calls reach the same code through pybind (bindEpOps),
// skipping the dispatcher, with outputs allocated here or given (out=).
#include <ATen/cuda/CUDAContext.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/library.h>

#include <nccl_ep.h>

#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "ep_ops.hpp"
#include "process_group.hpp"

namespace epyard::c10d_backend {
namespace {

ncclDataType_t epType(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kBFloat16: return ncclBfloat16;
    case at::kFloat8_e4m3fn: return ncclFloat8e4m3;
    case at::kFloat: return ncclFloat32;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte: return ncclUint8;
    default:
      TORCH_CHECK(false, "epyard EP: ", name, " has dtype ", t.scalar_type(),
                  " (EP takes bfloat16, float8_e4m3fn, float32, int32, int64, uint8)");
  }
}

// The communicator under each EP group, held (a CommState::Use) until the group is destroyed:
// an abort of the process group frees it only then, since the group's window lives in it.
struct EpGroupComm {
  std::shared_ptr<DeviceComm> dc;  // declared first: outlives the Use
  CommState::Use use;
};
std::mutex g_group_comms_mu;
std::unordered_map<int64_t, std::unique_ptr<EpGroupComm>> g_group_comms;

}  // namespace

// A 1-D ncclEpTensor_t over `n` elements at `data` (slices of one allocation, without views).
struct RawTensor {
  ncclEpTensor_t t = NCCL_EP_TENSOR_INIT;
  size_t size;
  RawTensor(void* data, ncclDataType_t type, size_t n);
  RawTensor(const RawTensor&) = delete;
  RawTensor& operator=(const RawTensor&) = delete;
};

// The output side of a dispatch as the C API takes it: tokens, optional scales / topk_idx /
// topk_weights (undefined or empty = not asked for) and `counters`, int32 [2L + R + 1] holding
// expert counters, source-rank counters, expert offsets and the total in a row. Built once, it
// serves any number of calls (the tensors must outlive it).
class DispatchTarget {
 public:
  DispatchTarget(const at::Tensor& tokens, const std::optional<at::Tensor>& scales,
                 const std::optional<at::Tensor>& topk_idx,
                 const std::optional<at::Tensor>& topk_weights, const at::Tensor& counters,
                 int64_t local_experts, int64_t num_ranks);
  DispatchTarget(const DispatchTarget&) = delete;  // the C structs point into this object
  DispatchTarget& operator=(const DispatchTarget&) = delete;
  // ncclEpDispatch of `x` (and its weights) on `handle` into these outputs, current stream.
  void dispatch(int64_t handle, const at::Tensor& x, const std::optional<at::Tensor>& topk_weights,
                bool round_scales, bool send_only);

 private:
  EpTensor tokens_;
  std::optional<EpTensor> scales_, idx_, weights_;
  RawTensor expert_counters_, rank_counters_, offsets_, total_;
  ncclEpDispatchOutputs_t out_ = NCCL_EP_DISPATCH_OUTPUTS_INIT;
  ncclEpLayoutInfo_t info_ = NCCL_EP_LAYOUT_INFO_INIT;
};

// The output of a combine as the C API takes it (bf16 [T, H]); built once, used by any call.
class CombineTarget {
 public:
  explicit CombineTarget(const at::Tensor& out);
  CombineTarget(const CombineTarget&) = delete;
  CombineTarget& operator=(const CombineTarget&) = delete;
  void combine(int64_t handle, const at::Tensor& x, const std::optional<at::Tensor>& topk_weights,
               bool send_only);

 private:
  EpTensor out_tensor_;
  ncclEpCombineOutputs_t out_ = NCCL_EP_COMBINE_OUTPUTS_INIT;
};

EpTensor::EpTensor(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.is_cuda(), "epyard EP: ", name, " must be a CUDA tensor, got ", x.device());
  TORCH_CHECK(x.is_contiguous(), "epyard EP: ", name, " must be contiguous");
  TORCH_CHECK(x.dim() <= kMaxDims, "epyard EP: ", name, " has ", x.dim(), " dimensions (at most ",
              kMaxDims, ")");
  for (int64_t d = 0; d < x.dim(); ++d) sizes[d] = static_cast<size_t>(x.size(d));
  t.ndim = static_cast<unsigned int>(x.dim());
  t.datatype = epType(x, name);
  t.data = x.data_ptr();
  t.sizes = sizes;
}

RawTensor::RawTensor(void* data, ncclDataType_t type, size_t n) : size(n) {
  t.ndim = 1;
  t.datatype = type;
  t.data = data;
  t.sizes = &size;
}

namespace {

ncclEpHandle_t handleOf(int64_t id) { return reinterpret_cast<ncclEpHandle_t>(id); }

void check(ncclResult_t r, ncclEpGroup_t g, const char* call) {
  TORCH_CHECK(r == ncclSuccess, "epyard EP: ", call, " failed (", ncclGetErrorString(r), "): ",
              ncclEpGetLastError(g));
}

bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->numel() > 0; }

int32_t* countersOf(const at::Tensor& counters, int64_t L, int64_t R) {
  TORCH_CHECK(counters.numel() == 2 * L + R + 1 && counters.scalar_type() == at::kInt && counters.is_cuda(),
              "epyard EP: counters must be a CUDA int32 tensor of 2 x local experts + ranks + 1 = ",
              2 * L + R + 1, " elements");
  return counters.data_ptr<int32_t>();
}

}  // namespace

DispatchTarget::DispatchTarget(const at::Tensor& tokens, const std::optional<at::Tensor>& scales,
                               const std::optional<at::Tensor>& topk_idx,
                               const std::optional<at::Tensor>& topk_weights,
                               const at::Tensor& counters, int64_t L, int64_t R)
    : tokens_(tokens, "out_tokens"),
      expert_counters_(countersOf(counters, L, R), ncclInt32, L),
      rank_counters_(counters.data_ptr<int32_t>() + L, ncclInt32, R),
      offsets_(counters.data_ptr<int32_t>() + L + R, ncclInt32, L),
      total_(counters.data_ptr<int32_t>() + 2 * L + R, ncclInt32, 1) {
  if (given(scales)) scales_.emplace(*scales, "out_scales");
  if (given(topk_idx)) idx_.emplace(*topk_idx, "out_topk_idx");
  if (given(topk_weights)) weights_.emplace(*topk_weights, "out_topk_weights");
  out_.tokens = &tokens_.t;
  out_.scales = scales_ ? &scales_->t : nullptr;
  out_.topk_idx = idx_ ? &idx_->t : nullptr;
  out_.topk_weights = weights_ ? &weights_->t : nullptr;
  info_.expert_counters = &expert_counters_.t;
  info_.src_rank_counters = &rank_counters_.t;
  info_.expert_offsets = &offsets_.t;
  info_.recv_total_counter = &total_.t;
}

namespace {

// The inputs of one dispatch or combine call: tokens and optional top-k weights.
struct CallInputs {
  EpTensor x;
  std::optional<EpTensor> w;
  CallInputs(const at::Tensor& tokens, const std::optional<at::Tensor>& weights) : x(tokens, "x") {
    if (weights) w.emplace(*weights, "topk_weights");
  }
  ncclEpTensor_t* weights() { return w ? &w->t : nullptr; }
};

}  // namespace

void DispatchTarget::dispatch(int64_t handle, const at::Tensor& x,
                              const std::optional<at::Tensor>& topk_weights, bool round_scales,
                              bool send_only) {
  CallInputs args(x, topk_weights);
  ncclEpDispatchInputs_t in = NCCL_EP_DISPATCH_INPUTS_INIT;
  in.tokens = &args.x.t;
  in.topk_weights = args.weights();
  ncclEpDispatchConfig_t cfg = NCCL_EP_DISPATCH_CONFIG_INIT;
  cfg.round_scales = round_scales;
  cfg.send_only = send_only;
  check(ncclEpDispatch(handleOf(handle), &in, &out_, &info_, &cfg,
                       at::cuda::getCurrentCUDAStream(x.device().index())),
        nullptr, "ncclEpDispatch");
}

CombineTarget::CombineTarget(const at::Tensor& out) : out_tensor_(out, "out") {
  out_.tokens = &out_tensor_.t;
}

void CombineTarget::combine(int64_t handle, const at::Tensor& x,
                            const std::optional<at::Tensor>& topk_weights, bool send_only) {
  CallInputs args(x, topk_weights);
  ncclEpCombineInputs_t in = NCCL_EP_COMBINE_INPUTS_INIT;
  in.tokens = &args.x.t;
  in.topk_weights = args.weights();
  ncclEpCombineConfig_t cfg = NCCL_EP_COMBINE_CONFIG_INIT;
  cfg.send_only = send_only;
  check(ncclEpCombine(handleOf(handle), &in, &out_, &cfg,
                      at::cuda::getCurrentCUDAStream(x.device().index())),
        nullptr, "ncclEpCombine");
}

namespace {

ncclEpGroup_t groupOf(int64_t id) { return reinterpret_cast<ncclEpGroup_t>(id); }

// `state` is a small tensor standing for the handle's routing: update writes it and dispatch
// reads it, so graph tracers keep the two in order.
void epUpdate(int64_t handle, const at::Tensor& topk_idx, const at::Tensor& state) {
  (void)state;
  EpTensor idx(topk_idx, "topk_idx");
  check(ncclEpUpdateHandle(handleOf(handle), &idx.t, nullptr, at::cuda::getCurrentCUDAStream()),
        nullptr, "ncclEpUpdateHandle");
}

// Dispatch into given outputs (the torch op: outputs given, state ordered after update).
void epDispatchOp(int64_t handle, const at::Tensor& state, const at::Tensor& x,
                  const std::optional<at::Tensor>& topk_weights, const at::Tensor& tokens,
                  const std::optional<at::Tensor>& scales, const std::optional<at::Tensor>& topk_idx,
                  const std::optional<at::Tensor>& out_weights, const at::Tensor& counters,
                  int64_t local_experts, int64_t num_ranks, bool round_scales, bool send_only) {
  (void)state;
  DispatchTarget(tokens, scales, topk_idx, out_weights, counters, local_experts, num_ranks)
      .dispatch(handle, x, topk_weights, round_scales, send_only);
}

// Eager dispatch that allocates its outputs. dims: {rows0, rows1, hidden, top_k, local_experts,
// num_ranks, rank_major}. Returns {tokens, scales or None, topk_idx or None, topk_weights or
// None, counters}.
pybind11::tuple dispatchNew(int64_t handle, const at::Tensor& x,
                            const std::optional<at::Tensor>& topk_weights,
                            const std::vector<int64_t>& dims, bool fp8, bool round_scales,
                            bool send_only) {
  TORCH_CHECK(dims.size() == 7, "epyard EP: dispatch needs 7 dims, got ", dims.size());
  const int64_t d0 = dims[0], d1 = dims[1], hidden = dims[2], top_k = dims[3], L = dims[4], R = dims[5];
  const bool rank_major = dims[6] != 0, with_w = rank_major && topk_weights.has_value();
  const auto opts = x.options();
  at::Tensor tokens = at::empty({d0, d1, hidden}, opts.dtype(fp8 ? at::kFloat8_e4m3fn : at::kBFloat16));
  std::optional<at::Tensor> scales, idx, w_out;
  if (fp8) scales = at::empty({d0, d1, hidden / 128}, opts.dtype(at::kFloat));
  if (rank_major) idx = at::empty({d0, d1, top_k}, opts.dtype(at::kLong));
  if (with_w) w_out = at::empty({d0, d1, top_k}, opts.dtype(at::kFloat));
  at::Tensor counters = at::empty({2 * L + R + 1}, opts.dtype(at::kInt));
  DispatchTarget(tokens, scales, idx, w_out, counters, L, R)
      .dispatch(handle, x, topk_weights, round_scales, send_only);
  return pybind11::make_tuple(tokens, scales, idx, w_out, counters);
}

void combineInto(int64_t handle, const at::Tensor& x, const std::optional<at::Tensor>& topk_weights,
                 const at::Tensor& out, bool send_only) {
  CombineTarget(out).combine(handle, x, topk_weights, send_only);
}

at::Tensor combineNew(int64_t handle, const at::Tensor& x, const std::optional<at::Tensor>& topk_weights,
                      int64_t num_tokens, bool send_only) {
  at::Tensor out = at::empty({num_tokens, x.size(-1)}, x.options().dtype(at::kBFloat16));
  combineInto(handle, x, topk_weights, out, send_only);
  return out;
}

// What epyard.ep keeps for reused outputs (out=): the tensors and their C structs, built once
// and built again only if a tensor was given new storage in place (resize_, set_).
class PreparedDispatch {
 public:
  PreparedDispatch(const at::Tensor& tokens, const std::optional<at::Tensor>& scales,
                   const std::optional<at::Tensor>& topk_idx,
                   const std::optional<at::Tensor>& topk_weights, const at::Tensor& counters,
                   int64_t local_experts, int64_t num_ranks)
      : tensors_{tokens, scales, topk_idx, topk_weights, counters}, l_(local_experts), r_(num_ranks) {
    build();
  }
  void run(int64_t handle, const at::Tensor& x, const std::optional<at::Tensor>& w,
           bool round_scales, bool send_only) {
    for (size_t i = 0; i < kTensors; ++i)
      if (addressOf(tensors_[i]) != built_at_[i]) {
        build();
        break;
      }
    target_->dispatch(handle, x, w, round_scales, send_only);
  }

 private:
  static constexpr size_t kTensors = 5;
  static std::pair<const void*, int64_t> addressOf(const std::optional<at::Tensor>& t) {
    return t && t->defined() ? std::make_pair(t->data_ptr(), t->numel()) : std::make_pair(nullptr, int64_t{0});
  }
  void build() {
    target_.reset();
    target_.emplace(*tensors_[0], tensors_[1], tensors_[2], tensors_[3], *tensors_[4], l_, r_);
    for (size_t i = 0; i < kTensors; ++i) built_at_[i] = addressOf(tensors_[i]);
  }
  std::optional<at::Tensor> tensors_[kTensors];
  std::pair<const void*, int64_t> built_at_[kTensors];
  int64_t l_, r_;
  std::optional<DispatchTarget> target_;
};

class PreparedCombine {
 public:
  explicit PreparedCombine(const at::Tensor& out) : out_(out) { build(); }
  void run(int64_t handle, const at::Tensor& x, const std::optional<at::Tensor>& w, bool send_only) {
    if (out_.data_ptr() != built_data_ || out_.numel() != built_numel_) build();
    target_->combine(handle, x, w, send_only);
  }

 private:
  void build() {
    target_.reset();
    target_.emplace(out_);
    built_data_ = out_.data_ptr();
    built_numel_ = out_.numel();
  }
  at::Tensor out_;
  const void* built_data_ = nullptr;
  int64_t built_numel_ = 0;
  std::optional<CombineTarget> target_;
};

void epComplete(int64_t handle, const at::Tensor& stream_anchor) {
  (void)stream_anchor;  // carries the device for dispatch; the op works on the handle
  check(ncclEpComplete(handleOf(handle), nullptr, at::cuda::getCurrentCUDAStream()), nullptr,
        "ncclEpComplete");
}

}  // namespace

int64_t epGroupCreate(const c10::intrusive_ptr<::c10d::Backend>& backend, int64_t device,
                      int64_t num_experts, int64_t max_tokens, int64_t max_token_bytes,
                      bool enable_mask, int64_t timeout_ms, int64_t max_num_sms) {
  auto* pg = dynamic_cast<ProcessGroupEpyard*>(backend.get());
  TORCH_CHECK(pg != nullptr, "epyard EP: the process group's CUDA backend is '",
              backend->getBackendName(), "'; EP groups need one created with backend 'epyard' "
              "(e.g. dist.new_group(backend=\"epyard\"))");
  TORCH_CHECK(num_experts > 0 && max_tokens > 0 && max_token_bytes > 0,
              "epyard EP: num_experts, max_tokens_per_rank and hidden must be positive");
  std::shared_ptr<DeviceComm> dc = pg->deviceComm(static_cast<c10::DeviceIndex>(device));
  std::string why;
  std::optional<CommState::Use> use = dc->state.enter(&why);
  TORCH_CHECK(use, "epyard EP: the process group's communicator on cuda:", device, " was aborted: ", why);
  ncclEpGroupConfig_t cfg = NCCL_EP_GROUP_CONFIG_INIT;
  cfg.num_experts = static_cast<unsigned>(num_experts);
  cfg.max_dispatch_tokens_per_rank = static_cast<unsigned>(max_tokens);
  cfg.max_token_bytes = static_cast<unsigned>(max_token_bytes);
  cfg.enable_mask = enable_mask ? 1 : 0;
  cfg.timeout_ns = static_cast<uint64_t>(timeout_ms) * 1000000ull;
  cfg.max_num_sms = static_cast<unsigned>(max_num_sms);
  ncclEpGroup_t g = nullptr;
  check(ncclEpCreateGroup(&g, use->comm(), &cfg), nullptr, "ncclEpCreateGroup");
  const int64_t id = reinterpret_cast<int64_t>(g);
  std::lock_guard<std::mutex> lock(g_group_comms_mu);
  g_group_comms[id] = std::make_unique<EpGroupComm>(EpGroupComm{dc, std::move(*use)});
  return id;
}

void epGroupDestroy(int64_t group) {
  check(ncclEpGroupDestroy(groupOf(group)), groupOf(group), "ncclEpGroupDestroy");
  std::unique_ptr<EpGroupComm> held;  // released after the lock: it may free the communicator
  {
    std::lock_guard<std::mutex> lock(g_group_comms_mu);
    auto it = g_group_comms.find(group);
    if (it != g_group_comms.end()) {
      held = std::move(it->second);
      g_group_comms.erase(it);
    }
  }
}

int64_t epHandleCreate(int64_t group, bool rank_major, int64_t top_k) {
  ncclEpHandle_t h = nullptr;
  check(ncclEpInitHandle(&h, groupOf(group),
                         rank_major ? NCCL_EP_LAYOUT_RANK_MAJOR : NCCL_EP_LAYOUT_EXPERT_MAJOR,
                         nullptr, static_cast<int>(top_k), nullptr),
        groupOf(group), "ncclEpInitHandle");
  return reinterpret_cast<int64_t>(h);
}

void epHandleDestroy(int64_t handle) {
  check(ncclEpHandleDestroy(handleOf(handle)), nullptr, "ncclEpHandleDestroy");
}

}  // namespace epyard::c10d_backend

namespace epyard::c10d_backend {

void bindEpOps(pybind11::module& m) {
  // The eager path of epyard.ep: the same functions as the torch ops, without the dispatcher.
  m.def("ep_update", &epUpdate);
  m.def("ep_dispatch_new", &dispatchNew);
  m.def("ep_combine_new", &combineNew);
  m.def("ep_complete", &epComplete);
  // Reused outputs (out=): the C structs are built once per output; each call converts only x
  // and the weights.
  pybind11::class_<PreparedDispatch>(m, "PreparedDispatch")
      .def(pybind11::init<const at::Tensor&, const std::optional<at::Tensor>&,
                          const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                          const at::Tensor&, int64_t, int64_t>())
      .def("run", &PreparedDispatch::run);
  pybind11::class_<PreparedCombine>(m, "PreparedCombine")
      .def(pybind11::init<const at::Tensor&>())
      .def("run", &PreparedCombine::run);
}

}  // namespace epyard::c10d_backend

TORCH_LIBRARY(epyard, m) {
  m.def("ep_update(int handle, Tensor topk_idx, Tensor(a!) state) -> ()");
  m.def(
      "ep_dispatch(int handle, Tensor(a!) state, Tensor x, Tensor? topk_weights, "
      "Tensor(b!) out_tokens, Tensor(c!)? out_scales, Tensor(d!)? out_topk_idx, "
      "Tensor(e!)? out_topk_weights, Tensor(f!) counters, int local_experts, int num_ranks, "
      "bool round_scales, bool send_only) -> ()");
  m.def("ep_combine(int handle, Tensor x, Tensor? topk_weights, Tensor(a!) out, bool send_only) -> ()");
  m.def("ep_complete(int handle, Tensor(a!) anchor) -> ()");
}

TORCH_LIBRARY_IMPL(epyard, CUDA, m) {
  m.impl("ep_update", &epyard::c10d_backend::epUpdate);
  m.impl("ep_dispatch", &epyard::c10d_backend::epDispatchOp);
  m.impl("ep_combine", &epyard::c10d_backend::combineInto);
  m.impl("ep_complete", &epyard::c10d_backend::epComplete);
}
