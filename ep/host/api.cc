// The extern "C" entry points of libepyard.so. Each forwards to its implementation inside one
// guard that turns any C++ exception into an error code and a message: nothing throws, asserts
// or exits across the C boundary.
#include <exception>
#include <new>

#include "host/api_check.h"
#include "host/api_impl.h"
#include "host/errors.h"
#include "host/group.h"

#define EPYARD_API extern "C" __attribute__((visibility("default")))

namespace {

template <typename F>
ncclResult_t guarded(ncclEpGroup* group, const char* call, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return epyard::ep::fail(group, ncclSystemError, std::string(call) + ": out of host memory");
  } catch (const std::exception& e) {
    return epyard::ep::fail(group, ncclInternalError, std::string(call) + ": " + e.what());
  } catch (...) {
    return epyard::ep::fail(group, ncclInternalError, std::string(call) + ": unknown exception");
  }
}

ncclEpGroup* groupOf(ncclEpHandle_t h) { return h != nullptr ? h->group : nullptr; }

}  // namespace

using namespace epyard::ep;

EPYARD_API ncclResult_t ncclEpGetVersion(int* version) {
  if (version == nullptr) return fail(nullptr, ncclInvalidArgument, "version is NULL");
  *version = NCCL_EP_VERSION_CODE;
  return ncclSuccess;
}

EPYARD_API ncclResult_t ncclEpTensorAlloc(ncclEpTensor_t** tensor, unsigned int ndim,
                                          ncclDataType_t datatype, const size_t* sizes,
                                          const ncclEpTensorAllocConfig_t* config) {
  const int type_value = enumValue(datatype);
  return guarded(nullptr, "ncclEpTensorAlloc",
                 [&] { return tensorAlloc(tensor, ndim, type_value, sizes, config); });
}

EPYARD_API ncclResult_t ncclEpTensorDestroy(ncclEpTensor_t* tensor) {
  return guarded(nullptr, "ncclEpTensorDestroy", [&] { return tensorDestroy(tensor); });
}

EPYARD_API ncclResult_t ncclEpCreateGroup(ncclEpGroup_t* group, ncclComm_t comm,
                                          const ncclEpGroupConfig_t* config) {
  return guarded(nullptr, "ncclEpCreateGroup", [&] { return groupCreate(group, comm, config); });
}

EPYARD_API ncclResult_t epyardEpCreateVirtualGroup(ncclEpGroup_t* group, epyardEpVirtualWorld_t world,
                                                   int rank, const ncclEpGroupConfig_t* config) {
  return guarded(nullptr, "epyardEpCreateVirtualGroup",
                 [&] { return virtualGroupCreate(group, world, rank, config); });
}

EPYARD_API ncclResult_t ncclEpGroupDestroy(ncclEpGroup_t group) {
  return guarded(nullptr, "ncclEpGroupDestroy", [&] { return groupDestroy(group); });
}

EPYARD_API ncclResult_t ncclEpHandleMemSize(ncclEpGroup_t group, ncclEpLayout_t layout,
                                            const ncclEpHandleConfig_t* config, size_t* size_out,
                                            int num_topk) {
  return guarded(group, "ncclEpHandleMemSize",
                 [&] { return handleMemSize(group, layout, config, size_out, num_topk); });
}

EPYARD_API ncclResult_t ncclEpInitHandle(ncclEpHandle_t* handle, ncclEpGroup_t group,
                                         ncclEpLayout_t layout, const ncclEpHandleConfig_t* config,
                                         int num_topk, const ncclEpTensor_t* handle_mem) {
  return guarded(group, "ncclEpInitHandle",
                 [&] { return handleInit(handle, group, layout, config, num_topk, handle_mem); });
}

EPYARD_API ncclResult_t ncclEpUpdateHandle(ncclEpHandle_t handle, const ncclEpTensor_t* topk_idx,
                                           const ncclEpLayoutInfo_t* layout_info,
                                           cudaStream_t stream) {
  return guarded(groupOf(handle), "ncclEpUpdateHandle",
                 [&] { return handleUpdate(handle, topk_idx, layout_info, stream); });
}

EPYARD_API ncclResult_t ncclEpCreateHandle(ncclEpHandle_t* handle, ncclEpGroup_t group,
                                           ncclEpLayout_t layout, const ncclEpTensor_t* topk_idx,
                                           const ncclEpLayoutInfo_t* layout_info,
                                           const ncclEpHandleConfig_t* config,
                                           cudaStream_t stream) {
  return guarded(group, "ncclEpCreateHandle", [&]() -> ncclResult_t {
    // The same check ncclEpUpdateHandle makes, before top_k is read from the tensor.
    EP_CHECK(checkArg(group, checkTensor(topk_idx, "topk_idx", 2, {ncclInt64}, {-1, -1})));
    const int top_k = static_cast<int>(topk_idx->sizes[1]);
    EP_CHECK(handleInit(handle, group, layout, config, top_k, nullptr));
    ncclResult_t r = handleUpdate(*handle, topk_idx, layout_info, stream);
    if (r != ncclSuccess) {
      handleDestroy(*handle);
      *handle = nullptr;
    }
    return r;
  });
}

EPYARD_API ncclResult_t ncclEpHandleDestroy(ncclEpHandle_t handle) {
  return guarded(groupOf(handle), "ncclEpHandleDestroy", [&] { return handleDestroy(handle); });
}

EPYARD_API ncclResult_t ncclEpDispatch(ncclEpHandle_t handle, const ncclEpDispatchInputs_t* inputs,
                                       const ncclEpDispatchOutputs_t* outputs,
                                       const ncclEpLayoutInfo_t* layout_info,
                                       const ncclEpDispatchConfig_t* config, cudaStream_t stream) {
  return guarded(groupOf(handle), "ncclEpDispatch", [&] {
    return dispatch(handle, inputs, outputs, layout_info, config, stream);
  });
}

EPYARD_API ncclResult_t ncclEpCombine(ncclEpHandle_t handle, const ncclEpCombineInputs_t* inputs,
                                      const ncclEpCombineOutputs_t* outputs,
                                      const ncclEpCombineConfig_t* config, cudaStream_t stream) {
  return guarded(groupOf(handle), "ncclEpCombine",
                 [&] { return combine(handle, inputs, outputs, config, stream); });
}

EPYARD_API ncclResult_t ncclEpComplete(ncclEpHandle_t handle, const ncclEpCompleteConfig_t* config,
                                       cudaStream_t stream) {
  return guarded(groupOf(handle), "ncclEpComplete", [&] { return complete(handle, config, stream); });
}

EPYARD_API ncclResult_t ncclEpMaskQuery(ncclEpGroup_t group, int* mask_status, cudaStream_t stream) {
  return guarded(group, "ncclEpMaskQuery", [&] { return maskQuery(group, mask_status, stream); });
}

EPYARD_API ncclResult_t ncclEpMaskUpdate(ncclEpGroup_t group, const int* mask, cudaStream_t stream) {
  return guarded(group, "ncclEpMaskUpdate", [&] { return maskUpdate(group, mask, stream); });
}

EPYARD_API ncclResult_t ncclEpMaskClean(ncclEpGroup_t group, cudaStream_t stream) {
  return guarded(group, "ncclEpMaskClean", [&] { return maskClean(group, stream); });
}

EPYARD_API ncclResult_t ncclEpGetAsyncError(ncclEpGroup_t group, int* error_out) {
  return guarded(group, "ncclEpGetAsyncError", [&] { return asyncError(group, error_out); });
}

EPYARD_API ncclResult_t ncclEpErrorClear(ncclEpGroup_t group) {
  return guarded(group, "ncclEpErrorClear", [&] { return errorClear(group); });
}

EPYARD_API const char* ncclEpGetLastError(ncclEpGroup_t group) { return lastError(group); }
