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
    "Connections per device reported to NCCL (maxComms)")                                 \
  X(EPYARD_NET_FORCE_FLUSH, force_flush, 0, 0, 1,                                          \
    "1: iflush reads back host buffers too, and NCCL is told forceFlush (tests)")          \
  X(EPYARD_IB_QPS_PER_CONN, ib_qps_per_conn, 0, 0, 8,                                      \
    "verbs: RC QPs per connection (each a rail, data striped); 0 = EPYARD_NET_RAILS")      \
  X(EPYARD_IB_GID_INDEX, ib_gid_index, -1, -1, 255,                                        \
    "verbs, RoCE: GID index; -1 = auto (the highest IPv4-mapped GID, i.e. RoCE v2, else 0)") \
  X(EPYARD_IB_TC, ib_traffic_class, 0, 0, 255, "verbs: traffic class of every QP (GRH)")   \
  X(EPYARD_IB_SL, ib_service_level, 0, 0, 15, "verbs: service level of every QP")          \
  X(EPYARD_IB_TIMEOUT, ib_timeout, 20, 1, 31,                                              \
    "verbs: ACK timeout exponent, 4.096 us x 2^value per try")                              \
  X(EPYARD_IB_RETRY_CNT, ib_retry_cnt, 7, 0, 7, "verbs: transport retries before an error") \
  X(EPYARD_IB_RELAXED_ORDERING, ib_relaxed_ordering, 1, 0, 1,                              \
    "verbs: 1 = register with relaxed PCIe ordering where libibverbs has ibv_reg_mr_iova2 " \
    "(a NIC without it ignores the flag)")

#define EPYARD_NET_STRING_PARAMS(X)                                                      \
  X(EPYARD_NET_TRANSPORT, transport, "auto",                                             \
    "auto (verbs where an active port exists, else libfabric), verbs or ofi")            \
  X(EPYARD_OFI_PROVIDER, ofi_provider, "",                                               \
    "libfabric provider to use (e.g. efa, 'tcp;ofi_rxm'); FI_PROVIDER is honoured too; " \
    "empty = efa where present, else tcp;ofi_rxm")                                       \
  X(EPYARD_IB_HCA, ib_hca, "",                                                           \
    "verbs: devices/ports to use, NCCL_IB_HCA syntax (mlx5_0:1,mlx5_1; = exact; ^ "      \
    "exclude); empty = every active port")                                               \
  X(EPYARD_IB_VERBS_LIBRARY, ib_library, "libibverbs.so.1", "verbs: the library to open") \
  X(EPYARD_IB_CM_ADDR, ib_cm_addr, "",                                                   \
    "verbs: IPv4 address on which QP numbers are exchanged (TCP); empty = the first "    \
    "non-loopback interface that is up, else 127.0.0.1")

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
