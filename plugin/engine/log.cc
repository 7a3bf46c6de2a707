#include "engine/log.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>

namespace epyard::net {
namespace {
std::atomic<ncclDebugLogger_t> g_logger{nullptr};
}

void setLogger(ncclDebugLogger_t logger) { g_logger.store(logger); }

void logMessage(ncclDebugLogLevel level, unsigned long subsys, const char* file, int line,
                const char* fmt, ...) {
  char text[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(text, sizeof(text), fmt, args);
  va_end(args);
  ncclDebugLogger_t logger = g_logger.load();
  if (logger != nullptr) {
    logger(level, subsys, file, line, "%s", text);
  } else if (level == NCCL_LOG_WARN) {
    fprintf(stderr, "epyard WARN %s:%d %s\n", file, line, text);
  }
}

}  // namespace epyard::net
