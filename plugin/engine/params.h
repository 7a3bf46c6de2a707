// The plugin's one parameter registry. Every environment variable the plugin reads is listed
// here, with its default and meaning; nothing else in the plugin calls getenv. Values are read
// once, at init, validated (a bad value logs a WARN naming the variable and keeps the
// default), and copied into objects that need them on hot paths.
#pragma once

#include <cstdint>
#include <string>

namespace epyard::net {

//        name                           type     default      min  max         meaning
#define EPYARD_NET_INT_PARAMS(X)                                                           \
  X(EPYARD_NET_TIMEOUT_MS, timeout_ms, 30000, 1, 86400000,                                 \
    "A request whose peer shows no sign of life for this long fails; also bounds connect") \
  X(EPYARD_NET_RAILS, rails, 0, 0, 8,                                                      \
    "Endpoints (rails) per connection, striped; 0 = 8 with progress threads, else 1")      \
  X(EPYARD_NET_MIN_STRIPE_BYTES, min_stripe_bytes, 131072, 4096, 1073741824,               \
    "Messages smaller than this go on one rail; larger ones are split, each part >= this") \
  X(EPYARD_NET_PROGRESS_THREADS, progress_threads, -1, -1, 64,                             \
    "Threads polling rails in the background; 0 = progress inside test(); -1 = auto "      \
    "(min(8, cores/8), 0 below 16 cores)")                                                 \
  X(EPYARD_NET_MAX_COMMS, max_comms, 65536, 1, 1048576,                                    \
    "Connections per device reported to NCCL (maxComms)")

#define EPYARD_NET_STRING_PARAMS(X)                                                      \
  X(EPYARD_OFI_PROVIDER, ofi_provider, "",                                               \
    "libfabric provider to use (e.g. efa, 'tcp;ofi_rxm'); FI_PROVIDER is honoured too; " \
    "empty = efa where present, else tcp;ofi_rxm")

struct Params {
#define EPY_DECLARE_INT(env, field, def, lo, hi, doc) int64_t field = def;
#define EPY_DECLARE_STR(env, field, def, doc) std::string field = def;
  EPYARD_NET_INT_PARAMS(EPY_DECLARE_INT)
  EPYARD_NET_STRING_PARAMS(EPY_DECLARE_STR)
#undef EPY_DECLARE_INT
#undef EPY_DECLARE_STR
};

// Reads the environment into a fresh Params (WARN and default on bad values).
Params loadParams();

// The parameters the plugin was initialised with (loadParams() at the first init).
const Params& params();
void setParams(const Params& p);

// Resolves the "auto" values (-1 threads, 0 rails) for a machine with `cores` CPUs.
void resolveAutoParams(Params* p, unsigned cores);

// Parses a decimal integer in [lo, hi]; false (and *out untouched) on anything else.
bool parseIntParam(const char* text, int64_t lo, int64_t hi, int64_t* out);

}  // namespace epyard::net
