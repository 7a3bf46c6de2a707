// Error reporting of the EP API: every failure carries a message, kept per group (or per
// thread when there is no group yet) for ncclEpGetLastError. Internal functions return
// ncclResult_t; EP_CHECK propagates a failure unchanged (the first message is the useful one).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

struct ncclEpGroup;

namespace epyard::ep {

// Stores `message` for `group` (thread-local when null) and returns `code`.
ncclResult_t fail(ncclEpGroup* group, ncclResult_t code, const std::string& message);

// ncclInvalidArgument with `message` when it is non-empty (the api_check convention).
inline ncclResult_t checkArg(ncclEpGroup* group, const std::string& message) {
  return message.empty() ? ncclSuccess : fail(group, ncclInvalidArgument, message);
}

// A failed CUDA call, named with its error string.
ncclResult_t failCuda(ncclEpGroup* group, const char* what, cudaError_t e);
ncclResult_t failNccl(ncclEpGroup* group, const char* what, ncclResult_t r);

const char* lastError(ncclEpGroup* group);

}  // namespace epyard::ep

#define EP_CHECK(call)                           \
  do {                                           \
    ncclResult_t ep_r_ = (call);                 \
    if (ep_r_ != ncclSuccess) return ep_r_;      \
  } while (0)

#define EP_CUDA(group, call)                                          \
  do {                                                                \
    cudaError_t ep_e_ = (call);                                       \
    if (ep_e_ != cudaSuccess) return ::epyard::ep::failCuda(group, #call, ep_e_); \
  } while (0)

#define EP_NCCL(group, call)                                          \
  do {                                                                \
    ncclResult_t ep_n_ = (call);                                      \
    if (ep_n_ != ncclSuccess) return ::epyard::ep::failNccl(group, #call, ep_n_); \
  } while (0)
