// Logging for the plugin: one system, through the logger NCCL hands to init(). Before init
// (or when NCCL passes none) WARN lines go to stderr and INFO/TRACE are dropped.
#pragma once

#include "abi/net_common.h"

namespace epyard::net {

void setLogger(ncclDebugLogger_t logger);
void logMessage(ncclDebugLogLevel level, unsigned long subsys, const char* file, int line,
                const char* fmt, ...) __attribute__((format(printf, 5, 6)));

}  // namespace epyard::net

#define EPY_WARN(...) \
  ::epyard::net::logMessage(NCCL_LOG_WARN, NCCL_NET, __FILE__, __LINE__, __VA_ARGS__)
#define EPY_INFO(subsys, ...) \
  ::epyard::net::logMessage(NCCL_LOG_INFO, (subsys), __FILE__, __LINE__, __VA_ARGS__)
#ifdef EPYARD_ENABLE_TRACE
#define EPY_TRACE(...) \
  ::epyard::net::logMessage(NCCL_LOG_TRACE, NCCL_NET, __FILE__, __LINE__, __VA_ARGS__)
#else
#define EPY_TRACE(...) \
  do {                 \
  } while (0)
#endif

// Propagates a failing ncclResult_t, leaving one line per level so a failure reads as a trail.
#define EPY_CHECK(call)                                                             \
  do {                                                                              \
    ncclResult_t epy_res_ = (call);                                                 \
    if (epy_res_ != ncclSuccess && epy_res_ != ncclInProgress) {                    \
      ::epyard::net::logMessage(NCCL_LOG_INFO, NCCL_NET, __FILE__, __LINE__,        \
                                "epyard: %s failed with %d", #call, (int)epy_res_); \
      return epy_res_;                                                              \
    }                                                                               \
  } while (0)
