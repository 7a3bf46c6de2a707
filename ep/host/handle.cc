// Handles: ncclEpHandleMemSize / InitHandle / UpdateHandle / HandleDestroy. A handle's routing
// memory is its own (library- or caller-allocated), so handles never share state; the group's
// buffer is shared, and its sequence numbers keep consecutive ops of any handles apart.
#include <cstring>

#include "device/ll_launch.h"
#include "host/api_check.h"
#include "host/api_impl.h"
#include "host/errors.h"
#include "host/group.h"

namespace epyard::ep {
namespace {

ncclResult_t checkLayoutArgs(ncclEpGroup_t g, ncclEpLayout_t layout,
                             const ncclEpHandleConfig_t* config, int num_topk) {
  if (g == nullptr) return fail(nullptr, ncclInvalidArgument, "group is NULL");
  if (config != nullptr) EP_CHECK(checkArg(g, checkStruct(config, "config")));
  const int value = enumValue(layout);
  if (value != NCCL_EP_LAYOUT_EXPERT_MAJOR && value != NCCL_EP_LAYOUT_RANK_MAJOR)
    return fail(g, ncclInvalidArgument,
                "layout (" + std::to_string(value) +
                    ") must be NCCL_EP_LAYOUT_EXPERT_MAJOR or NCCL_EP_LAYOUT_RANK_MAJOR in "
                    "low-latency mode");
  if (num_topk < 1 || num_topk > static_cast<int>(kMaxTopK))
    return fail(g, ncclInvalidArgument,
                "num_topk (" + std::to_string(num_topk) + ") must be in [1, " +
                    std::to_string(kMaxTopK) + "] in low-latency mode");
  if (static_cast<unsigned>(num_topk) > g->config.num_experts)
    return fail(g, ncclInvalidArgument,
                "num_topk (" + std::to_string(num_topk) + ") exceeds num_experts (" +
                    std::to_string(g->config.num_experts) + ")");
  return ncclSuccess;
}

LlHandleLayout layoutFor(ncclEpGroup_t g, ncclEpLayout_t layout, int num_topk) {
  return llHandleLayout(g->num_ranks, static_cast<int>(g->config.num_experts),
                        static_cast<int>(g->config.max_dispatch_tokens_per_rank), num_topk,
                        layout == NCCL_EP_LAYOUT_RANK_MAJOR);
}

template <typename T>
T* at(void* base, uint64_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

// An optional int32 layout-info tensor of `n` entries.
ncclResult_t counterTensor(ncclEpGroup_t g, const ncclEpTensor_t* t, const char* name, long n,
                           int32_t** out) {
  EP_CHECK(checkArg(g, checkTensor(t, name, 1, {ncclInt32}, {n}, true)));
  *out = t != nullptr ? static_cast<int32_t*>(t->data) : nullptr;
  return ncclSuccess;
}

}  // namespace

ncclResult_t layoutInfoCounters(ncclEpGroup_t g, const ncclEpLayoutInfo_t* info, LlCounters* out) {
  *out = LlCounters{};
  if (info == nullptr) return ncclSuccess;
  EP_CHECK(checkArg(g, checkStruct(info, "layout_info")));
  const long L = static_cast<long>(g->config.num_experts) / g->num_ranks;
  EP_CHECK(counterTensor(g, info->expert_counters, "layout_info.expert_counters", L,
                         &out->expert_counters));
  EP_CHECK(counterTensor(g, info->src_rank_counters, "layout_info.src_rank_counters",
                         g->num_ranks, &out->src_rank_counters));
  EP_CHECK(counterTensor(g, info->expert_offsets, "layout_info.expert_offsets", L,
                         &out->expert_offsets));
  EP_CHECK(counterTensor(g, info->recv_total_counter, "layout_info.recv_total_counter", 1,
                         &out->recv_total));
  return ncclSuccess;
}

ncclResult_t handleMemSize(ncclEpGroup_t g, ncclEpLayout_t layout,
                           const ncclEpHandleConfig_t* config, size_t* size_out, int num_topk) {
  EP_CHECK(checkLayoutArgs(g, layout, config, num_topk));
  if (size_out == nullptr) return fail(g, ncclInvalidArgument, "size_out is NULL");
  *size_out = layoutFor(g, layout, num_topk).total;
  return ncclSuccess;
}

ncclResult_t handleInit(ncclEpHandle_t* out, ncclEpGroup_t g, ncclEpLayout_t layout,
                        const ncclEpHandleConfig_t* config, int num_topk,
                        const ncclEpTensor_t* handle_mem) {
  if (out == nullptr) return fail(g, ncclInvalidArgument, "handle (the output pointer) is NULL");
  *out = nullptr;
  EP_CHECK(checkLayoutArgs(g, layout, config, num_topk));
  const LlHandleLayout hl = layoutFor(g, layout, num_topk);
  void* mem = nullptr;
  bool owns = false;
  if (handle_mem != nullptr) {
    EP_CHECK(checkArg(g, checkTensor(handle_mem, "handle_mem", 1, {ncclUint8, ncclInt8}, {-1})));
    if (handle_mem->sizes[0] < hl.total)
      return fail(g, ncclInvalidArgument,
                  "handle_mem holds " + std::to_string(handle_mem->sizes[0]) +
                      " bytes; ncclEpHandleMemSize asks for " + std::to_string(hl.total));
    if (reinterpret_cast<uintptr_t>(handle_mem->data) % 256 != 0)
      return fail(g, ncclInvalidArgument, "handle_mem.data must be 256-byte aligned");
    mem = handle_mem->data;
  } else {
    if (g->alloc.allocate(&mem, hl.total) != ncclSuccess || mem == nullptr)
      return fail(g, ncclSystemError,
                  "allocating " + std::to_string(hl.total) + " bytes of handle memory failed");
    owns = true;
  }
  auto* h = new ncclEpHandle();
  h->group = g;
  h->rank_major = layout == NCCL_EP_LAYOUT_RANK_MAJOR;
  h->top_k = num_topk;
  h->mem = mem;
  h->owns_mem = owns;
  h->dev.topk = at<int32_t>(mem, hl.topk);
  h->dev.send_pos = at<int32_t>(mem, hl.send_pos);
  h->dev.dst_rank = at<int32_t>(mem, hl.dst_rank);
  h->dev.dst_slot = at<int32_t>(mem, hl.dst_slot);
  h->dev.expert_send_cnt = at<int32_t>(mem, hl.expert_send_cnt);
  h->dev.rank_send_cnt = at<int32_t>(mem, hl.rank_send_cnt);
  h->dev.recv_src_cnt = at<int32_t>(mem, hl.recv_src_cnt);
  h->dev.recv_token = at<int32_t>(mem, hl.recv_token);
  h->dev.recv_rows = at<int32_t>(mem, hl.recv_rows);
  h->dev.seqs = at<uint64_t>(mem, hl.seqs);
  cudaError_t e = cudaMemsetAsync(mem, 0, hl.total, g->setup_stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(g->setup_stream);
  if (e != cudaSuccess) {
    if (owns) g->alloc.release(mem);
    delete h;
    return failCuda(g, "clearing handle memory", e);
  }
  std::lock_guard<std::mutex> lock(g->mu);
  ++g->live_handles;
  *out = h;
  return ncclSuccess;
}

ncclResult_t handleUpdate(ncclEpHandle_t h, const ncclEpTensor_t* topk_idx,
                          const ncclEpLayoutInfo_t* layout_info, cudaStream_t stream) {
  if (h == nullptr) return fail(nullptr, ncclInvalidArgument, "handle is NULL");
  ncclEpGroup_t g = h->group;
  EP_CHECK(checkHealthy(g));
  if (h->pending != ncclEpHandle::Pending::kNone)
    return fail(g, ncclInvalidUsage,
                "this handle has a send_only op in flight: ncclEpComplete it before new routing");
  const long B = g->config.max_dispatch_tokens_per_rank;
  EP_CHECK(checkArg(g, checkTensor(topk_idx, "topk_idx", 2, {ncclInt64}, {-1, h->top_k})));
  if (topk_idx->sizes[0] > static_cast<size_t>(B))
    return fail(g, ncclInvalidArgument,
                "topk_idx has " + std::to_string(topk_idx->sizes[0]) +
                    " tokens; max_dispatch_tokens_per_rank is " + std::to_string(B));
  LlCounters counters;
  EP_CHECK(layoutInfoCounters(g, layout_info, &counters));
  h->num_tokens = static_cast<int>(topk_idx->sizes[0]);
  h->update_counters = counters;
  h->dispatched = false;
  LlLayoutArgs a{};
  a.c = h->common();
  a.topk_idx = static_cast<const int64_t*>(topk_idx->data);
  EP_CUDA(g, launchLlLayout(a, stream));
  return ncclSuccess;
}

ncclResult_t handleDestroy(ncclEpHandle_t h) {
  if (h == nullptr) return fail(nullptr, ncclInvalidArgument, "handle is NULL");
  ncclEpGroup_t g = h->group;
  if (h->owns_mem) {
    // Kernels of this handle may still run on the caller's streams, on the group's device
    // (which need not be the current one).
    syncGroupDevice(g);
    g->alloc.release(h->mem);
  }
  if (h->pending == ncclEpHandle::Pending::kDispatch) --g->staged[kStagedDispatch];  // abandoned
  if (h->pending == ncclEpHandle::Pending::kCombine) --g->staged[kStagedCombine];
  {
    std::lock_guard<std::mutex> lock(g->mu);
    --g->live_handles;
  }
  delete h;
  return ncclSuccess;
}

}  // namespace epyard::ep

epyard::ep::LlCommon ncclEpHandle::common() const {
  epyard::ep::LlCommon c = group->common();
  c.h = dev;
  c.top_k = top_k;
  c.num_tokens = num_tokens;
  c.rank_major = rank_major ? 1 : 0;
  return c;
}
