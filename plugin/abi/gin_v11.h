// NCCL GIN plugin ABI v11 (NCCL 2.28.7 - 2.29.x look for `ncclGinPlugin_v11` in the net
// plugin's library). GIN is the network half of NCCL's device API: in proxy mode
// (getProperties reports netDeviceType NCCL_NET_DEVICE_GIN_PROXY) NCCL's own progress thread
// takes what the GPU asked for and calls iput / iputSignal / test here. Declared from the
// order and types of NVIDIA/nccl v2.28.9-1 src/include/plugin/net/net_v11.h (read field by
// field); the offsets below pin that layout.
#pragma once

#include <stdbool.h>

#include "abi/net_v11.h"

#define NCCL_NET_MR_FLAG_FORCE_SO (1 << 0)  // a signal array: strongly ordered access
#define NCCL_NET_SIGNAL_OP_INC 0x1           // add 1 to the 64-bit signal
#define NCCL_NET_SIGNAL_OP_ADD 0x2           // add signalValue to the 64-bit signal

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char* name;
  // May be called more than once, and later communicators pass a NULL context to connect and
  // finalize: reference-counted and NULL-safe.
  ncclResult_t (*init)(void** ctx, uint64_t commId, ncclDebugLogger_t logFunction);
  ncclResult_t (*devices)(int* ndev);
  ncclResult_t (*getProperties)(int dev, ncclNetProperties_v11_t* props);
  ncclResult_t (*listen)(void* ctx, int dev, void* handle, void** listenComm);
  // Collective over nranks handles (one per rank, this one's included): a full mesh, self too.
  ncclResult_t (*connect)(void* ctx, void* handles[], int nranks, int rank, void* listenComm,
                          void** collComm);
  // Not called in proxy mode.
  ncclResult_t (*createContext)(void* collComm, int nSignals, int nCounters, void** ginCtx,
                                ncclNetDeviceHandle_v11_t** devHandle);
  // Collective registrations: every rank registers the same size in the same order.
  ncclResult_t (*regMrSym)(void* collComm, void* data, size_t size, int type, uint64_t mrFlags,
                           void** mhandle, void** ginHandle);
  ncclResult_t (*regMrSymDmaBuf)(void* collComm, void* data, size_t size, int type, uint64_t offset,
                                 int fd, uint64_t mrFlags, void** mhandle, void** ginHandle);
  ncclResult_t (*deregMrSym)(void* collComm, void* mhandle);
  ncclResult_t (*destroyContext)(void* ginCtx);  // not called in proxy mode
  ncclResult_t (*closeColl)(void* collComm);
  ncclResult_t (*closeListen)(void* listenComm);
  // srcOff: into this rank's registration; dstOff: into rank's registration of the same handle.
  ncclResult_t (*iput)(void* collComm, uint64_t srcOff, void* srcMhandle, size_t size,
                       uint64_t dstOff, void* dstMhandle, uint32_t rank, void** request);
  // The put, then the signal at (signalMhandle + signalOff) of rank, visible only after this
  // put's bytes and those of every earlier put to rank on this collComm. size 0 with NULL
  // handles: a signal alone.
  ncclResult_t (*iputSignal)(void* collComm, uint64_t srcOff, void* srcMhandle, size_t size,
                             uint64_t dstOff, void* dstMhandle, uint32_t rank, uint64_t signalOff,
                             void* signalMhandle, uint64_t signalValue, uint32_t signalOp,
                             void** request);
  // done = the source may be reused. NCCL ignores the return code: errors surface from iput*.
  ncclResult_t (*test)(void* collComm, void* request, int* done);
  ncclResult_t (*ginProgress)(void* collComm);  // optional; once per peer per proxy sweep
  ncclResult_t (*queryLastError)(void* ginCtx, bool* hasError);  // not called in proxy mode
  ncclResult_t (*finalize)(void* ctx);
} ncclGin_v11_t;

#ifdef __cplusplus
}
static_assert(offsetof(ncclGin_v11_t, connect) == 40, "ncclGin_v11_t layout changed");
static_assert(offsetof(ncclGin_v11_t, regMrSym) == 56, "ncclGin_v11_t layout changed");
static_assert(offsetof(ncclGin_v11_t, iput) == 104, "ncclGin_v11_t layout changed");
static_assert(offsetof(ncclGin_v11_t, test) == 120, "ncclGin_v11_t layout changed");
static_assert(offsetof(ncclGin_v11_t, finalize) == 144, "ncclGin_v11_t layout changed");
static_assert(sizeof(ncclGin_v11_t) == 152, "ncclGin_v11_t layout changed");
#endif
