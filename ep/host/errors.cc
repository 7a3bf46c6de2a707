#include "host/errors.h"

#include "host/group.h"

namespace epyard::ep {
namespace {
thread_local std::string t_last_error;
}

ncclResult_t fail(ncclEpGroup* group, ncclResult_t code, const std::string& message) {
  t_last_error = message;
  if (group != nullptr) {
    std::lock_guard<std::mutex> lock(group->mu);
    group->last_error = message;
  }
  return code;
}

ncclResult_t failCuda(ncclEpGroup* group, const char* what, cudaError_t e) {
  return fail(group, ncclUnhandledCudaError,
              std::string(what) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

ncclResult_t failNccl(ncclEpGroup* group, const char* what, ncclResult_t r) {
  std::string msg = std::string(what) + " failed: " + ncclGetErrorString(r);
  const char* detail = group != nullptr && group->comm != nullptr ? ncclGetLastError(group->comm) : nullptr;
  if (detail != nullptr && *detail != '\0') msg += std::string(" (") + detail + ")";
  return fail(group, r, msg);
}

const char* lastError(ncclEpGroup* group) {
  if (group == nullptr) return t_last_error.c_str();
  std::lock_guard<std::mutex> lock(group->mu);
  // Copied to the thread so the pointer stays valid while other threads report errors.
  t_last_error = group->last_error;
  return t_last_error.c_str();
}

}  // namespace epyard::ep
