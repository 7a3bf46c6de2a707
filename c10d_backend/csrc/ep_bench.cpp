// The baseline of the Python-overhead benchmark (perf/torch_perf.py): the same dispatch + combine
// the Python API issues, called straight through the C API from a C++ loop with every argument
// built once. Returns the host seconds per iteration spent issuing (the stream is synchronised
// after the clock stops, so GPU time is not counted as long as the launch queue has room).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <torch/csrc/utils/pybind.h>

#include <chrono>

#include "ep_ops.hpp"

namespace epyard::c10d_backend {
namespace {

double issueLoop(int64_t handle, const at::Tensor& x, const at::Tensor& weights,
                 const at::Tensor& out_tokens, const std::optional<at::Tensor>& out_scales,
                 const at::Tensor& expert_out, const at::Tensor& combined, int64_t num_ranks,
                 int64_t iters) {
  auto h = reinterpret_cast<ncclEpHandle_t>(handle);
  const bool fp8 = out_scales.has_value();
  auto i32 = at::TensorOptions().dtype(at::kInt).device(x.device());
  at::Tensor ec = at::empty({expert_out.size(0)}, i32), eo = at::empty({expert_out.size(0)}, i32);
  at::Tensor rc = at::empty({num_ranks}, i32), rt = at::empty({1}, i32);
  EpTensor xv(x, "x"), wv(weights, "weights"), ov(out_tokens, "out_tokens");
  EpTensor ecv(ec, "counters"), eov(eo, "offsets"), rcv(rc, "rank counters"), rtv(rt, "total");
  EpTensor eiv(expert_out, "expert_out"), cov(combined, "combined");
  std::optional<EpTensor> sv;
  if (fp8) sv.emplace(*out_scales, "out_scales");
  ncclEpDispatchInputs_t din = NCCL_EP_DISPATCH_INPUTS_INIT;
  din.tokens = &xv.t;
  din.topk_weights = &wv.t;
  ncclEpDispatchOutputs_t dout = NCCL_EP_DISPATCH_OUTPUTS_INIT;
  dout.tokens = &ov.t;
  dout.scales = sv ? &sv->t : nullptr;
  ncclEpLayoutInfo_t info = NCCL_EP_LAYOUT_INFO_INIT;
  info.expert_counters = &ecv.t;
  info.src_rank_counters = &rcv.t;
  info.expert_offsets = &eov.t;
  info.recv_total_counter = &rtv.t;
  ncclEpDispatchConfig_t dcfg = NCCL_EP_DISPATCH_CONFIG_INIT;
  dcfg.round_scales = fp8 ? 1 : 0;
  ncclEpCombineInputs_t cin = NCCL_EP_COMBINE_INPUTS_INIT;
  cin.tokens = &eiv.t;
  cin.topk_weights = &wv.t;
  ncclEpCombineOutputs_t cout = NCCL_EP_COMBINE_OUTPUTS_INIT;
  cout.tokens = &cov.t;
  ncclEpCombineConfig_t ccfg = NCCL_EP_COMBINE_CONFIG_INIT;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters; ++i) {
    ncclResult_t r = ncclEpDispatch(h, &din, &dout, &info, &dcfg, stream);
    if (r == ncclSuccess) r = ncclEpCombine(h, &cin, &cout, &ccfg, stream);
    TORCH_CHECK(r == ncclSuccess, "epyard bench: ", ncclEpGetLastError(nullptr));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
  return seconds / static_cast<double>(iters);
}

}  // namespace

void bindBench(pybind11::module& m) {
  m.def("ep_c_api_issue_loop", &issueLoop,
        "Host seconds per dispatch + combine issued straight through the C API (benchmark baseline)");
}

}  // namespace epyard::c10d_backend
