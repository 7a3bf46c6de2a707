// ncclEpDispatch / ncclEpCombine / ncclEpComplete in low-latency mode: check every argument
// against the handle's routing and the group's limits, then launch the kernel (both halves, or
// only the sending half for send_only; ncclEpComplete launches the receiving half). Nothing here
// synchronises with the host, so the calls can be captured in a CUDA graph.
#include <cstring>

#include "device/ll_launch.h"
#include "host/api_check.h"
#include "host/api_impl.h"
#include "host/errors.h"
#include "host/group.h"

namespace epyard::ep {

ncclResult_t layoutInfoCounters(ncclEpGroup_t g, const ncclEpLayoutInfo_t* info, LlCounters* out);

namespace {

ncclResult_t checkHidden(ncclEpGroup_t g, const ncclEpTensor_t* t, const char* name, long* hidden) {
  const long h = static_cast<long>(t->sizes[t->ndim - 1]);
  if (h <= 0 || h % kLlScaleBlock != 0 || 2 * h > static_cast<long>(g->config.max_token_bytes))
    return fail(g, ncclInvalidArgument,
                std::string(name) + " has hidden size " + std::to_string(h) +
                    "; it must be a positive multiple of 128 with 2 x hidden <= "
                    "config.max_token_bytes (" + std::to_string(g->config.max_token_bytes) + ")");
  *hidden = h;
  return ncclSuccess;
}

// A dispatch or combine config: optional; when given, a valid header and the forward pass.
template <typename Config>
ncclResult_t checkOpConfig(ncclEpGroup_t g, const Config* cfg) {
  if (cfg == nullptr) return ncclSuccess;
  EP_CHECK(checkArg(g, checkStruct(cfg, "config")));
  const int pass = enumValue(cfg->pass_direction);
  if (pass != NCCL_EP_FWD_PASS)
    return fail(g, ncclInvalidArgument,
                "config->pass_direction (" + std::to_string(pass) +
                    ") applies to high-throughput mode only: use NCCL_EP_FWD_PASS");
  return ncclSuccess;
}

ncclResult_t checkOpHandle(ncclEpHandle_t h, const char* op) {
  if (h == nullptr) return fail(nullptr, ncclInvalidArgument, "handle is NULL");
  EP_CHECK(checkHealthy(h->group));
  if (h->num_tokens < 0)
    return fail(h->group, ncclInvalidUsage,
                std::string(op) + " before ncclEpUpdateHandle: the handle has no routing yet");
  if (h->pending != ncclEpHandle::Pending::kNone)
    return fail(h->group, ncclInvalidUsage,
                std::string(op) + ": this handle has a send_only op in flight; call "
                                  "ncclEpComplete first");
  return ncclSuccess;
}

ncclResult_t checkCredit(ncclEpGroup_t g, int kind, const char* op) {
  if (g->staged[kind] < kMaxStaged) return ncclSuccess;
  return fail(g, ncclInvalidUsage,
              std::string(op) + ": two earlier send_only " + op + " calls of this group wait for "
                  "ncclEpComplete, and another would wait for the buffer credit they hold: complete "
                  "one first");
}

// Rows of a dispatch output: [L, R*B] expert-major or [R, B] rank-major.
void outputRows(ncclEpHandle_t h, long* d0, long* d1) {
  ncclEpGroup_t g = h->group;
  const long R = g->num_ranks, B = g->config.max_dispatch_tokens_per_rank;
  *d0 = h->rank_major ? R : static_cast<long>(g->config.num_experts) / R;
  *d1 = h->rank_major ? B : R * B;
}

ncclResult_t checkDispatch(ncclEpHandle_t h, const ncclEpDispatchInputs_t* in,
                           const ncclEpDispatchOutputs_t* out, const ncclEpDispatchConfig_t* cfg,
                           LlDispatchArgs* a) {
  ncclEpGroup_t g = h->group;
  const long T = h->num_tokens, K = h->top_k;
  long hidden = 0, d0 = 0, d1 = 0;
  outputRows(h, &d0, &d1);
  EP_CHECK(checkArg(g, checkStruct(in, "inputs")));
  EP_CHECK(checkArg(g, checkStruct(out, "outputs")));
  EP_CHECK(checkArg(g, checkTensor(in->tokens, "inputs->tokens", 2, {ncclBfloat16}, {T, -1})));
  EP_CHECK(checkHidden(g, in->tokens, "inputs->tokens", &hidden));
  EP_CHECK(checkArg(g, checkTensor(in->topk_weights, "inputs->topk_weights", 2, {ncclFloat32},
                                   {T, K}, true)));
  if (in->scales != nullptr)
    return fail(g, ncclInvalidArgument,
                "inputs->scales must be NULL: dispatch takes BF16 tokens and quantises itself "
                "(give outputs->tokens as ncclFloat8e4m3 with outputs->scales)");
  EP_CHECK(checkArg(g, checkTensor(out->tokens, "outputs->tokens", 3,
                                   {ncclBfloat16, ncclFloat8e4m3}, {d0, d1, hidden})));
  const bool fp8 = out->tokens->datatype == ncclFloat8e4m3;
  if (fp8) {
    EP_CHECK(checkArg(g, checkTensor(out->scales, "outputs->scales", 3, {ncclFloat32},
                                     {d0, d1, hidden / kLlScaleBlock})));
  } else if (out->scales != nullptr) {
    return fail(g, ncclInvalidArgument,
                "outputs->scales is only written for FP8 output (outputs->tokens ncclFloat8e4m3)");
  }
  if (h->rank_major) {
    EP_CHECK(checkArg(g, checkTensor(out->topk_idx, "outputs->topk_idx", 3, {ncclInt64},
                                     {d0, d1, K}, true)));
    EP_CHECK(checkArg(g, checkTensor(out->topk_weights, "outputs->topk_weights", 3,
                                     {ncclFloat32}, {d0, d1, K}, true)));
    if (out->topk_weights != nullptr && in->topk_weights == nullptr)
      return fail(g, ncclInvalidArgument,
                  "outputs->topk_weights needs inputs->topk_weights (the weights it carries)");
  } else if (out->topk_idx != nullptr || out->topk_weights != nullptr) {
    return fail(g, ncclInvalidArgument,
                "outputs->topk_idx and outputs->topk_weights are rank-major outputs; in the "
                "expert-major layout pass NULL (combine applies the weights)");
  }
  EP_CHECK(checkOpConfig(g, cfg));
  a->hidden = static_cast<int32_t>(hidden);
  a->fp8 = fp8;
  a->round_scales = cfg != nullptr && cfg->round_scales;
  a->x = static_cast<const uint16_t*>(in->tokens->data);
  a->topk_weights = in->topk_weights ? static_cast<const float*>(in->topk_weights->data) : nullptr;
  a->out_tokens = out->tokens->data;
  a->out_scales = fp8 ? static_cast<float*>(out->scales->data) : nullptr;
  a->out_topk_idx = out->topk_idx ? static_cast<int64_t*>(out->topk_idx->data) : nullptr;
  a->out_topk_weights = out->topk_weights ? static_cast<float*>(out->topk_weights->data) : nullptr;
  return ncclSuccess;
}

ncclResult_t checkCombine(ncclEpHandle_t h, const ncclEpCombineInputs_t* in,
                          const ncclEpCombineOutputs_t* out, const ncclEpCombineConfig_t* cfg,
                          LlCombineArgs* a) {
  ncclEpGroup_t g = h->group;
  const long T = h->num_tokens, K = h->top_k;
  long hidden = 0, d0 = 0, d1 = 0;
  outputRows(h, &d0, &d1);
  if (!h->dispatched)
    return fail(g, ncclInvalidUsage,
                "ncclEpCombine needs a finished ncclEpDispatch on this handle with this routing");
  EP_CHECK(checkArg(g, checkStruct(in, "inputs")));
  EP_CHECK(checkArg(g, checkStruct(out, "outputs")));
  EP_CHECK(checkArg(g, checkTensor(in->tokens, "inputs->tokens", 3, {ncclBfloat16}, {d0, d1, -1})));
  EP_CHECK(checkHidden(g, in->tokens, "inputs->tokens", &hidden));
  if (h->rank_major) {
    if (in->topk_weights != nullptr)
      return fail(g, ncclInvalidArgument,
                  "inputs->topk_weights must be NULL in the rank-major layout: the caller has "
                  "already reduced over its local experts");
  } else {
    EP_CHECK(checkArg(g, checkTensor(in->topk_weights, "inputs->topk_weights", 2, {ncclFloat32},
                                     {T, K})));
  }
  EP_CHECK(checkArg(g, checkTensor(out->tokens, "outputs->tokens", 2, {ncclBfloat16}, {T, hidden})));
  if (out->topk_weights != nullptr)
    return fail(g, ncclInvalidArgument,
                "outputs->topk_weights is a high-throughput backward-pass output: pass NULL");
  EP_CHECK(checkOpConfig(g, cfg));
  a->hidden = static_cast<int32_t>(hidden);
  a->x = static_cast<const uint16_t*>(in->tokens->data);
  a->topk_weights = in->topk_weights ? static_cast<const float*>(in->topk_weights->data) : nullptr;
  a->out = static_cast<uint16_t*>(out->tokens->data);
  return ncclSuccess;
}

}  // namespace

ncclResult_t dispatch(ncclEpHandle_t h, const ncclEpDispatchInputs_t* inputs,
                      const ncclEpDispatchOutputs_t* outputs, const ncclEpLayoutInfo_t* layout_info,
                      const ncclEpDispatchConfig_t* config, cudaStream_t stream) {
  EP_CHECK(checkOpHandle(h, "ncclEpDispatch"));
  ncclEpGroup_t g = h->group;
  EP_CHECK(checkCredit(g, kStagedDispatch, "ncclEpDispatch"));
  LlDispatchArgs a{};
  a.c = h->common();
  EP_CHECK(checkDispatch(h, inputs, outputs, config, &a));
  if (layout_info != nullptr) {
    EP_CHECK(layoutInfoCounters(g, layout_info, &a.counters));
  } else {
    a.counters = h->update_counters;
  }
  const bool send_only = config != nullptr && config->send_only;
  a.phases = send_only ? kPhaseSend : kPhaseBoth;
  EP_CUDA(g, launchLlDispatch(a, g->grid, stream));
  if (send_only) {
    h->pending = ncclEpHandle::Pending::kDispatch;
    h->pending_dispatch = a;
    ++g->staged[kStagedDispatch];
  }
  h->dispatched = !send_only;
  return ncclSuccess;
}

ncclResult_t combine(ncclEpHandle_t h, const ncclEpCombineInputs_t* inputs,
                     const ncclEpCombineOutputs_t* outputs, const ncclEpCombineConfig_t* config,
                     cudaStream_t stream) {
  EP_CHECK(checkOpHandle(h, "ncclEpCombine"));
  ncclEpGroup_t g = h->group;
  EP_CHECK(checkCredit(g, kStagedCombine, "ncclEpCombine"));
  LlCombineArgs a{};
  a.c = h->common();
  EP_CHECK(checkCombine(h, inputs, outputs, config, &a));
  const bool send_only = config != nullptr && config->send_only;
  a.phases = send_only ? kPhaseSend : kPhaseBoth;
  EP_CUDA(g, launchLlCombine(a, g->grid, stream));
  if (send_only) {
    h->pending = ncclEpHandle::Pending::kCombine;
    h->pending_combine = a;
    ++g->staged[kStagedCombine];
  }
  return ncclSuccess;
}

ncclResult_t complete(ncclEpHandle_t h, const ncclEpCompleteConfig_t* config, cudaStream_t stream) {
  if (h == nullptr) return fail(nullptr, ncclInvalidArgument, "handle is NULL");
  ncclEpGroup_t g = h->group;
  EP_CHECK(checkHealthy(g));
  if (config != nullptr) EP_CHECK(checkArg(g, checkStruct(config, "config")));
  switch (h->pending) {
    case ncclEpHandle::Pending::kDispatch: {
      LlDispatchArgs a = h->pending_dispatch;
      a.phases = kPhaseRecv;
      EP_CUDA(g, launchLlDispatch(a, g->grid, stream));
      h->dispatched = true;
      --g->staged[kStagedDispatch];
      break;
    }
    case ncclEpHandle::Pending::kCombine: {
      LlCombineArgs a = h->pending_combine;
      a.phases = kPhaseRecv;
      EP_CUDA(g, launchLlCombine(a, g->grid, stream));
      --g->staged[kStagedCombine];
      break;
    }
    default:
      return fail(g, ncclInvalidUsage,
                  "ncclEpComplete: this handle has no send_only dispatch or combine to finish");
  }
  h->pending = ncclEpHandle::Pending::kNone;
  return ncclSuccess;
}

}  // namespace epyard::ep
