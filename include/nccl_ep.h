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
 *  - Anything marked "epyard extension" is ours alone; the rest matches NCCL EP declaration by
 *    declaration (typedefs, struct tags, field types, macros, enum values, signatures), so a
 *    program written for NCCL EP's nccl_ep.h compiles against this one unchanged.
 */
#ifndef NCCL_EP_H_
#define NCCL_EP_H_

#include <cuda.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <stddef.h>
#include <stdint.h>

#include "nccl_ep/ep_enums.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NCCL_EP_MAJOR 0
#define NCCL_EP_MINOR 1
#define NCCL_EP_PATCH 0
#define NCCL_EP_VERSION_CODE (NCCL_EP_MAJOR * 10000 + NCCL_EP_MINOR * 100 + NCCL_EP_PATCH)
#define NCCL_EP_API_VERSION 1

#define NCCL_EP_MAGIC 0xC00FFFEEu
#define NCCL_EP_TENSOR_MAGIC 0xCAFECAFE

/* The INIT macros are compound literals whose fields are all named (designated initialisers):
 * size and magic (and a group config's version) are set, everything else is zero / NULL. They
 * serve as initialisers, in assignments and in expressions. */

ncclResult_t ncclEpGetVersion(int* version);

/* A device tensor: `ndim` sizes (caller-owned array), row-major, `data` on the device. With
 * `win_hdl` set (memory registered with ncclCommWindowRegister) the library may use the caller's
 * window directly instead of copying. */
typedef struct ncclEpTensor {
  unsigned int size;
  unsigned int magic;
  unsigned int ndim;
  ncclDataType_t datatype;
  void* data;
  ncclWindow_t win_hdl;
  uint64_t win_offset;
  size_t* sizes;
} ncclEpTensor_t;
/* The size and magic designators, to start a braced initialiser that names the other fields:
 *   ncclEpTensor_t t = {NCCL_EP_TENSOR_INIT_INLINE, .ndim = 2, .datatype = ncclBfloat16, ...}; */
#define NCCL_EP_TENSOR_INIT_INLINE \
  .size = (unsigned int)sizeof(ncclEpTensor_t), .magic = NCCL_EP_TENSOR_MAGIC
#define NCCL_EP_TENSOR_INIT                                                                     \
  ((ncclEpTensor_t){NCCL_EP_TENSOR_INIT_INLINE, .ndim = 0u, .datatype = ncclInt8, .data = NULL, \
                    .win_hdl = NULL, .win_offset = 0, .sizes = NULL})

/* The caller's device allocator: each callback gets the `context` stored beside it and reports
 * failure with any value other than cudaSuccess. */
typedef cudaError_t (*ncclEpAllocFn_t)(void** ptr, size_t size, void* context);
typedef cudaError_t (*ncclEpFreeFn_t)(void* ptr, void* context);

typedef struct {
  ncclEpAllocFn_t alloc_fn; /* NULL (with free_fn NULL): cudaMalloc */
  ncclEpFreeFn_t free_fn;   /* NULL (with alloc_fn NULL): cudaFree */
  void* context;
} ncclEpAllocConfig_t;

typedef struct {
  unsigned int size;
  unsigned int magic;
  /* epyard extension: the allocator of the tensor's device memory (all NULL: cudaMalloc). */
  ncclEpAllocConfig_t alloc;
} ncclEpTensorAllocConfig_t;
#define NCCL_EP_TENSOR_ALLOC_CONFIG_INIT                                                \
  ((ncclEpTensorAllocConfig_t){.size = (unsigned int)sizeof(ncclEpTensorAllocConfig_t), \
                               .magic = NCCL_EP_MAGIC,                                  \
                               .alloc = {NULL, NULL, NULL}})

/* Allocates the descriptor, its sizes and ndim-dimensional device memory; config may be NULL. */
ncclResult_t ncclEpTensorAlloc(ncclEpTensor_t** tensor, unsigned int ndim, ncclDataType_t datatype,
                               const size_t* sizes, const ncclEpTensorAllocConfig_t* config);
ncclResult_t ncclEpTensorDestroy(ncclEpTensor_t* tensor);

typedef struct {
  unsigned int size;
  unsigned int magic;
  unsigned int version; /* NCCL_EP_API_VERSION */
  ncclEpAlgorithm_t algorithm;
  unsigned int num_experts;                  /* a multiple of the number of ranks */
  unsigned int max_dispatch_tokens_per_rank; /* tokens one rank sends in one dispatch */
  unsigned int max_recv_tokens_per_rank;     /* HT receive capacity; LL AUTO = ranks x dispatch */
  unsigned int max_token_bytes;              /* hidden x element size, upper bound */
  unsigned long int rdma_buffer_size;        /* AUTO: sized from the fields above */
  unsigned int num_qp_per_rank;              /* AUTO */
  unsigned int num_channels;                 /* HT parallelism; AUTO picks a measured default */
  unsigned int max_num_sms;                  /* cap on SMs any EP kernel uses; AUTO = no cap */
  ncclEpAllocConfig_t alloc;                 /* every byte of device memory the group allocates */
  unsigned int enable_mask;                  /* non-zero: ncclEpMask* calls are allowed (LL) */
  uint64_t timeout_ns;                       /* bound on device waits; AUTO: EPYARD_EP_TIMEOUT_MS */
} ncclEpGroupConfig_t;
#define NCCL_EP_GROUP_CONFIG_INIT                                           \
  ((ncclEpGroupConfig_t){.size = (unsigned int)sizeof(ncclEpGroupConfig_t), \
                         .magic = NCCL_EP_MAGIC,                            \
                         .version = NCCL_EP_API_VERSION,                    \
                         .algorithm = NCCL_EP_ALGO_LOW_LATENCY,             \
                         .num_experts = 0u,                                 \
                         .max_dispatch_tokens_per_rank = 0u,                \
                         .max_recv_tokens_per_rank = 0u,                    \
                         .max_token_bytes = 0u,                             \
                         .rdma_buffer_size = 0ul,                           \
                         .num_qp_per_rank = 0u,                             \
                         .num_channels = 0u,                                \
                         .max_num_sms = 0u,                                 \
                         .alloc = {NULL, NULL, NULL},                       \
                         .enable_mask = 0u,                                 \
                         .timeout_ns = 0u})

typedef struct ncclEpGroup* ncclEpGroup_t;

/* Collective over `comm`. */
ncclResult_t ncclEpCreateGroup(ncclEpGroup_t* group, ncclComm_t comm,
                               const ncclEpGroupConfig_t* config);
ncclResult_t ncclEpGroupDestroy(ncclEpGroup_t group);

/* Filled on the device by ncclEpUpdateHandle / ncclEpDispatch; every tensor is optional. */
typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* expert_counters;    /* [local experts]: rows received per local expert */
  ncclEpTensor_t* src_rank_counters;  /* [ranks]: tokens received from each rank */
  ncclEpTensor_t* expert_offsets;     /* [local experts]: exclusive prefix of expert_counters */
  ncclEpTensor_t* recv_total_counter; /* [1]: rows (expert-major) or tokens (rank-major) */
} ncclEpLayoutInfo_t;
#define NCCL_EP_LAYOUT_INFO_INIT                                          \
  ((ncclEpLayoutInfo_t){.size = (unsigned int)sizeof(ncclEpLayoutInfo_t), \
                        .magic = NCCL_EP_MAGIC,                           \
                        .expert_counters = NULL,                          \
                        .src_rank_counters = NULL,                        \
                        .expert_offsets = NULL,                           \
                        .recv_total_counter = NULL})

typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* tokens;       /* [T, H] */
  ncclEpTensor_t* topk_weights; /* [T, K] float32, optional */
  ncclEpTensor_t* scales;       /* input scales when tokens are already FP8 */
} ncclEpDispatchInputs_t;
#define NCCL_EP_DISPATCH_INPUTS_INIT                                              \
  ((ncclEpDispatchInputs_t){.size = (unsigned int)sizeof(ncclEpDispatchInputs_t), \
                            .magic = NCCL_EP_MAGIC,                               \
                            .tokens = NULL,                                       \
                            .topk_weights = NULL,                                 \
                            .scales = NULL})

typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* tokens; /* see the layouts in the README */
  ncclEpTensor_t* topk_weights;
  ncclEpTensor_t* scales; /* float32 [..., H/128] when tokens are ncclFloat8e4m3 */
  ncclEpTensor_t* topk_idx;
} ncclEpDispatchOutputs_t;
#define NCCL_EP_DISPATCH_OUTPUTS_INIT                                               \
  ((ncclEpDispatchOutputs_t){.size = (unsigned int)sizeof(ncclEpDispatchOutputs_t), \
                             .magic = NCCL_EP_MAGIC,                                \
                             .tokens = NULL,                                        \
                             .topk_weights = NULL,                                  \
                             .scales = NULL,                                        \
                             .topk_idx = NULL})

typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* tokens;
  ncclEpTensor_t* topk_weights;
} ncclEpCombineInputs_t;
#define NCCL_EP_COMBINE_INPUTS_INIT                                             \
  ((ncclEpCombineInputs_t){.size = (unsigned int)sizeof(ncclEpCombineInputs_t), \
                           .magic = NCCL_EP_MAGIC,                              \
                           .tokens = NULL,                                      \
                           .topk_weights = NULL})

typedef struct {
  unsigned int size;
  unsigned int magic;
  ncclEpTensor_t* tokens; /* [T, H] */
  ncclEpTensor_t* topk_weights;
} ncclEpCombineOutputs_t;
#define NCCL_EP_COMBINE_OUTPUTS_INIT                                              \
  ((ncclEpCombineOutputs_t){.size = (unsigned int)sizeof(ncclEpCombineOutputs_t), \
                            .magic = NCCL_EP_MAGIC,                               \
                            .tokens = NULL,                                       \
                            .topk_weights = NULL})

typedef struct ncclEpHandle* ncclEpHandle_t;

typedef struct {
  unsigned int size;
  unsigned int magic;
  size_t dispatch_output_per_expert_alignment; /* HT expert-major zone alignment; AUTO = 1 */
} ncclEpHandleConfig_t;
#define NCCL_EP_HANDLE_CONFIG_INIT                                            \
  ((ncclEpHandleConfig_t){.size = (unsigned int)sizeof(ncclEpHandleConfig_t), \
                          .magic = NCCL_EP_MAGIC,                             \
                          .dispatch_output_per_expert_alignment = 0})

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

typedef struct {
  unsigned int size;
  unsigned int magic;
  unsigned int send_only;         /* LL staged mode: finish with ncclEpComplete */
  unsigned int round_scales;      /* FP8: round each scale up to a power of two */
  ncclEpPassDir_t pass_direction; /* HT only */
} ncclEpDispatchConfig_t;
#define NCCL_EP_DISPATCH_CONFIG_INIT                                              \
  ((ncclEpDispatchConfig_t){.size = (unsigned int)sizeof(ncclEpDispatchConfig_t), \
                            .magic = NCCL_EP_MAGIC,                               \
                            .send_only = 0u,                                      \
                            .round_scales = 0u,                                   \
                            .pass_direction = NCCL_EP_FWD_PASS})

ncclResult_t ncclEpDispatch(ncclEpHandle_t handle, const ncclEpDispatchInputs_t* inputs,
                            const ncclEpDispatchOutputs_t* outputs,
                            const ncclEpLayoutInfo_t* layout_info,
                            const ncclEpDispatchConfig_t* config, cudaStream_t stream);

typedef struct {
  unsigned int size;
  unsigned int magic;
  unsigned int send_only;
  ncclEpPassDir_t pass_direction;
} ncclEpCombineConfig_t;
#define NCCL_EP_COMBINE_CONFIG_INIT                                             \
  ((ncclEpCombineConfig_t){.size = (unsigned int)sizeof(ncclEpCombineConfig_t), \
                           .magic = NCCL_EP_MAGIC,                              \
                           .send_only = 0u,                                     \
                           .pass_direction = NCCL_EP_FWD_PASS})

ncclResult_t ncclEpCombine(ncclEpHandle_t handle, const ncclEpCombineInputs_t* inputs,
                           const ncclEpCombineOutputs_t* outputs,
                           const ncclEpCombineConfig_t* config, cudaStream_t stream);

typedef struct ncclEpCompleteConfig {
  unsigned int size;
  unsigned int magic;
} ncclEpCompleteConfig_t;
#define NCCL_EP_COMPLETE_CONFIG_INIT                                              \
  ((ncclEpCompleteConfig_t){.size = (unsigned int)sizeof(ncclEpCompleteConfig_t), \
                            .magic = NCCL_EP_MAGIC})

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
