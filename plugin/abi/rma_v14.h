// NCCL RMA plugin ABI v14 (NCCL 2.30.7 looks for `ncclRmaPlugin_v14`): one-sided put, put with
// signal, get and flush, on which NCCL 2.30.7 runs its own GIN proxy. Unlike GIN v11 there is
// no GIN handle out of regMrSym, the data path takes (rmaCtx, context index), and createContext
// takes a config. Declared from NVIDIA/nccl v2.30.7-1 src/include/plugin/rma/rma_v14.h, field by
// field; the offsets below pin that layout.
#pragma once

#include <stdbool.h>

#include "abi/gin_v11.h"  // the signal operations and MR flags
#include "abi/net_v12.h"

#define NCCL_NET_MR_FLAG_SIGNAL_NEVER_RESET (1 << 1)  // NCCL never resets this signal array

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int nContexts;
  int trafficClass;
  int rankStride;
} ncclRmaConfig_v14_t;

typedef struct {
  const char* name;
  ncclResult_t (*init)(void** ctx, uint64_t commId, ncclDebugLogger_t logFunction);
  ncclResult_t (*devices)(int* ndev);
  ncclResult_t (*getProperties)(int dev, ncclNetProperties_v12_t* props);
  ncclResult_t (*listen)(void* ctx, int dev, void* handle, void** listenComm);
  ncclResult_t (*connect)(void* ctx, void* handles[], int nranks, int rank, void* listenComm,
                          void** collComm);
  ncclResult_t (*createContext)(void* collComm, ncclRmaConfig_v14_t* config, void** rmaCtx);
  ncclResult_t (*regMrSym)(void* collComm, void* data, size_t size, int type, uint64_t mrFlags,
                           void** mhandle);
  ncclResult_t (*regMrSymDmaBuf)(void* collComm, void* data, size_t size, int type, uint64_t offset,
                                 int fd, uint64_t mrFlags, void** mhandle);
  ncclResult_t (*deregMrSym)(void* collComm, void* mhandle);
  ncclResult_t (*destroyContext)(void* rmaCtx);
  ncclResult_t (*closeColl)(void* collComm);
  ncclResult_t (*closeListen)(void* listenComm);
  ncclResult_t (*iput)(void* rmaCtx, int context, uint64_t srcOff, void* srcMhandle, size_t size,
                       uint64_t dstOff, void* dstMhandle, uint32_t rank, void** request);
  ncclResult_t (*iputSignal)(void* rmaCtx, int context, uint64_t srcOff, void* srcMhandle,
                             size_t size, uint64_t dstOff, void* dstMhandle, uint32_t rank,
                             uint64_t signalOff, void* signalMhandle, uint64_t signalValue,
                             uint32_t signalOp, bool isStrongSignal, void** request);
  ncclResult_t (*iget)(void* rmaCtx, int context, uint64_t remoteOff, void* remoteMhandle,
                       size_t size, uint64_t localOff, void* localMhandle, uint32_t rank,
                       void** request);
  ncclResult_t (*iflush)(void* rmaCtx, int context, void* mhandle, uint32_t rank, void** request);
  ncclResult_t (*test)(void* collComm, void* request, int* done);
  ncclResult_t (*rmaProgress)(void* rmaCtx);  // optional
  ncclResult_t (*queryLastError)(void* rmaCtx, bool* hasError);
  ncclResult_t (*finalize)(void* ctx);
} ncclRma_v14_t;

#ifdef __cplusplus
}
static_assert(offsetof(ncclRma_v14_t, createContext) == 48, "ncclRma_v14_t layout changed");
static_assert(offsetof(ncclRma_v14_t, iput) == 104, "ncclRma_v14_t layout changed");
static_assert(offsetof(ncclRma_v14_t, iget) == 120, "ncclRma_v14_t layout changed");
static_assert(offsetof(ncclRma_v14_t, finalize) == 160, "ncclRma_v14_t layout changed");
static_assert(sizeof(ncclRma_v14_t) == 168, "ncclRma_v14_t layout changed");
static_assert(sizeof(ncclRmaConfig_v14_t) == 12, "ncclRmaConfig_v14_t layout changed");
#endif
