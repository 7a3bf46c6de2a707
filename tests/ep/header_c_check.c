/* Proves include/nccl_ep.h is valid C11: the INIT macros are usable in declarations and in
 * assignments, and report what a C caller sees. */
#include "nccl_ep.h"

unsigned int epyardCHeaderGroupConfigSize(void) {
  ncclEpGroupConfig_t c = NCCL_EP_GROUP_CONFIG_INIT;
  return c.size;
}

unsigned int epyardCHeaderMagicSum(void) {
  ncclEpDispatchInputs_t in;
  in = NCCL_EP_DISPATCH_INPUTS_INIT;
  ncclEpTensor_t t = NCCL_EP_TENSOR_INIT;
  ncclEpCompleteConfig_t done = NCCL_EP_COMPLETE_CONFIG_INIT;
  return in.magic + t.magic + done.magic;
}
