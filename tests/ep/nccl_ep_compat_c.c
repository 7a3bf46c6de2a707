/* nccl_ep.h as a C11 program written for NCCL EP sees it (checks in nccl_ep_compat_checks.h),
 * plus what only C allows: nested designators, addresses of the INIT compound literals, and
 * nccl_ep/ep_enums.h on its own before anything else. Exits 0 when every call was refused as
 * it must be on a CPU. */
#include "nccl_ep/ep_enums.h" /* first: needs no CUDA or NCCL header */

#if !defined(NCCL_EP_AUTO)
#error "nccl_ep/ep_enums.h defines NCCL_EP_AUTO"
#endif
static const ncclEpLayout_t kStandaloneLayout = NCCL_EP_LAYOUT_FLAT;

#define EP_SAME_TYPE(expr, type) _Generic((expr), type : 1, default : 0)
#define EP_ASSERT(cond, msg) _Static_assert(cond, msg)
#include "nccl_ep_compat_checks.h"

#include <stdio.h>

static int cOnlyForms(void) {
  int bad = 0;
  /* Nested designators and a designated compound literal assigned over an INIT. */
  ncclEpGroupConfig_t config = NCCL_EP_GROUP_CONFIG_INIT;
  config = (ncclEpGroupConfig_t){.size = (unsigned int)sizeof(ncclEpGroupConfig_t),
                                 .magic = NCCL_EP_MAGIC,
                                 .version = NCCL_EP_API_VERSION,
                                 .algorithm = NCCL_EP_ALGO_HIGH_THROUGHPUT,
                                 .alloc.alloc_fn = compatAlloc,
                                 .alloc.free_fn = compatFree};
  bad += config.alloc.context != NULL || config.timeout_ns != 0;
  /* INIT macros as expressions, and addresses of them passed straight to the API. */
  bad += NCCL_EP_DISPATCH_CONFIG_INIT.pass_direction != NCCL_EP_FWD_PASS;
  bad += NCCL_EP_COMBINE_CONFIG_INIT.send_only != 0;
  bad += NCCL_EP_TENSOR_INIT.ndim != 0 || NCCL_EP_TENSOR_INIT.sizes != NULL;
  bad += compatRefused(ncclEpComplete(NULL, &NCCL_EP_COMPLETE_CONFIG_INIT, NULL));
  ncclEpHandle_t handle = NULL;
  bad += compatRefused(
      ncclEpInitHandle(&handle, NULL, kStandaloneLayout, &NCCL_EP_HANDLE_CONFIG_INIT, -1, NULL));
  /* Struct tags spelled out. */
  struct ncclEpTensor tagged = NCCL_EP_TENSOR_INIT;
  struct ncclEpCompleteConfig done = NCCL_EP_COMPLETE_CONFIG_INIT;
  bad += tagged.magic != NCCL_EP_TENSOR_MAGIC || done.magic != NCCL_EP_MAGIC;
  return bad;
}

int main(void) {
  const int bad = compatRunExample() + cOnlyForms();
  if (bad != 0) fprintf(stderr, "nccl_ep.h C compatibility: %d checks failed\n", bad);
  return bad == 0 ? 0 : 1;
}
