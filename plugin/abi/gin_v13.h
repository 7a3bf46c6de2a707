// NCCL GIN plugin ABI v13 (NCCL 2.30.3 looks for `ncclGinPlugin_v13`; 2.30.7 still accepts a
// proxy-type v13 in place of an RMA plugin). Against v11: a config struct to createContext, a
// context index on the data path (the first argument is the context createContext made),
// iget and iflush, v12 net properties. Declared from NVIDIA/nccl v2.30.7-1
// src/include/plugin/gin/gin_v13.h, field by field; the offsets below pin that layout.
#pragma once

#include <stdbool.h>

#include "abi/gin_v11.h"  // the signal operations and MR flags
#include "abi/net_v12.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int nSignals;
  int nCounters;
  int nContexts;
  int queueDepth;
  int trafficClass;
} ncclGinConfig_v13_t;

typedef struct {
  const char* name;
  ncclResult_t (*init)(void** ctx, uint64_t commId, ncclDebugLogger_t logFunction);
  ncclResult_t (*devices)(int* ndev);
  ncclResult_t (*getProperties)(int dev, ncclNetProperties_v12_t* props);
  ncclResult_t (*listen)(void* ctx, int dev, void* handle, void** listenComm);
  ncclResult_t (*connect)(void* ctx, void* handles[], int nranks, int rank, void* listenComm,
                          void** collComm);
  ncclResult_t (*createContext)(void* collComm, ncclGinConfig_v13_t* config, void** ginCtx,
                                ncclNetDeviceHandle_v11_t** devHandle);
  ncclResult_t (*regMrSym)(void* collComm, void* data, size_t size, int type, uint64_t mrFlags,
                           void** mhandle, void** ginHandle);
  ncclResult_t (*regMrSymDmaBuf)(void* collComm, void* data, size_t size, int type, uint64_t offset,
                                 int fd, uint64_t mrFlags, void** mhandle, void** ginHandle);
  ncclResult_t (*deregMrSym)(void* collComm, void* mhandle);
  ncclResult_t (*destroyContext)(void* ginCtx);
  ncclResult_t (*closeColl)(void* collComm);
  ncclResult_t (*closeListen)(void* listenComm);
  ncclResult_t (*iput)(void* ginCtx, int context, uint64_t srcOff, void* srcMhandle, size_t size,
                       uint64_t dstOff, void* dstMhandle, uint32_t rank, void** request);
  ncclResult_t (*iputSignal)(void* ginCtx, int context, uint64_t srcOff, void* srcMhandle,
                             size_t size, uint64_t dstOff, void* dstMhandle, uint32_t rank,
                             uint64_t signalOff, void* signalMhandle, uint64_t signalValue,
                             uint32_t signalOp, void** request);
  ncclResult_t (*iget)(void* ginCtx, int context, uint64_t remoteOff, void* remoteMhandle,
                       size_t size, uint64_t localOff, void* localMhandle, uint32_t rank,
                       void** request);
  ncclResult_t (*iflush)(void* ginCtx, int context, void* mhandle, uint32_t rank, void** request);
  ncclResult_t (*test)(void* collComm, void* request, int* done);
  ncclResult_t (*ginProgress)(void* ginCtx);  // optional
  ncclResult_t (*queryLastError)(void* ginCtx, bool* hasError);
  ncclResult_t (*finalize)(void* ctx);
} ncclGin_v13_t;

#ifdef __cplusplus
}
static_assert(offsetof(ncclGin_v13_t, createContext) == 48, "ncclGin_v13_t layout changed");
static_assert(offsetof(ncclGin_v13_t, iput) == 104, "ncclGin_v13_t layout changed");
static_assert(offsetof(ncclGin_v13_t, finalize) == 160, "ncclGin_v13_t layout changed");
static_assert(sizeof(ncclGin_v13_t) == 168, "ncclGin_v13_t layout changed");
static_assert(sizeof(ncclGinConfig_v13_t) == 20, "ncclGinConfig_v13_t layout changed");
#endif
