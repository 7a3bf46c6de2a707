// The symbols NCCL looks up: ncclNetPlugin_v11 (native), v12 (NCCL 2.30.3+: v11's entries with
// v12's properties) and thin shims for v10, v9 and v8.
// Each entry goes through guard(): nothing may throw across the C ABI.
#include <exception>
#include <new>

#include "abi/net_v10.h"
#include "abi/net_v11.h"
#include "abi/net_v12.h"
#include "abi/net_v8.h"
#include "abi/net_v9.h"
#include "engine/log.h"
#include "engine/net.h"

namespace epyard::net {
namespace {

template <typename F>
ncclResult_t guard(const char* what, F&& f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    EPY_WARN("epyard: %s: out of memory", what);
    return ncclSystemError;
  } catch (const std::exception& e) {
    EPY_WARN("epyard: %s: internal error: %s", what, e.what());
    return ncclInternalError;
  } catch (...) {
    EPY_WARN("epyard: %s: internal error", what);
    return ncclInternalError;
  }
}

constexpr int16_t kNetIdUndefined = -1;  // NCCL_NET_ID_UNDEF

// One conversion for every version's properties struct: fields a version lacks are skipped.
template <typename Props>
ncclResult_t fillProperties(int dev, Props* out) {
  if (out == nullptr) return ncclInvalidArgument;
  NetProperties p;
  ncclResult_t res = netGetProperties(dev, &p);
  if (res != ncclSuccess) return res;
  *out = Props{};
  out->name = const_cast<char*>(p.name);
  out->pciPath = const_cast<char*>(p.pci_path);
  out->guid = p.guid;
  out->ptrSupport = p.ptr_support;
  out->regIsGlobal = p.reg_is_global;
  out->speed = p.speed_mbps;
  out->port = p.port;
  out->latency = p.latency_us;
  out->maxComms = p.max_comms;
  out->maxRecvs = p.max_recvs;
  out->netDeviceType = NCCL_NET_DEVICE_HOST;
  out->netDeviceVersion = NCCL_NET_DEVICE_INVALID_VERSION;
  if constexpr (!std::is_same_v<Props, ncclNetProperties_v8_t>) {
    out->forceFlush = p.force_flush;
    out->vProps.ndevs = p.vdev_count;
    for (int i = 0; i < p.vdev_count; ++i) out->vProps.devs[i] = p.vdevs[i];
    out->maxP2pBytes = p.max_p2p_bytes;
    out->maxCollBytes = p.max_coll_bytes;
  }
  if constexpr (std::is_same_v<Props, ncclNetProperties_v11_t> ||
                std::is_same_v<Props, ncclNetProperties_v12_t>) {
    out->maxMultiRequestSize = p.max_multi_request;
  }
  if constexpr (std::is_same_v<Props, ncclNetProperties_v12_t>) {
    out->railId = kNetIdUndefined;  // no rail or plane information: NCCL's topology decides
    out->planeId = kNetIdUndefined;
  }
  return ncclSuccess;
}

// Per-communicator context of the v11 ABI.
struct NetContext {
  uint64_t comm_id;
  int traffic_class;
};

// ---- v11 (native) ----
ncclResult_t v11Init(void** ctx, uint64_t comm_id, ncclNetCommConfig_v11_t* config,
                     ncclDebugLogger_t logger, ncclProfilerCallback_t) {
  return guard("init", [&] {
    if (ctx == nullptr) return ncclInvalidArgument;
    ncclResult_t res = netInit(logger);
    if (res != ncclSuccess) return res;
    *ctx = new NetContext{comm_id, config ? config->trafficClass : -1};
    return ncclSuccess;
  });
}
ncclResult_t v11Devices(int* n) {
  return guard("devices", [&] { return netDevices(n); });
}
ncclResult_t v11GetProperties(int dev, ncclNetProperties_v11_t* props) {
  return guard("getProperties", [&] { return fillProperties(dev, props); });
}
ncclResult_t v11Listen(void*, int dev, void* handle, void** listen_comm) {
  return guard("listen", [&] { return netListen(dev, handle, listen_comm); });
}
ncclResult_t v11Connect(void*, int dev, void* handle, void** send_comm,
                        ncclNetDeviceHandle_v11_t**) {
  return guard("connect", [&] { return netConnect(dev, handle, send_comm); });
}
ncclResult_t v11Accept(void* listen_comm, void** recv_comm, ncclNetDeviceHandle_v11_t**) {
  return guard("accept", [&] { return netAccept(listen_comm, recv_comm); });
}
ncclResult_t v11RegMr(void* comm, void* data, size_t size, int type, void** mhandle) {
  return guard("regMr", [&] { return netRegMr(comm, data, size, type, -1, 0, mhandle); });
}
ncclResult_t v11RegMrDmaBuf(void* comm, void* data, size_t size, int type, uint64_t offset, int fd,
                            void** mhandle) {
  return guard("regMrDmaBuf",
               [&] { return netRegMr(comm, data, size, type, fd, offset, mhandle); });
}
ncclResult_t v11DeregMr(void* comm, void* mhandle) {
  return guard("deregMr", [&] { return netDeregMr(comm, mhandle); });
}
ncclResult_t v11Isend(void* send_comm, void* data, size_t size, int tag, void* mhandle, void*,
                      void** request) {
  return guard("isend", [&] { return netIsend(send_comm, data, size, tag, mhandle, request); });
}
ncclResult_t v11Irecv(void* recv_comm, int n, void** data, size_t* sizes, int* tags,
                      void** mhandles, void**, void** request) {
  return guard("irecv",
               [&] { return netIrecv(recv_comm, n, data, sizes, tags, mhandles, request); });
}
ncclResult_t v11Iflush(void* recv_comm, int n, void** data, int* sizes, void** mhandles,
                       void** request) {
  return guard("iflush", [&] { return netIflush(recv_comm, n, data, sizes, mhandles, request); });
}
ncclResult_t v11Test(void* request, int* done, int* sizes) {
  return guard("test", [&] { return netTest(request, done, sizes); });
}
ncclResult_t v11CloseSend(void* c) {
  return guard("closeSend", [&] { return netCloseSend(c); });
}
ncclResult_t v11CloseRecv(void* c) {
  return guard("closeRecv", [&] { return netCloseRecv(c); });
}
ncclResult_t v11CloseListen(void* c) {
  return guard("closeListen", [&] { return netCloseListen(c); });
}
ncclResult_t v11GetDeviceMr(void*, void*, void**) {
  EPY_WARN("epyard: getDeviceMr: device offload is not provided by this plugin");
  return ncclInvalidUsage;
}
ncclResult_t v11IrecvConsumed(void*, int, void*) { return ncclSuccess; }
ncclResult_t v11MakeVDevice(int* d, ncclNetVDeviceProps_v11_t* props) {
  return guard("makeVDevice", [&] {
    if (props == nullptr) return ncclInvalidArgument;
    return netMakeVDevice(d, props->ndevs, props->devs);
  });
}
ncclResult_t v11Finalize(void* ctx) {
  return guard("finalize", [&] {
    delete static_cast<NetContext*>(ctx);
    return netFinalize();
  });
}
ncclResult_t v11SetNetAttr(void*, ncclNetAttr_v11_t*) { return ncclSuccess; }

// ---- v12: v11's entries but for the properties ----
ncclResult_t v12GetProperties(int dev, ncclNetProperties_v12_t* props) {
  return guard("getProperties", [&] { return fillProperties(dev, props); });
}

// ---- v10 / v9 / v8: argument shims over the v11 entries ----
ncclResult_t v10Init(ncclDebugLogger_t logger, ncclProfilerCallback_t) {
  return guard("init", [&] { return netInit(logger); });
}
ncclResult_t v8Init(ncclDebugLogger_t logger) { return v10Init(logger, nullptr); }
ncclResult_t v10Listen(int dev, void* handle, void** listen_comm) {
  return v11Listen(nullptr, dev, handle, listen_comm);
}
ncclResult_t v10Connect(int dev, ncclNetCommConfig_v10_t*, void* handle, void** send_comm,
                        ncclNetDeviceHandle_v10_t** dc) {
  return v11Connect(nullptr, dev, handle, send_comm, dc);
}
ncclResult_t v9Connect(int dev, void* handle, void** send_comm, ncclNetDeviceHandle_v9_t** dc) {
  return v11Connect(nullptr, dev, handle, send_comm, dc);
}
ncclResult_t v9Isend(void* c, void* data, size_t size, int tag, void* mh, void** req) {
  return v11Isend(c, data, size, tag, mh, nullptr, req);
}
ncclResult_t v9Irecv(void* c, int n, void** data, size_t* sizes, int* tags, void** mh, void** req) {
  return v11Irecv(c, n, data, sizes, tags, mh, nullptr, req);
}
ncclResult_t v8Isend(void* c, void* data, int size, int tag, void* mh, void** req) {
  if (size < 0) return ncclInvalidArgument;
  return v11Isend(c, data, static_cast<size_t>(size), tag, mh, nullptr, req);
}
ncclResult_t v8Irecv(void* c, int n, void** data, int* sizes, int* tags, void** mh, void** req) {
  if (n < 1 || n > 8 || sizes == nullptr) return ncclInvalidArgument;
  size_t wide[8];
  for (int i = 0; i < n; ++i) {
    if (sizes[i] < 0) return ncclInvalidArgument;
    wide[i] = static_cast<size_t>(sizes[i]);
  }
  return v11Irecv(c, n, data, wide, tags, mh, nullptr, req);
}
ncclResult_t v10GetProperties(int dev, ncclNetProperties_v10_t* props) {
  return guard("getProperties", [&] { return fillProperties(dev, props); });
}
ncclResult_t v9GetProperties(int dev, ncclNetProperties_v9_t* props) {
  return guard("getProperties", [&] { return fillProperties(dev, props); });
}
ncclResult_t v8GetProperties(int dev, ncclNetProperties_v8_t* props) {
  return guard("getProperties", [&] { return fillProperties(dev, props); });
}
template <typename VProps>
ncclResult_t makeVDeviceFrom(int* d, VProps* props) {
  return guard("makeVDevice", [&] {
    if (props == nullptr) return ncclInvalidArgument;
    return netMakeVDevice(d, props->ndevs, props->devs);
  });
}

}  // namespace
}  // namespace epyard::net

using namespace epyard::net;

#define EPY_EXPORT extern "C" __attribute__((visibility("default")))

// Designated initializers: the compiler checks every entry lands in the field it names.

// The entries v11 and v12 share (their types are the same in both versions; init, finalize and
// setNetAttr too, listed in each table to keep the fields in order).
#define V11_AND_V12_ENTRIES                                                                     \
  .listen = v11Listen, .connect = v11Connect, .accept = v11Accept, .regMr = v11RegMr,            \
  .regMrDmaBuf = v11RegMrDmaBuf, .deregMr = v11DeregMr, .isend = v11Isend, .irecv = v11Irecv,   \
  .iflush = v11Iflush, .test = v11Test, .closeSend = v11CloseSend, .closeRecv = v11CloseRecv,   \
  .closeListen = v11CloseListen, .getDeviceMr = v11GetDeviceMr,                                 \
  .irecvConsumed = v11IrecvConsumed,

EPY_EXPORT const ncclNet_v11_t ncclNetPlugin_v11 = {
    .name = "epyard",
    .init = v11Init,
    .devices = v11Devices,
    .getProperties = v11GetProperties,
    V11_AND_V12_ENTRIES
    .makeVDevice = v11MakeVDevice,
    .finalize = v11Finalize,
    .setNetAttr = v11SetNetAttr,
};

EPY_EXPORT const ncclNet_v12_t ncclNetPlugin_v12 = {
    .name = "epyard",
    .init = v11Init,
    .devices = v11Devices,
    .getProperties = v12GetProperties,
    V11_AND_V12_ENTRIES
    .makeVDevice = makeVDeviceFrom<ncclNetVDeviceProps_v12_t>,
    .finalize = v11Finalize,
    .setNetAttr = v11SetNetAttr,
};

EPY_EXPORT const ncclNet_v10_t ncclNetPlugin_v10 = {
    .name = "epyard",
    .init = v10Init,
    .devices = v11Devices,
    .getProperties = v10GetProperties,
    .listen = v10Listen,
    .connect = v10Connect,
    .accept = v11Accept,
    .regMr = v11RegMr,
    .regMrDmaBuf = v11RegMrDmaBuf,
    .deregMr = v11DeregMr,
    .isend = v11Isend,
    .irecv = v11Irecv,
    .iflush = v11Iflush,
    .test = v11Test,
    .closeSend = v11CloseSend,
    .closeRecv = v11CloseRecv,
    .closeListen = v11CloseListen,
    .getDeviceMr = v11GetDeviceMr,
    .irecvConsumed = v11IrecvConsumed,
    .makeVDevice = makeVDeviceFrom<ncclNetVDeviceProps_v10_t>,
};

EPY_EXPORT const ncclNet_v9_t ncclNetPlugin_v9 = {
    .name = "epyard",
    .init = v8Init,
    .devices = v11Devices,
    .getProperties = v9GetProperties,
    .listen = v10Listen,
    .connect = v9Connect,
    .accept = v11Accept,
    .regMr = v11RegMr,
    .regMrDmaBuf = v11RegMrDmaBuf,
    .deregMr = v11DeregMr,
    .isend = v9Isend,
    .irecv = v9Irecv,
    .iflush = v11Iflush,
    .test = v11Test,
    .closeSend = v11CloseSend,
    .closeRecv = v11CloseRecv,
    .closeListen = v11CloseListen,
    .getDeviceMr = v11GetDeviceMr,
    .irecvConsumed = v11IrecvConsumed,
    .makeVDevice = makeVDeviceFrom<ncclNetVDeviceProps_v9_t>,
};

EPY_EXPORT const ncclNet_v8_t ncclNetPlugin_v8 = {
    .name = "epyard",
    .init = v8Init,
    .devices = v11Devices,
    .getProperties = v8GetProperties,
    .listen = v10Listen,
    .connect = v9Connect,
    .accept = v11Accept,
    .regMr = v11RegMr,
    .regMrDmaBuf = v11RegMrDmaBuf,
    .deregMr = v11DeregMr,
    .isend = v8Isend,
    .irecv = v8Irecv,
    .iflush = v11Iflush,
    .test = v11Test,
    .closeSend = v11CloseSend,
    .closeRecv = v11CloseRecv,
    .closeListen = v11CloseListen,
    .getDeviceMr = v11GetDeviceMr,
    .irecvConsumed = v11IrecvConsumed,
};
