#include "engine/params.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "engine/log.h"

namespace epyard::net {
namespace {
Params g_params;
}

bool parseIntParam(const char* text, int64_t lo, int64_t hi, int64_t* out) {
  if (text == nullptr || !((*text >= '0' && *text <= '9') || *text == '-')) return false;
  errno = 0;
  char* end = nullptr;
  long long value = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') return false;
  if (value < lo || value > hi) return false;
  *out = value;
  return true;
}

Params loadParams() {
  Params p;
#define EPY_LOAD_INT(env, field, def, lo, hi, doc)                                            \
  if (const char* text = getenv(#env)) {                                                      \
    if (!parseIntParam(text, lo, hi, &p.field)) {                                             \
      EPY_WARN("epyard: ignoring %s=\"%s\": expected an integer in [%lld, %lld]; using %lld", \
               #env, text, (long long)(lo), (long long)(hi), (long long)(def));               \
    } else {                                                                                  \
      EPY_INFO(NCCL_ENV | NCCL_INIT, "epyard: %s set by environment to %lld", #env,           \
               (long long)p.field);                                                           \
    }                                                                                         \
  }
#define EPY_LOAD_STR(env, field, def, doc) \
  if (const char* text = getenv(#env)) p.field = text;
  EPYARD_NET_INT_PARAMS(EPY_LOAD_INT)
  EPYARD_NET_STRING_PARAMS(EPY_LOAD_STR)
#undef EPY_LOAD_INT
#undef EPY_LOAD_STR
  // libfabric's own variable selects the provider too when ours is unset.
  if (p.ofi_provider.empty()) {
    if (const char* fi = getenv("FI_PROVIDER")) p.ofi_provider = fi;
  }
  return p;
}

void resolveAutoParams(Params* p, unsigned cores) {
  if (p->progress_threads < 0) p->progress_threads = cores < 16 ? 0 : std::min(8u, cores / 8);
  if (p->rails == 0) p->rails = p->progress_threads > 0 ? 8 : 1;
}

const Params& params() { return g_params; }
void setParams(const Params& p) { g_params = p; }

}  // namespace epyard::net
