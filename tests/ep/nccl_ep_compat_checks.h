/*
 * Source compatibility of include/nccl_ep.h with NCCL EP v0.1's header, shared by the C11
 * (nccl_ep_compat_c.c) and C++17 (nccl_ep_compat_cxx.cc) programs. The includer defines
 *   EP_SAME_TYPE(expr, type): a constant expression, true when `expr` has exactly `type`
 *                             (_Generic in C, std::is_same in C++);
 *   EP_ASSERT(cond, msg):     _Static_assert / static_assert.
 * Every check names what NCCL EP declares; the header failing any of them breaks a program
 * written for NCCL EP. Layout checks pin NCCL EP's LP64 offsets and sizes, so a struct built by
 * such a program has the same bytes here (except ncclEpTensorAllocConfig_t, which carries our
 * extension after size and magic).
 */
#ifndef EPYARD_TESTS_EP_NCCL_EP_COMPAT_CHECKS_H_
#define EPYARD_TESTS_EP_NCCL_EP_COMPAT_CHECKS_H_

#include <stddef.h>
#include <stdint.h>

#include "nccl_ep.h"

/* ---- Macros usable by the preprocessor, with NCCL EP's values. ---- */
#if !defined(NCCL_EP_MAJOR) || !defined(NCCL_EP_MINOR) || !defined(NCCL_EP_PATCH)
#error "NCCL_EP_MAJOR / MINOR / PATCH missing"
#endif
#if NCCL_EP_MAJOR != 0 || NCCL_EP_MINOR != 1 || NCCL_EP_PATCH != 0
#error "NCCL EP version is not 0.1.0"
#endif
#if NCCL_EP_VERSION_CODE != 100 || NCCL_EP_API_VERSION != 1 || NCCL_EP_AUTO != 0
#error "NCCL_EP_VERSION_CODE, NCCL_EP_API_VERSION or NCCL_EP_AUTO differs"
#endif
#if NCCL_EP_MAGIC != 0xC00FFFEE || NCCL_EP_TENSOR_MAGIC != 0xCAFECAFE
#error "NCCL_EP_MAGIC or NCCL_EP_TENSOR_MAGIC differs"
#endif
#if !defined(NCCL_EP_TENSOR_INIT_INLINE) || !defined(NCCL_EP_TENSOR_INIT) ||             \
    !defined(NCCL_EP_TENSOR_ALLOC_CONFIG_INIT) || !defined(NCCL_EP_GROUP_CONFIG_INIT) || \
    !defined(NCCL_EP_LAYOUT_INFO_INIT) || !defined(NCCL_EP_DISPATCH_INPUTS_INIT) ||      \
    !defined(NCCL_EP_DISPATCH_OUTPUTS_INIT) || !defined(NCCL_EP_COMBINE_INPUTS_INIT) ||  \
    !defined(NCCL_EP_COMBINE_OUTPUTS_INIT) || !defined(NCCL_EP_HANDLE_CONFIG_INIT) ||    \
    !defined(NCCL_EP_DISPATCH_CONFIG_INIT) || !defined(NCCL_EP_COMBINE_CONFIG_INIT) ||   \
    !defined(NCCL_EP_COMPLETE_CONFIG_INIT)
#error "an NCCL EP initialiser macro is missing"
#endif

/* ---- Enumerators. ---- */
EP_ASSERT(NCCL_EP_ALGO_LOW_LATENCY == 0 && NCCL_EP_ALGO_HIGH_THROUGHPUT == 1, "ncclEpAlgorithm_t");
EP_ASSERT(NCCL_EP_LAYOUT_UNSET == NCCL_EP_AUTO && NCCL_EP_LAYOUT_EXPERT_MAJOR == 1 &&
              NCCL_EP_LAYOUT_RANK_MAJOR == 2 && NCCL_EP_LAYOUT_FLAT == 3,
          "ncclEpLayout_t");
EP_ASSERT(NCCL_EP_FWD_PASS == 0 && NCCL_EP_BWD_PASS == 1, "ncclEpPassDir_t");
EP_ASSERT(sizeof(ncclEpAlgorithm_t) == sizeof(int) && sizeof(ncclEpLayout_t) == sizeof(int) &&
              sizeof(ncclEpPassDir_t) == sizeof(int),
          "the enums are int-sized");

/* ---- Typedefs, struct tags and opaque handles. ---- */
EP_ASSERT(EP_SAME_TYPE((ncclEpAllocFn_t)0, cudaError_t (*)(void**, size_t, void*)),
          "ncclEpAllocFn_t: cudaError_t (*)(void** ptr, size_t size, void* context)");
EP_ASSERT(EP_SAME_TYPE((ncclEpFreeFn_t)0, cudaError_t (*)(void*, void*)),
          "ncclEpFreeFn_t: cudaError_t (*)(void* ptr, void* context)");
EP_ASSERT(EP_SAME_TYPE((ncclEpTensor_t*)0, struct ncclEpTensor*), "struct ncclEpTensor");
EP_ASSERT(EP_SAME_TYPE((ncclEpCompleteConfig_t*)0, struct ncclEpCompleteConfig*),
          "struct ncclEpCompleteConfig");
EP_ASSERT(EP_SAME_TYPE((ncclEpGroup_t)0, struct ncclEpGroup*),
          "ncclEpGroup_t: struct ncclEpGroup*");
EP_ASSERT(EP_SAME_TYPE((ncclEpHandle_t)0, struct ncclEpHandle*),
          "ncclEpHandle_t: struct ncclEpHandle*");

/* ---- Fields. ---- */
/* EP_MEMBER(T, f, type, offset): T.f has exactly `type`, at `offset` on LP64. */
#if defined(__LP64__)
#define EP_AT(T, f, off) EP_ASSERT(offsetof(T, f) == (off), #T "." #f " is at NCCL EP's offset")
#define EP_SIZE(T, bytes) EP_ASSERT(sizeof(T) == (bytes), "sizeof(" #T ") is NCCL EP's")
#else
#define EP_AT(T, f, off) EP_ASSERT(1, "")
#define EP_SIZE(T, bytes) EP_ASSERT(1, "")
#endif
#define EP_MEMBER(T, f, type, off)                                                   \
  EP_ASSERT(EP_SAME_TYPE(((T*)0)->f, type), #T "." #f " has NCCL EP's type " #type); \
  EP_AT(T, f, off)
/* size and magic, first in every public struct but ncclEpAllocConfig_t. */
#define EP_HEADER(T)                   \
  EP_MEMBER(T, size, unsigned int, 0); \
  EP_MEMBER(T, magic, unsigned int, 4)

EP_HEADER(ncclEpTensor_t);
EP_MEMBER(ncclEpTensor_t, ndim, unsigned int, 8);
EP_MEMBER(ncclEpTensor_t, datatype, ncclDataType_t, 12);
EP_MEMBER(ncclEpTensor_t, data, void*, 16);
EP_MEMBER(ncclEpTensor_t, win_hdl, ncclWindow_t, 24);
EP_MEMBER(ncclEpTensor_t, win_offset, uint64_t, 32);
EP_MEMBER(ncclEpTensor_t, sizes, size_t*, 40);
EP_SIZE(ncclEpTensor_t, 48);

EP_MEMBER(ncclEpAllocConfig_t, alloc_fn, ncclEpAllocFn_t, 0);
EP_MEMBER(ncclEpAllocConfig_t, free_fn, ncclEpFreeFn_t, 8);
EP_MEMBER(ncclEpAllocConfig_t, context, void*, 16);
EP_SIZE(ncclEpAllocConfig_t, 24);

EP_HEADER(ncclEpTensorAllocConfig_t);

EP_HEADER(ncclEpGroupConfig_t);
EP_MEMBER(ncclEpGroupConfig_t, version, unsigned int, 8);
EP_MEMBER(ncclEpGroupConfig_t, algorithm, ncclEpAlgorithm_t, 12);
EP_MEMBER(ncclEpGroupConfig_t, num_experts, unsigned int, 16);
EP_MEMBER(ncclEpGroupConfig_t, max_dispatch_tokens_per_rank, unsigned int, 20);
EP_MEMBER(ncclEpGroupConfig_t, max_recv_tokens_per_rank, unsigned int, 24);
EP_MEMBER(ncclEpGroupConfig_t, max_token_bytes, unsigned int, 28);
EP_MEMBER(ncclEpGroupConfig_t, rdma_buffer_size, unsigned long int, 32);
EP_MEMBER(ncclEpGroupConfig_t, num_qp_per_rank, unsigned int, 40);
EP_MEMBER(ncclEpGroupConfig_t, num_channels, unsigned int, 44);
EP_MEMBER(ncclEpGroupConfig_t, max_num_sms, unsigned int, 48);
EP_MEMBER(ncclEpGroupConfig_t, alloc, ncclEpAllocConfig_t, 56);
EP_MEMBER(ncclEpGroupConfig_t, enable_mask, unsigned int, 80);
EP_MEMBER(ncclEpGroupConfig_t, timeout_ns, uint64_t, 88);
EP_SIZE(ncclEpGroupConfig_t, 96);

EP_HEADER(ncclEpLayoutInfo_t);
EP_MEMBER(ncclEpLayoutInfo_t, expert_counters, ncclEpTensor_t*, 8);
EP_MEMBER(ncclEpLayoutInfo_t, src_rank_counters, ncclEpTensor_t*, 16);
EP_MEMBER(ncclEpLayoutInfo_t, expert_offsets, ncclEpTensor_t*, 24);
EP_MEMBER(ncclEpLayoutInfo_t, recv_total_counter, ncclEpTensor_t*, 32);
EP_SIZE(ncclEpLayoutInfo_t, 40);

EP_HEADER(ncclEpDispatchInputs_t);
EP_MEMBER(ncclEpDispatchInputs_t, tokens, ncclEpTensor_t*, 8);
EP_MEMBER(ncclEpDispatchInputs_t, topk_weights, ncclEpTensor_t*, 16);
EP_MEMBER(ncclEpDispatchInputs_t, scales, ncclEpTensor_t*, 24);
EP_SIZE(ncclEpDispatchInputs_t, 32);

EP_HEADER(ncclEpDispatchOutputs_t);
EP_MEMBER(ncclEpDispatchOutputs_t, tokens, ncclEpTensor_t*, 8);
EP_MEMBER(ncclEpDispatchOutputs_t, topk_weights, ncclEpTensor_t*, 16);
EP_MEMBER(ncclEpDispatchOutputs_t, scales, ncclEpTensor_t*, 24);
EP_MEMBER(ncclEpDispatchOutputs_t, topk_idx, ncclEpTensor_t*, 32);
EP_SIZE(ncclEpDispatchOutputs_t, 40);

EP_HEADER(ncclEpCombineInputs_t);
EP_MEMBER(ncclEpCombineInputs_t, tokens, ncclEpTensor_t*, 8);
EP_MEMBER(ncclEpCombineInputs_t, topk_weights, ncclEpTensor_t*, 16);
EP_SIZE(ncclEpCombineInputs_t, 24);

EP_HEADER(ncclEpCombineOutputs_t);
EP_MEMBER(ncclEpCombineOutputs_t, tokens, ncclEpTensor_t*, 8);
EP_MEMBER(ncclEpCombineOutputs_t, topk_weights, ncclEpTensor_t*, 16);
EP_SIZE(ncclEpCombineOutputs_t, 24);

EP_HEADER(ncclEpHandleConfig_t);
EP_MEMBER(ncclEpHandleConfig_t, dispatch_output_per_expert_alignment, size_t, 8);
EP_SIZE(ncclEpHandleConfig_t, 16);

EP_HEADER(ncclEpDispatchConfig_t);
EP_MEMBER(ncclEpDispatchConfig_t, send_only, unsigned int, 8);
EP_MEMBER(ncclEpDispatchConfig_t, round_scales, unsigned int, 12);
EP_MEMBER(ncclEpDispatchConfig_t, pass_direction, ncclEpPassDir_t, 16);
EP_SIZE(ncclEpDispatchConfig_t, 20);

EP_HEADER(ncclEpCombineConfig_t);
EP_MEMBER(ncclEpCombineConfig_t, send_only, unsigned int, 8);
EP_MEMBER(ncclEpCombineConfig_t, pass_direction, ncclEpPassDir_t, 12);
EP_SIZE(ncclEpCombineConfig_t, 16);

EP_HEADER(ncclEpCompleteConfig_t);
EP_SIZE(ncclEpCompleteConfig_t, 8);

/* ---- Every function, by its exact pointer type. ---- */
#define EP_FUNCTION(f, type) EP_ASSERT(EP_SAME_TYPE(&f, type), #f " has NCCL EP's signature")
EP_FUNCTION(ncclEpGetVersion, ncclResult_t (*)(int*));
EP_FUNCTION(ncclEpTensorAlloc, ncclResult_t (*)(ncclEpTensor_t**, unsigned int, ncclDataType_t,
                                                const size_t*, const ncclEpTensorAllocConfig_t*));
EP_FUNCTION(ncclEpTensorDestroy, ncclResult_t (*)(ncclEpTensor_t*));
EP_FUNCTION(ncclEpCreateGroup,
            ncclResult_t (*)(ncclEpGroup_t*, ncclComm_t, const ncclEpGroupConfig_t*));
EP_FUNCTION(ncclEpGroupDestroy, ncclResult_t (*)(ncclEpGroup_t));
EP_FUNCTION(ncclEpHandleMemSize, ncclResult_t (*)(ncclEpGroup_t, ncclEpLayout_t,
                                                  const ncclEpHandleConfig_t*, size_t*, int));
EP_FUNCTION(ncclEpInitHandle,
            ncclResult_t (*)(ncclEpHandle_t*, ncclEpGroup_t, ncclEpLayout_t,
                             const ncclEpHandleConfig_t*, int, const ncclEpTensor_t*));
EP_FUNCTION(ncclEpUpdateHandle, ncclResult_t (*)(ncclEpHandle_t, const ncclEpTensor_t*,
                                                 const ncclEpLayoutInfo_t*, cudaStream_t));
EP_FUNCTION(ncclEpCreateHandle,
            ncclResult_t (*)(ncclEpHandle_t*, ncclEpGroup_t, ncclEpLayout_t, const ncclEpTensor_t*,
                             const ncclEpLayoutInfo_t*, const ncclEpHandleConfig_t*, cudaStream_t));
EP_FUNCTION(ncclEpHandleDestroy, ncclResult_t (*)(ncclEpHandle_t));
EP_FUNCTION(ncclEpDispatch,
            ncclResult_t (*)(ncclEpHandle_t, const ncclEpDispatchInputs_t*,
                             const ncclEpDispatchOutputs_t*, const ncclEpLayoutInfo_t*,
                             const ncclEpDispatchConfig_t*, cudaStream_t));
EP_FUNCTION(ncclEpCombine, ncclResult_t (*)(ncclEpHandle_t, const ncclEpCombineInputs_t*,
                                            const ncclEpCombineOutputs_t*,
                                            const ncclEpCombineConfig_t*, cudaStream_t));
EP_FUNCTION(ncclEpComplete,
            ncclResult_t (*)(ncclEpHandle_t, const ncclEpCompleteConfig_t*, cudaStream_t));
EP_FUNCTION(ncclEpMaskQuery, ncclResult_t (*)(ncclEpGroup_t, int*, cudaStream_t));
EP_FUNCTION(ncclEpMaskUpdate, ncclResult_t (*)(ncclEpGroup_t, const int*, cudaStream_t));
EP_FUNCTION(ncclEpMaskClean, ncclResult_t (*)(ncclEpGroup_t, cudaStream_t));
EP_FUNCTION(ncclEpGetAsyncError, ncclResult_t (*)(ncclEpGroup_t, int*));
EP_FUNCTION(ncclEpErrorClear, ncclResult_t (*)(ncclEpGroup_t));
/* epyard extension (EP_COMPAT_NCCL_EP_ONLY: leave our extensions out, to check these checks
 * against NCCL EP's own header). */
#ifndef EP_COMPAT_NCCL_EP_ONLY
EP_FUNCTION(ncclEpGetLastError, const char* (*)(ncclEpGroup_t));
#endif

/* ---- A program in the style of NCCL EP's examples: allocator callbacks with NCCL EP's
 * signatures, every INIT macro, designated initialisers led by NCCL_EP_TENSOR_INIT_INLINE, and
 * every entry point called. On a CPU there is no communicator, so each call must be refused
 * (never crash); returns the number of calls that were not. ---- */
static int compatAllocCalls;

static cudaError_t compatAlloc(void** ptr, size_t size, void* context) {
  (void)context;
  ++compatAllocCalls;
  return cudaMalloc(ptr, size);
}

static cudaError_t compatFree(void* ptr, void* context) {
  (void)context;
  return cudaFree(ptr);
}

static int compatRefused(ncclResult_t r) { return r != ncclSuccess ? 0 : 1; }

static int compatRunExample(void) {
  int bad = 0;
  int version = 0;
  bad += ncclEpGetVersion(&version) != ncclSuccess || version != NCCL_EP_VERSION_CODE;

  ncclEpGroupConfig_t config = NCCL_EP_GROUP_CONFIG_INIT;
  bad += config.size != sizeof(ncclEpGroupConfig_t) || config.magic != NCCL_EP_MAGIC ||
         config.version != NCCL_EP_API_VERSION || config.alloc.alloc_fn != NULL;
  config.algorithm = NCCL_EP_ALGO_LOW_LATENCY;
  config.num_experts = 8;
  config.max_dispatch_tokens_per_rank = 128;
  config.max_recv_tokens_per_rank = NCCL_EP_AUTO;
  config.max_token_bytes = 7168 * 2;
  config.rdma_buffer_size = NCCL_EP_AUTO;
  config.num_qp_per_rank = NCCL_EP_AUTO;
  config.num_channels = NCCL_EP_AUTO;
  config.max_num_sms = NCCL_EP_AUTO;
  config.alloc.alloc_fn = compatAlloc;
  config.alloc.free_fn = compatFree;
  config.alloc.context = NULL;
  config.enable_mask = 0;
  config.timeout_ns = 0;
  ncclEpGroup_t group = NULL;
  ncclComm_t comm = NULL; /* no GPU here */
  bad += compatRefused(ncclEpCreateGroup(&group, comm, &config));

  size_t tok_sizes[2] = {128, 7168};
  size_t idx_sizes[2] = {128, 8};
  size_t counter_sizes[1] = {1};
  ncclEpTensor_t tokens = {NCCL_EP_TENSOR_INIT_INLINE, .ndim = 2, .datatype = ncclBfloat16,
                           .data = NULL, .sizes = tok_sizes};
  ncclEpTensor_t topk_idx = NCCL_EP_TENSOR_INIT;
  topk_idx.ndim = 2;
  topk_idx.datatype = ncclInt64;
  topk_idx.sizes = idx_sizes;
  ncclEpTensor_t topk_weights = NCCL_EP_TENSOR_INIT;
  topk_weights = (ncclEpTensor_t){NCCL_EP_TENSOR_INIT_INLINE, .ndim = 2, .datatype = ncclFloat32,
                                  .sizes = idx_sizes};
  ncclEpTensor_t counters = {NCCL_EP_TENSOR_INIT_INLINE,
                             .ndim = 1,
                             .datatype = ncclInt32,
                             .data = NULL,
                             .win_hdl = NULL,
                             .win_offset = 0,
                             .sizes = counter_sizes};
  bad += tokens.size != sizeof(ncclEpTensor_t) || tokens.magic != NCCL_EP_TENSOR_MAGIC ||
         topk_idx.magic != NCCL_EP_TENSOR_MAGIC || topk_weights.win_hdl != NULL ||
         counters.win_offset != 0;

  ncclEpTensor_t* owned = NULL;
  ncclEpTensorAllocConfig_t alloc_config = NCCL_EP_TENSOR_ALLOC_CONFIG_INIT;
  bad += alloc_config.size != sizeof(ncclEpTensorAllocConfig_t);
  bad += compatRefused(ncclEpTensorAlloc(&owned, 0, ncclBfloat16, tok_sizes, &alloc_config));
  bad += compatRefused(ncclEpTensorAlloc(NULL, 2, ncclBfloat16, tok_sizes, NULL));
  bad += owned != NULL;
  bad += compatRefused(ncclEpTensorDestroy(&tokens)); /* not made by ncclEpTensorAlloc */

  ncclEpHandleConfig_t handle_config = NCCL_EP_HANDLE_CONFIG_INIT;
  handle_config.dispatch_output_per_expert_alignment = 16;
  ncclEpLayoutInfo_t layout_info = NCCL_EP_LAYOUT_INFO_INIT;
  layout_info.expert_counters = &counters;
  ncclEpHandle_t handle = NULL;
  size_t handle_bytes = 0;
  cudaStream_t stream = NULL;
  bad += compatRefused(
      ncclEpHandleMemSize(group, NCCL_EP_LAYOUT_EXPERT_MAJOR, &handle_config, &handle_bytes, 8));
  bad += compatRefused(
      ncclEpInitHandle(&handle, group, NCCL_EP_LAYOUT_RANK_MAJOR, &handle_config, 8, NULL));
  bad += compatRefused(ncclEpUpdateHandle(handle, &topk_idx, NULL, stream));
  bad += compatRefused(ncclEpCreateHandle(&handle, group, NCCL_EP_LAYOUT_FLAT, &topk_idx,
                                          &layout_info, NULL, stream));

  ncclEpDispatchInputs_t dispatch_inputs = NCCL_EP_DISPATCH_INPUTS_INIT;
  dispatch_inputs.tokens = &tokens;
  dispatch_inputs.topk_weights = &topk_weights;
  ncclEpDispatchOutputs_t dispatch_outputs = NCCL_EP_DISPATCH_OUTPUTS_INIT;
  dispatch_outputs.tokens = &tokens;
  ncclEpDispatchConfig_t dispatch_config = NCCL_EP_DISPATCH_CONFIG_INIT;
  dispatch_config.send_only = 1;
  dispatch_config.round_scales = 0;
  dispatch_config.pass_direction = NCCL_EP_BWD_PASS;
  bad += compatRefused(ncclEpDispatch(handle, &dispatch_inputs, &dispatch_outputs, &layout_info,
                                      &dispatch_config, stream));
  ncclEpCombineInputs_t combine_inputs = NCCL_EP_COMBINE_INPUTS_INIT;
  combine_inputs.tokens = &tokens;
  ncclEpCombineOutputs_t combine_outputs = NCCL_EP_COMBINE_OUTPUTS_INIT;
  combine_outputs.tokens = &tokens;
  ncclEpCombineConfig_t combine_config = NCCL_EP_COMBINE_CONFIG_INIT;
  combine_config.send_only = 0;
  combine_config.pass_direction = NCCL_EP_FWD_PASS;
  bad += compatRefused(
      ncclEpCombine(handle, &combine_inputs, &combine_outputs, &combine_config, stream));
  ncclEpCompleteConfig_t complete_config = NCCL_EP_COMPLETE_CONFIG_INIT;
  bad += compatRefused(ncclEpComplete(handle, &complete_config, stream));
  bad += compatRefused(ncclEpComplete(handle, NULL, stream));

  int mask[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  int async_error = 0;
  bad += compatRefused(ncclEpMaskQuery(group, mask, stream));
  bad += compatRefused(ncclEpMaskUpdate(group, mask, stream));
  bad += compatRefused(ncclEpMaskClean(group, stream));
  bad += compatRefused(ncclEpGetAsyncError(group, &async_error));
  bad += compatRefused(ncclEpErrorClear(group));
  bad += compatRefused(ncclEpHandleDestroy(handle));
  bad += compatRefused(ncclEpGroupDestroy(group));
#ifndef EP_COMPAT_NCCL_EP_ONLY
  bad += ncclEpGetLastError(NULL) == NULL;
#endif
  bad += compatAllocCalls != 0; /* no group was made, so the allocator never ran */
  return bad;
}

#endif /* EPYARD_TESTS_EP_NCCL_EP_COMPAT_CHECKS_H_ */
