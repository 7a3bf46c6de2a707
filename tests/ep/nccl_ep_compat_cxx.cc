// nccl_ep.h as a C++17 program written for NCCL EP sees it (checks in nccl_ep_compat_checks.h,
// here through std::is_same, so enums are told apart from unsigned int), plus the C++-only
// checks: the enumerators' and macros' own types. Exits 0 when every call was refused as it
// must be on a CPU.
#include <cstdio>
#include <type_traits>

#define EP_SAME_TYPE(expr, type) (std::is_same<decltype(expr), type>::value)
#define EP_ASSERT(cond, msg) static_assert(cond, msg)
#include "nccl_ep_compat_checks.h"

namespace {

static_assert(std::is_same<decltype(NCCL_EP_ALGO_LOW_LATENCY), ncclEpAlgorithm_t>::value &&
                  std::is_same<decltype(NCCL_EP_ALGO_HIGH_THROUGHPUT), ncclEpAlgorithm_t>::value,
              "ncclEpAlgorithm_t's enumerators");
static_assert(std::is_same<decltype(NCCL_EP_LAYOUT_UNSET), ncclEpLayout_t>::value &&
                  std::is_same<decltype(NCCL_EP_LAYOUT_EXPERT_MAJOR), ncclEpLayout_t>::value &&
                  std::is_same<decltype(NCCL_EP_LAYOUT_RANK_MAJOR), ncclEpLayout_t>::value &&
                  std::is_same<decltype(NCCL_EP_LAYOUT_FLAT), ncclEpLayout_t>::value,
              "ncclEpLayout_t's enumerators");
static_assert(std::is_same<decltype(NCCL_EP_FWD_PASS), ncclEpPassDir_t>::value &&
                  std::is_same<decltype(NCCL_EP_BWD_PASS), ncclEpPassDir_t>::value,
              "ncclEpPassDir_t's enumerators");
static_assert(std::is_enum<ncclEpAlgorithm_t>::value && std::is_enum<ncclEpLayout_t>::value &&
                  std::is_enum<ncclEpPassDir_t>::value,
              "the three enums are enums");
static_assert(std::is_same<decltype(NCCL_EP_MAGIC), unsigned int>::value &&
                  std::is_same<decltype(NCCL_EP_TENSOR_MAGIC), unsigned int>::value &&
                  std::is_same<decltype(NCCL_EP_AUTO), int>::value,
              "the magic numbers are unsigned int, NCCL_EP_AUTO is int");
// g++ makes a compound literal a prvalue, nvcc's front end an lvalue: compare without references.
#define EP_INIT_IS(init, T) \
  (std::is_same<std::remove_cv<std::remove_reference<decltype(init)>::type>::type, T>::value)
static_assert(EP_INIT_IS(NCCL_EP_GROUP_CONFIG_INIT, ncclEpGroupConfig_t) &&
                  EP_INIT_IS(NCCL_EP_TENSOR_INIT, ncclEpTensor_t) &&
                  EP_INIT_IS(NCCL_EP_TENSOR_ALLOC_CONFIG_INIT, ncclEpTensorAllocConfig_t) &&
                  EP_INIT_IS(NCCL_EP_LAYOUT_INFO_INIT, ncclEpLayoutInfo_t) &&
                  EP_INIT_IS(NCCL_EP_DISPATCH_INPUTS_INIT, ncclEpDispatchInputs_t) &&
                  EP_INIT_IS(NCCL_EP_DISPATCH_OUTPUTS_INIT, ncclEpDispatchOutputs_t) &&
                  EP_INIT_IS(NCCL_EP_COMBINE_INPUTS_INIT, ncclEpCombineInputs_t) &&
                  EP_INIT_IS(NCCL_EP_COMBINE_OUTPUTS_INIT, ncclEpCombineOutputs_t) &&
                  EP_INIT_IS(NCCL_EP_HANDLE_CONFIG_INIT, ncclEpHandleConfig_t) &&
                  EP_INIT_IS(NCCL_EP_DISPATCH_CONFIG_INIT, ncclEpDispatchConfig_t) &&
                  EP_INIT_IS(NCCL_EP_COMBINE_CONFIG_INIT, ncclEpCombineConfig_t) &&
                  EP_INIT_IS(NCCL_EP_COMPLETE_CONFIG_INIT, ncclEpCompleteConfig_t),
              "each INIT macro is a value of its struct");
static_assert(std::is_standard_layout<ncclEpGroupConfig_t>::value &&
                  std::is_trivially_copyable<ncclEpTensor_t>::value,
              "plain C structs");

// Pointer-to-const configs handed around the way C++ callers do.
int cxxForms() {
  int bad = 0;
  const ncclEpDispatchConfig_t dispatch_config = NCCL_EP_DISPATCH_CONFIG_INIT;
  const ncclEpDispatchConfig_t* config_ptr = &dispatch_config;
  bad += config_ptr->send_only != 0u || config_ptr->round_scales != 0u;
  bad += compatRefused(ncclEpDispatch(nullptr, nullptr, nullptr, nullptr, config_ptr, nullptr));
  const struct ncclEpCompleteConfig done = NCCL_EP_COMPLETE_CONFIG_INIT;
  bad += compatRefused(ncclEpComplete(nullptr, &done, nullptr));
  ncclEpAllocFn_t alloc_fn = compatAlloc;
  ncclEpFreeFn_t free_fn = compatFree;
  const ncclEpAllocConfig_t allocator = {alloc_fn, free_fn, nullptr};
  bad += allocator.alloc_fn != &compatAlloc || allocator.free_fn != &compatFree;
  return bad;
}

}  // namespace

int main() {
  const int bad = compatRunExample() + cxxForms();
  if (bad != 0) std::fprintf(stderr, "nccl_ep.h C++ compatibility: %d checks failed\n", bad);
  return bad == 0 ? 0 : 1;
}
