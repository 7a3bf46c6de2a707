// The implementations behind the extern "C" entry points in api.cc (which only catches
// exceptions and forwards). Each returns ncclResult_t and leaves a message on failure.
#pragma once

#include "host/virtual_ranks.h"
#include "nccl_ep.h"

namespace epyard::ep {

ncclResult_t groupCreate(ncclEpGroup_t* out, ncclComm_t comm, const ncclEpGroupConfig_t* config);
ncclResult_t virtualGroupCreate(ncclEpGroup_t* out, epyardEpVirtualWorld* world, int rank,
                                const ncclEpGroupConfig_t* config);
ncclResult_t groupDestroy(ncclEpGroup_t g);
ncclResult_t checkHealthy(ncclEpGroup_t g);
// Waits for everything queued on the group's device (whatever device is current), before a
// destroy frees what the group's kernels may still use.
void syncGroupDevice(ncclEpGroup_t g);
// Turns the group's fault word into a message (stored as the group's last error) and a code.
void describeAsyncError(ncclEpGroup_t g, int* code_out);
ncclResult_t asyncError(ncclEpGroup_t g, int* error_out);
ncclResult_t errorClear(ncclEpGroup_t g);
ncclResult_t maskQuery(ncclEpGroup_t g, int* mask_status, cudaStream_t stream);
ncclResult_t maskUpdate(ncclEpGroup_t g, const int* mask, cudaStream_t stream);
ncclResult_t maskClean(ncclEpGroup_t g, cudaStream_t stream);

ncclResult_t handleMemSize(ncclEpGroup_t g, ncclEpLayout_t layout,
                           const ncclEpHandleConfig_t* config, size_t* size_out, int num_topk);
ncclResult_t handleInit(ncclEpHandle_t* out, ncclEpGroup_t g, ncclEpLayout_t layout,
                        const ncclEpHandleConfig_t* config, int num_topk,
                        const ncclEpTensor_t* handle_mem);
ncclResult_t handleUpdate(ncclEpHandle_t h, const ncclEpTensor_t* topk_idx,
                          const ncclEpLayoutInfo_t* layout_info, cudaStream_t stream);
ncclResult_t handleDestroy(ncclEpHandle_t h);

ncclResult_t dispatch(ncclEpHandle_t h, const ncclEpDispatchInputs_t* inputs,
                      const ncclEpDispatchOutputs_t* outputs, const ncclEpLayoutInfo_t* layout_info,
                      const ncclEpDispatchConfig_t* config, cudaStream_t stream);
ncclResult_t combine(ncclEpHandle_t h, const ncclEpCombineInputs_t* inputs,
                     const ncclEpCombineOutputs_t* outputs, const ncclEpCombineConfig_t* config,
                     cudaStream_t stream);
ncclResult_t complete(ncclEpHandle_t h, const ncclEpCompleteConfig_t* config, cudaStream_t stream);

ncclResult_t tensorAlloc(ncclEpTensor_t** tensor, unsigned ndim, int datatype_value,
                         const size_t* sizes, const ncclEpTensorAllocConfig_t* config);
ncclResult_t tensorDestroy(ncclEpTensor_t* tensor);

}  // namespace epyard::ep
