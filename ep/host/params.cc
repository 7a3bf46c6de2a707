#include "host/params.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace epyard::ep {
namespace {

int64_t readInt(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
    std::fprintf(stderr, "epyard WARN %s=\"%s\" is not an integer in [%lld, %lld]; using %lld\n",
                 name, text, static_cast<long long>(lo), static_cast<long long>(hi),
                 static_cast<long long>(fallback));
    return fallback;
  }
  return v;
}

EpParams load() {
  EpParams p;
  p.timeout_ms = readInt("EPYARD_EP_TIMEOUT_MS", p.timeout_ms, 1, 86400000);
  p.disable_nvlink = readInt("EPYARD_EP_DISABLE_NVLINK", 0, 0, 1) != 0;
  return p;
}

}  // namespace

const EpParams& epParams() {
  static const EpParams params = load();
  return params;
}

}  // namespace epyard::ep
