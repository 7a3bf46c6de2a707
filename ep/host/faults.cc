// Asynchronous errors (what a kernel left in the host-mapped fault word) and the rank masks.
#include <cstring>

#include "device/ll_launch.h"
#include "host/api_impl.h"
#include "host/errors.h"
#include "host/group.h"

namespace epyard::ep {
namespace {

const char* waitName(int what) {
  switch (what) {
    case kWaitDispatchCredit:
      return "dispatch: waiting for a receiver to free its buffer half (credit)";
    case kWaitDispatchCounts:
      return "dispatch: waiting for a sender's per-expert counts";
    case kWaitDispatchData:
      return "dispatch: waiting for a sender's tokens";
    case kWaitCombineCredit:
      return "combine: waiting for a receiver to free its buffer half (credit)";
    case kWaitCombineWeights:
      return "combine: waiting for a token owner's top-k weights";
    case kWaitCombineData:
      return "combine: waiting for an expert rank's rows";
    case kWaitBarrier:
      return "group barrier";
    default:
      return "an unknown wait";
  }
}

}  // namespace

void describeAsyncError(ncclEpGroup_t g, int* code_out) {
  LlAsyncError e;
  std::memcpy(&e, const_cast<const LlAsyncError*>(g->error_host), sizeof(e));
  if (e.fault == kFaultTimeout) {
    *code_out = ncclRemoteError;
    fail(g, ncclRemoteError,
         "rank " + std::to_string(e.rank) + " timed out after " +
             std::to_string(e.waited_ns / 1000000) + " ms in " + waitName(e.what) + " from rank " +
             std::to_string(e.peer) + " (sequence " + std::to_string(e.seq) +
             ", last sequence seen " + std::to_string(e.observed) +
             "); raise timeout_ns / EPYARD_EP_TIMEOUT_MS if that rank is merely slow");
  } else if (e.fault == kFaultBadExpert) {
    *code_out = ncclInvalidArgument;
    fail(g, ncclInvalidArgument,
         "topk_idx[" + std::to_string(e.peer) + "][" + std::to_string(e.what) + "] is " +
             std::to_string(e.observed) + ", outside [-1, num_experts = " +
             std::to_string(g->config.num_experts) + "); that entry was treated as -1");
  } else {
    *code_out = ncclSuccess;
  }
}

ncclResult_t asyncError(ncclEpGroup_t g, int* error_out) {
  if (g == nullptr) return fail(nullptr, ncclInvalidArgument, "group is NULL");
  if (error_out == nullptr) return fail(g, ncclInvalidArgument, "error_out is NULL");
  describeAsyncError(g, error_out);
  return ncclSuccess;
}

ncclResult_t errorClear(ncclEpGroup_t g) {
  if (g == nullptr) return fail(nullptr, ncclInvalidArgument, "group is NULL");
  EP_CUDA(g, cudaMemsetAsync(&g->state->abort, 0, sizeof(int32_t), g->setup_stream));
  EP_CUDA(g, cudaStreamSynchronize(g->setup_stream));
  std::memset(g->error_host, 0, sizeof(LlAsyncError));
  return ncclSuccess;
}

namespace {
ncclResult_t needMasks(ncclEpGroup_t g, const char* call) {
  if (g == nullptr) return fail(nullptr, ncclInvalidArgument, "group is NULL");
  if (!g->config.enable_mask)
    return fail(g, ncclInvalidUsage,
                std::string(call) + " needs a group created with config.enable_mask = 1");
  return ncclSuccess;
}
}  // namespace

ncclResult_t maskQuery(ncclEpGroup_t g, int* mask_status, cudaStream_t stream) {
  EP_CHECK(needMasks(g, "ncclEpMaskQuery"));
  if (mask_status == nullptr) return fail(g, ncclInvalidArgument, "mask_status is NULL");
  EP_CUDA(g, cudaMemcpyAsync(mask_status, g->state->mask, sizeof(int) * g->num_ranks,
                             cudaMemcpyDefault, stream));
  return ncclSuccess;
}

ncclResult_t maskUpdate(ncclEpGroup_t g, const int* mask, cudaStream_t stream) {
  EP_CHECK(needMasks(g, "ncclEpMaskUpdate"));
  if (mask == nullptr) return fail(g, ncclInvalidArgument, "mask is NULL");
  EP_CUDA(g, cudaMemcpyAsync(g->state->mask, mask, sizeof(int) * g->num_ranks, cudaMemcpyDefault,
                             stream));
  return ncclSuccess;
}

ncclResult_t maskClean(ncclEpGroup_t g, cudaStream_t stream) {
  EP_CHECK(needMasks(g, "ncclEpMaskClean"));
  LlControlArgs a{};
  a.c = g->common();
  a.zero_buffer = 1;
  EP_CUDA(g, launchLlBarrier(a, stream));
  return ncclSuccess;
}

}  // namespace epyard::ep
