/*
 * nccl_ep.h — Mixture-of-Experts dispatch and combine on an NCCL communicator.
 *
 * Source-compatible with the NCCL EP v0.1 API (the names, fields, enum values and macros below
 * are fixed by it); implemented by epyard's libepyard.so on the NCCL that PyTorch ships
 * (2.28.7 or newer). Layouts and everything behind the functions are epyard's own.
 *
 * Conventions
 *  - Every function returns ncclResult_t. Bad arguments give ncclInvalidArgument and a message
 *    naming the argument and the rule, readable with ncclEpGetLastError().
 *  - Every public struct starts with `unsigned int size; unsigned int magic;`. Initialise with
 *    the matching NCCL_EP_*_INIT macro; a struct whose size or magic is wrong is rejected.
 *  - All device work is ordered on the stream passed in. The caller owns tensor memory.
 */
#ifndef NCCL_EP_H_
#define NCCL_EP_H_

#include <cuda_runtime.h>
#include <nccl.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NCCL_EP_MAJOR 0
#define NCCL_EP_MINOR 1
#define NCCL_EP_PATCH 0
#define NCCL_EP_VERSION_CODE (NCCL_EP_MAJOR * 10000 + NCCL_EP_MINOR * 100 + NCCL_EP_PATCH)
#define NCCL_EP_API_VERSION 1

#define NCCL_EP_MAGIC 0xC00FFFEEu
#define NCCL_EP_TENSOR_MAGIC 0xCAFECAFEu
/* "Let the library choose" for any sizing field. */
#define NCCL_EP_AUTO 0

typedef enum {
  NCCL_EP_ALGO_LOW_LATENCY = 0,     /* decode: direct sends per token, ~100s of tokens */
  NCCL_EP_ALGO_HIGH_THROUGHPUT = 1  /* prefill / training: channelised, 1000s of tokens */
} ncclEpAlgorithm_t;

typedef enum {
  NCCL_EP_LAYOUT_UNSET = 0,
  NCCL_EP_LAYOUT_EXPERT_MAJOR = 1, /* rows grouped by local expert */
  NCCL_EP_LAYOUT_RANK_MAJOR = 2,   /* LL only: rows grouped by source rank */
  NCCL_EP_LAYOUT_FLAT = 3          /* HT only: one row per received token */
} ncclEpLayout_t;

typedef enum { NCCL_EP_FWD_PASS = 0, NCCL_EP_BWD_PASS = 1 } ncclEpPassDir_t;

typedef struct ncclEpGroup* ncclEpGroup_t;
typedef struct ncclEpHandle* ncclEpHandle_t;

/* A device tensor: `ndim` sizes (caller-owned array), row-major, `data` on the device. With
 * `win_hdl` set (memory registered with ncclCommWindowRegister) the library may use the caller's
 * window directly instead of copying. */
typedef struct {
  unsigned int size;
  unsigned int magic;
  int ndim;
  ncclDataType_t datatype;
  void* data;
  ncclWindow_t win_hdl;
  uint64_t win_offset;
  size_t* sizes;
} ncclEpTensor_t;
#define NCCL_EP_TENSOR_INIT \
  ((ncclEpTensor_t){sizeof(ncclEpTensor_t), NCCL_EP_TENSOR_MAGIC, 0, ncclInt8, NULL, NULL, 0, NULL})

/* Optional allocator for every byte of device memory the library allocates. */
typedef struct {
  ncclResult_t (*alloc_fn)(void** ptr, size_t bytes, void* context);
  ncclResult_t (*free_fn)(void* ptr, void* context);
  void* context;
} ncclEpAllocator_t;

typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpAllocator_t alloc; /* NULL functions: cudaMalloc / cudaFree */
} ncclEpTensorAllocConfig_t;
#define NCCL_EP_TENSOR_ALLOC_CONFIG_INIT \
  ((ncclEpTensorAllocConfig_t){sizeof(ncclEpTensorAllocConfig_t), NCCL_EP_MAGIC, {NULL, NULL, NULL}})

typedef struct {
  unsigned int size;
  unsigned int magic;
  unsigned int version; /* NCCL_EP_API_VERSION */
  ncclEpAlgorithm_t algorithm;
  unsigned int num_experts;                  /* a multiple of the number of ranks */
  unsigned int max_dispatch_tokens_per_rank; /* tokens one rank sends in one dispatch */
  unsigned int max_recv_tokens_per_rank;     /* HT receive capacity; LL AUTO = ranks x dispatch */
  unsigned int max_token_bytes;              /* hidden x element size, upper bound */
  unsigned long rdma_buffer_size;            /* AUTO: sized from the fields above */
  unsigned int num_qp_per_rank;              /* AUTO */
  unsigned int num_channels;                 /* HT parallelism; AUTO picks a measured default */
  unsigned int max_num_sms;                  /* cap on SMs any EP kernel uses; AUTO = no cap */
  ncclEpAllocator_t alloc;
  unsigned int enable_mask;                  /* non-zero: ncclEpMask* calls are allowed (LL) */
  uint64_t timeout_ns;                       /* bound on device waits; AUTO: EPYARD_EP_TIMEOUT_MS */
} ncclEpGroupConfig_t;
#define NCCL_EP_GROUP_CONFIG_INIT                                                          \
  ((ncclEpGroupConfig_t){sizeof(ncclEpGroupConfig_t), NCCL_EP_MAGIC, NCCL_EP_API_VERSION, \
                         NCCL_EP_ALGO_LOW_LATENCY, 0, 0, 0, 0, 0, 0, 0, 0,                \
                         {NULL, NULL, NULL}, 0, 0})

typedef struct {
  unsigned int size;
  unsigned int magic;
  unsigned int dispatch_output_per_expert_alignment; /* HT expert-major zone alignment; AUTO = 1 */
} ncclEpHandleConfig_t;
#define NCCL_EP_HANDLE_CONFIG_INIT \
  ((ncclEpHandleConfig_t){sizeof(ncclEpHandleConfig_t), NCCL_EP_MAGIC, 0})

/* Filled on the device by ncclEpUpdateHandle / ncclEpDispatch; every tensor is optional. */
typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* expert_counters;    /* [local experts]: rows received per local expert */
  ncclEpTensor_t* src_rank_counters;  /* [ranks]: tokens received from each rank */
  ncclEpTensor_t* expert_offsets;     /* [local experts]: exclusive prefix of expert_counters */
  ncclEpTensor_t* recv_total_counter; /* [1]: rows (expert-major) or tokens (rank-major) */
} ncclEpLayoutInfo_t;
#define NCCL_EP_LAYOUT_INFO_INIT \
  ((ncclEpLayoutInfo_t){sizeof(ncclEpLayoutInfo_t), NCCL_EP_MAGIC, NULL, NULL, NULL, NULL})

typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* tokens;       /* [T, H] */
  ncclEpTensor_t* topk_weights; /* [T, K] float32, optional */
  ncclEpTensor_t* scales;       /* input scales when tokens are already FP8 */
} ncclEpDispatchInputs_t;
#define NCCL_EP_DISPATCH_INPUTS_INIT \
  ((ncclEpDispatchInputs_t){sizeof(ncclEpDispatchInputs_t), NCCL_EP_MAGIC, NULL, NULL, NULL})

typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* tokens;       /* see the layouts in the README */
  ncclEpTensor_t* topk_weights;
  ncclEpTensor_t* scales;       /* float32 [..., H/128] when tokens are ncclFloat8e4m3 */
  ncclEpTensor_t* topk_idx;
} ncclEpDispatchOutputs_t;
#define NCCL_EP_DISPATCH_OUTPUTS_INIT \
  ((ncclEpDispatchOutputs_t){sizeof(ncclEpDispatchOutputs_t), NCCL_EP_MAGIC, NULL, NULL, NULL, NULL})

typedef struct {
  unsigned int size;
  unsigned int magic;
  int send_only;                  /* LL staged mode: finish with ncclEpComplete */
  int round_scales;               /* FP8: round each scale up to a power of two */
  ncclEpPassDir_t pass_direction; /* HT only */
} ncclEpDispatchConfig_t;
#define NCCL_EP_DISPATCH_CONFIG_INIT \
  ((ncclEpDispatchConfig_t){sizeof(ncclEpDispatchConfig_t), NCCL_EP_MAGIC, 0, 0, NCCL_EP_FWD_PASS})

typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* tokens;
  ncclEpTensor_t* topk_weights;
} ncclEpCombineInputs_t;
#define NCCL_EP_COMBINE_INPUTS_INIT \
  ((ncclEpCombineInputs_t){sizeof(ncclEpCombineInputs_t), NCCL_EP_MAGIC, NULL, NULL})

typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* tokens; /* [T, H] */
  ncclEpTensor_t* topk_weights;
} ncclEpCombineOutputs_t;
#define NCCL_EP_COMBINE_OUTPUTS_INIT \
  ((ncclEpCombineOutputs_t){sizeof(ncclEpCombineOutputs_t), NCCL_EP_MAGIC, NULL, NULL})

typedef struct {
  unsigned int size;
  unsigned int magic;
  int send_only;
  ncclEpPassDir_t pass_direction;
} ncclEpCombineConfig_t;
#define NCCL_EP_COMBINE_CONFIG_INIT \
  ((ncclEpCombineConfig_t){sizeof(ncclEpCombineConfig_t), NCCL_EP_MAGIC, 0, NCCL_EP_FWD_PASS})

typedef struct {
  unsigned int size;
  unsigned int magic;
} ncclEpCompleteConfig_t;
#define NCCL_EP_COMPLETE_CONFIG_INIT \
  ((ncclEpCompleteConfig_t){sizeof(ncclEpCompleteConfig_t), NCCL_EP_MAGIC})

ncclResult_t ncclEpGetVersion(int* version);

ncclResult_t ncclEpTensorAlloc(ncclEpTensor_t** tensor, int ndim, ncclDataType_t datatype,
                               const size_t* sizes, const ncclEpTensorAllocConfig_t* config);
ncclResult_t ncclEpTensorDestroy(ncclEpTensor_t* tensor);

/* Collective over `comm`. */
ncclResult_t ncclEpCreateGroup(ncclEpGroup_t* group, ncclComm_t comm,
                               const ncclEpGroupConfig_t* config);
ncclResult_t ncclEpGroupDestroy(ncclEpGroup_t group);

ncclResult_t ncclEpHandleMemSize(ncclEpGroup_t group, ncclEpLayout_t layout,
                                 const ncclEpHandleConfig_t* config, size_t* size_out,
                                 int num_topk);
/* Host-side set-up (not graph-capturable). num_topk > 0 for LL, -1 for HT. handle_mem: 1-D
 * uint8 tensor of at least ncclEpHandleMemSize bytes, or NULL for library memory. */
ncclResult_t ncclEpInitHandle(ncclEpHandle_t* handle, ncclEpGroup_t group, ncclEpLayout_t layout,
                              const ncclEpHandleConfig_t* config, int num_topk,
                              const ncclEpTensor_t* handle_mem);
/* Per-step routing: topk_idx int64 [T, K], -1 = no expert. Graph-capturable. */
ncclResult_t ncclEpUpdateHandle(ncclEpHandle_t handle, const ncclEpTensor_t* topk_idx,
                                const ncclEpLayoutInfo_t* layout_info, cudaStream_t stream);
ncclResult_t ncclEpCreateHandle(ncclEpHandle_t* handle, ncclEpGroup_t group, ncclEpLayout_t layout,
                                const ncclEpTensor_t* topk_idx,
                                const ncclEpLayoutInfo_t* layout_info,
                                const ncclEpHandleConfig_t* config, cudaStream_t stream);
ncclResult_t ncclEpHandleDestroy(ncclEpHandle_t handle);

ncclResult_t ncclEpDispatch(ncclEpHandle_t handle, const ncclEpDispatchInputs_t* inputs,
                            const ncclEpDispatchOutputs_t* outputs,
                            const ncclEpLayoutInfo_t* layout_info,
                            const ncclEpDispatchConfig_t* config, cudaStream_t stream);
ncclResult_t ncclEpCombine(ncclEpHandle_t handle, const ncclEpCombineInputs_t* inputs,
                           const ncclEpCombineOutputs_t* outputs,
                           const ncclEpCombineConfig_t* config, cudaStream_t stream);
/* Finishes a send_only dispatch or combine (LL staged mode). */
ncclResult_t ncclEpComplete(ncclEpHandle_t handle, const ncclEpCompleteConfig_t* config,
                            cudaStream_t stream);

/* Fault tolerance (LL, group created with enable_mask). */
ncclResult_t ncclEpMaskQuery(ncclEpGroup_t group, int* mask_status, cudaStream_t stream);
ncclResult_t ncclEpMaskUpdate(ncclEpGroup_t group, const int* mask, cudaStream_t stream);
ncclResult_t ncclEpMaskClean(ncclEpGroup_t group, cudaStream_t stream);
ncclResult_t ncclEpGetAsyncError(ncclEpGroup_t group, int* error_out);
ncclResult_t ncclEpErrorClear(ncclEpGroup_t group);

/* epyard extension: the last error message (thread-local when group is NULL, e.g. after a
 * failed ncclEpCreateGroup). Never NULL. */
const char* ncclEpGetLastError(ncclEpGroup_t group);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NCCL_EP_H_ */
