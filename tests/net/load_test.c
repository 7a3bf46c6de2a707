/* Loads the net plugin the way NCCL does, from plain C: dlopen, dlsym every ncclNetPlugin_vN,
 * check the name and the entries NCCL calls, then init (v11 form), devices and getProperties
 * of each device, printed. Also proves the ABI headers compile as C.
 *
 * Usage: epyard_net_load_c path/to/libnccl-net-epyard.so
 * Exit status 0 on success; otherwise 1 with the reason on stderr (2 on bad usage). */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "abi/net_common.h"
#include "abi/net_v10.h"
#include "abi/net_v11.h"
#include "abi/net_v12.h"
#include "abi/net_v8.h"
#include "abi/net_v9.h"

static const char* level_name(ncclDebugLogLevel level) {
  switch (level) {
    case NCCL_LOG_VERSION:
      return "VERSION";
    case NCCL_LOG_WARN:
      return "WARN";
    case NCCL_LOG_INFO:
      return "INFO";
    case NCCL_LOG_ABORT:
      return "ABORT";
    case NCCL_LOG_TRACE:
      return "TRACE";
    default:
      return "LOG";
  }
}

static void logger(ncclDebugLogLevel level, unsigned long flags, const char* file, int line,
                   const char* fmt, ...) {
  char text[1024];
  va_list args;
  (void)flags;
  if (level == NCCL_LOG_NONE || level == NCCL_LOG_TRACE) return;
  va_start(args, fmt);
  vsnprintf(text, sizeof(text), fmt ? fmt : "(null format)", args);
  va_end(args);
  fprintf(stderr, "epyard_net_load_c: %s %s:%d %s\n", level_name(level), file ? file : "?", line,
          text);
}

static ncclResult_t profiler(void** event_handle, int type, void* parent_handle, int64_t plugin_id,
                             void* ext_data) {
  (void)type;
  (void)parent_handle;
  (void)plugin_id;
  (void)ext_data;
  if (event_handle) *event_handle = NULL;
  return ncclSuccess;
}

static int fail(const char* fmt, ...) {
  va_list args;
  fputs("epyard_net_load_c: FAILED: ", stderr);
  va_start(args, fmt);
  vfprintf(stderr, fmt, args);
  va_end(args);
  fputc('\n', stderr);
  return 1;
}

static const void* find_table(void* lib, const char* symbol) {
  const void* table;
  dlerror();
  table = dlsym(lib, symbol);
  if (table == NULL) {
    const char* why = dlerror();
    fail("dlsym(%s): %s", symbol, why ? why : "symbol is NULL");
  }
  return table;
}

/* The entries NCCL calls unconditionally must be set; the optional ones (regMrDmaBuf,
 * getDeviceMr, irecvConsumed, makeVDevice, setNetAttr) may be NULL. */
#define REQUIRE_ENTRY(table, symbol, field) \
  if ((table)->field == NULL) return fail("%s.%s is NULL", symbol, #field)
#define REQUIRE_COMMON_ENTRIES(table, symbol)                          \
  do {                                                                 \
    if ((table)->name == NULL || strcmp((table)->name, "epyard") != 0) \
      return fail("%s.name is \"%s\", expected \"epyard\"", symbol,    \
                  (table)->name ? (table)->name : "(null)");           \
    REQUIRE_ENTRY(table, symbol, init);                                \
    REQUIRE_ENTRY(table, symbol, devices);                             \
    REQUIRE_ENTRY(table, symbol, getProperties);                       \
    REQUIRE_ENTRY(table, symbol, listen);                              \
    REQUIRE_ENTRY(table, symbol, connect);                             \
    REQUIRE_ENTRY(table, symbol, accept);                              \
    REQUIRE_ENTRY(table, symbol, regMr);                               \
    REQUIRE_ENTRY(table, symbol, deregMr);                             \
    REQUIRE_ENTRY(table, symbol, isend);                               \
    REQUIRE_ENTRY(table, symbol, irecv);                               \
    REQUIRE_ENTRY(table, symbol, iflush);                              \
    REQUIRE_ENTRY(table, symbol, test);                                \
    REQUIRE_ENTRY(table, symbol, closeSend);                           \
    REQUIRE_ENTRY(table, symbol, closeRecv);                           \
    REQUIRE_ENTRY(table, symbol, closeListen);                         \
    printf("%s: name \"%s\"\n", symbol, (table)->name);                \
  } while (0)

static void print_properties(int dev, const ncclNetProperties_v11_t* p) {
  int i;
  printf("dev %d:\n", dev);
  printf("  name                %s\n", p->name ? p->name : "(null)");
  printf("  pciPath             %s\n", p->pciPath ? p->pciPath : "(null)");
  printf("  guid                0x%llx\n", (unsigned long long)p->guid);
  printf("  ptrSupport          0x%x%s%s%s\n", p->ptrSupport,
         (p->ptrSupport & NCCL_PTR_HOST) ? " HOST" : "",
         (p->ptrSupport & NCCL_PTR_CUDA) ? " CUDA" : "",
         (p->ptrSupport & NCCL_PTR_DMABUF) ? " DMABUF" : "");
  printf("  regIsGlobal         %d\n", p->regIsGlobal);
  printf("  forceFlush          %d\n", p->forceFlush);
  printf("  speed               %d Mbps\n", p->speed);
  printf("  port                %d\n", p->port);
  printf("  latency             %.2f us\n", (double)p->latency);
  printf("  maxComms            %d\n", p->maxComms);
  printf("  maxRecvs            %d\n", p->maxRecvs);
  printf("  netDeviceType       %d\n", (int)p->netDeviceType);
  printf("  netDeviceVersion    %d\n", p->netDeviceVersion);
  printf("  vProps.ndevs        %d [", p->vProps.ndevs);
  for (i = 0; i < p->vProps.ndevs && i < NCCL_NET_MAX_DEVS_PER_NIC; ++i) {
    printf("%s%d", i ? " " : "", p->vProps.devs[i]);
  }
  printf("]\n");
  printf("  maxP2pBytes         %zu\n", p->maxP2pBytes);
  printf("  maxCollBytes        %zu\n", p->maxCollBytes);
  printf("  maxMultiRequestSize %d\n", p->maxMultiRequestSize);
}

int main(int argc, char** argv) {
  void* lib;
  const ncclNet_v8_t* v8;
  const ncclNet_v9_t* v9;
  const ncclNet_v10_t* v10;
  const ncclNet_v11_t* v11;
  const ncclNet_v12_t* v12;
  ncclNetCommConfig_v11_t config;
  void* ctx = NULL;
  int ndev = -1;
  int dev;
  int expect_none;
  ncclResult_t result;

  /* --expect-no-devices: the plugin must still load and init, and report zero devices (run
   * with a provider that does not exist: NCCL then falls back to its own transports). */
  expect_none = argc == 3 && strcmp(argv[2], "--expect-no-devices") == 0;
  if (argc != 2 && !expect_none) {
    fprintf(stderr, "usage: %s path/to/libnccl-net-epyard.so [--expect-no-devices]\n", argv[0]);
    return 2;
  }
  lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) return fail("dlopen(%s): %s", argv[1], dlerror());

  v8 = (const ncclNet_v8_t*)find_table(lib, "ncclNetPlugin_v8");
  v9 = (const ncclNet_v9_t*)find_table(lib, "ncclNetPlugin_v9");
  v10 = (const ncclNet_v10_t*)find_table(lib, "ncclNetPlugin_v10");
  v11 = (const ncclNet_v11_t*)find_table(lib, "ncclNetPlugin_v11");
  v12 = (const ncclNet_v12_t*)find_table(lib, "ncclNetPlugin_v12");
  if (v8 == NULL || v9 == NULL || v10 == NULL || v11 == NULL || v12 == NULL) return 1;
  REQUIRE_COMMON_ENTRIES(v8, "ncclNetPlugin_v8");
  REQUIRE_COMMON_ENTRIES(v9, "ncclNetPlugin_v9");
  REQUIRE_COMMON_ENTRIES(v10, "ncclNetPlugin_v10");
  REQUIRE_COMMON_ENTRIES(v11, "ncclNetPlugin_v11");
  REQUIRE_ENTRY(v11, "ncclNetPlugin_v11", finalize);
  REQUIRE_COMMON_ENTRIES(v12, "ncclNetPlugin_v12");
  REQUIRE_ENTRY(v12, "ncclNetPlugin_v12", finalize);

  printf(
      "ncclNetPlugin_v11 optional entries: regMrDmaBuf %s, getDeviceMr %s, irecvConsumed %s, "
      "makeVDevice %s, setNetAttr %s\n",
      v11->regMrDmaBuf ? "set" : "NULL", v11->getDeviceMr ? "set" : "NULL",
      v11->irecvConsumed ? "set" : "NULL", v11->makeVDevice ? "set" : "NULL",
      v11->setNetAttr ? "set" : "NULL");

  config.trafficClass = NCCL_NET_TRAFFIC_CLASS_UNDEF;
  result = v11->init(&ctx, 0x65707961726400ull, &config, logger, profiler);
  if (result != ncclSuccess) return fail("ncclNetPlugin_v11.init returned %d", (int)result);
  result = v11->devices(&ndev);
  if (result != ncclSuccess) return fail("ncclNetPlugin_v11.devices returned %d", (int)result);
  if (expect_none) {
    if (ndev != 0) return fail("expected no devices, the plugin reported %d", ndev);
    v11->finalize(ctx);
    printf("epyard_net_load_c: OK (no devices, as expected)\n");
    return 0;
  }
  if (ndev < 1) return fail("ncclNetPlugin_v11.devices reported %d devices", ndev);
  printf("%d device(s)\n", ndev);
  for (dev = 0; dev < ndev; ++dev) {
    ncclNetProperties_v11_t props;
    memset(&props, 0, sizeof(props));
    result = v11->getProperties(dev, &props);
    if (result != ncclSuccess) {
      return fail("ncclNetPlugin_v11.getProperties(%d) returned %d", dev, (int)result);
    }
    print_properties(dev, &props);
    /* A physical device names itself as its only member (NCCL reads vProps when the plugin
     * offers makeVDevice). */
    if (props.vProps.ndevs != 1 || props.vProps.devs[0] != dev)
      return fail("device %d: vProps should be {1, [%d]}, got ndevs %d", dev, dev,
                  props.vProps.ndevs);
  }
  result = v11->finalize(ctx);
  if (result != ncclSuccess) return fail("ncclNetPlugin_v11.finalize returned %d", (int)result);
  printf("epyard_net_load_c: OK\n");
  return 0;
}
