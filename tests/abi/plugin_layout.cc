// Prints the layouts of NCCL's plugin ABI structs that NCCL does not install (GIN v11 for NCCL
// 2.28.7 - 2.29.x; net v12, GIN v13 and RMA v14 for 2.30.x) and their constants:
// built once against epyard's declarations (plugin/abi/) and once against NCCL's own (its source
// tree's src/include/plugin/, -DNCCL_SOURCE_HEADERS), with the same EPYARD_ABI_* switches;
// scripts/check_abi.sh compares the two outputs.
#include <cstddef>
#include <cstdio>

#ifdef NCCL_SOURCE_HEADERS
#include "plugin/nccl_net.h"
#ifdef EPYARD_ABI_RMA_V14
#include "plugin/nccl_rma.h"
#endif
#ifdef EPYARD_ABI_GIN_V13
#include "plugin/nccl_gin.h"
#endif
#else
#include "abi/gin_v11.h"
#include "abi/gin_v13.h"
#include "abi/net_v12.h"
#include "abi/rma_v14.h"
#endif

#define FIELD(type, f) std::printf(#type ".%s %zu\n", #f, offsetof(type, f))
#define SIZE(type) std::printf("sizeof(" #type ") %zu\n", sizeof(type))
#define CONSTANT(c) std::printf(#c " %lld\n", static_cast<long long>(c))

int main() {
  CONSTANT(NCCL_NET_SIGNAL_OP_INC);
  CONSTANT(NCCL_NET_SIGNAL_OP_ADD);
  CONSTANT(NCCL_NET_MR_FLAG_FORCE_SO);
#ifdef EPYARD_ABI_GIN_V11
  FIELD(ncclGin_v11_t, name);
  FIELD(ncclGin_v11_t, init);
  FIELD(ncclGin_v11_t, devices);
  FIELD(ncclGin_v11_t, getProperties);
  FIELD(ncclGin_v11_t, listen);
  FIELD(ncclGin_v11_t, connect);
  FIELD(ncclGin_v11_t, createContext);
  FIELD(ncclGin_v11_t, regMrSym);
  FIELD(ncclGin_v11_t, regMrSymDmaBuf);
  FIELD(ncclGin_v11_t, deregMrSym);
  FIELD(ncclGin_v11_t, destroyContext);
  FIELD(ncclGin_v11_t, closeColl);
  FIELD(ncclGin_v11_t, closeListen);
  FIELD(ncclGin_v11_t, iput);
  FIELD(ncclGin_v11_t, iputSignal);
  FIELD(ncclGin_v11_t, test);
  FIELD(ncclGin_v11_t, ginProgress);
  FIELD(ncclGin_v11_t, queryLastError);
  FIELD(ncclGin_v11_t, finalize);
  SIZE(ncclGin_v11_t);
#endif
#ifdef EPYARD_ABI_NET_V12
  CONSTANT(NCCL_NET_MAX_DEVS_PER_NIC_V12);
  FIELD(ncclNetProperties_v12_t, ptrSupport);
  FIELD(ncclNetProperties_v12_t, maxRecvs);
  FIELD(ncclNetProperties_v12_t, netDeviceType);
  FIELD(ncclNetProperties_v12_t, netDeviceVersion);
  FIELD(ncclNetProperties_v12_t, vProps);
  FIELD(ncclNetProperties_v12_t, maxP2pBytes);
  FIELD(ncclNetProperties_v12_t, maxCollBytes);
  FIELD(ncclNetProperties_v12_t, maxMultiRequestSize);
  FIELD(ncclNetProperties_v12_t, railId);
  FIELD(ncclNetProperties_v12_t, planeId);
  SIZE(ncclNetProperties_v12_t);
  FIELD(ncclNetCommConfig_v12_t, trafficClass);
  FIELD(ncclNetAttr_v12_t, recvCommAttr);
  FIELD(ncclNetAttr_v12_t, op);
  FIELD(ncclNetAttr_v12_t, proto);
  SIZE(ncclNetAttr_v12_t);
  FIELD(ncclNet_v12_t, name);
  FIELD(ncclNet_v12_t, init);
  FIELD(ncclNet_v12_t, devices);
  FIELD(ncclNet_v12_t, getProperties);
  FIELD(ncclNet_v12_t, listen);
  FIELD(ncclNet_v12_t, connect);
  FIELD(ncclNet_v12_t, accept);
  FIELD(ncclNet_v12_t, regMr);
  FIELD(ncclNet_v12_t, regMrDmaBuf);
  FIELD(ncclNet_v12_t, deregMr);
  FIELD(ncclNet_v12_t, isend);
  FIELD(ncclNet_v12_t, irecv);
  FIELD(ncclNet_v12_t, iflush);
  FIELD(ncclNet_v12_t, test);
  FIELD(ncclNet_v12_t, closeSend);
  FIELD(ncclNet_v12_t, closeRecv);
  FIELD(ncclNet_v12_t, closeListen);
  FIELD(ncclNet_v12_t, getDeviceMr);
  FIELD(ncclNet_v12_t, irecvConsumed);
  FIELD(ncclNet_v12_t, makeVDevice);
  FIELD(ncclNet_v12_t, finalize);
  FIELD(ncclNet_v12_t, setNetAttr);
  SIZE(ncclNet_v12_t);
#endif
#ifdef EPYARD_ABI_RMA_V14
  CONSTANT(NCCL_NET_MR_FLAG_SIGNAL_NEVER_RESET);
  FIELD(ncclRmaConfig_v14_t, nContexts);
  FIELD(ncclRmaConfig_v14_t, trafficClass);
  FIELD(ncclRmaConfig_v14_t, rankStride);
  SIZE(ncclRmaConfig_v14_t);
  FIELD(ncclRma_v14_t, name);
  FIELD(ncclRma_v14_t, init);
  FIELD(ncclRma_v14_t, devices);
  FIELD(ncclRma_v14_t, getProperties);
  FIELD(ncclRma_v14_t, listen);
  FIELD(ncclRma_v14_t, connect);
  FIELD(ncclRma_v14_t, createContext);
  FIELD(ncclRma_v14_t, regMrSym);
  FIELD(ncclRma_v14_t, regMrSymDmaBuf);
  FIELD(ncclRma_v14_t, deregMrSym);
  FIELD(ncclRma_v14_t, destroyContext);
  FIELD(ncclRma_v14_t, closeColl);
  FIELD(ncclRma_v14_t, closeListen);
  FIELD(ncclRma_v14_t, iput);
  FIELD(ncclRma_v14_t, iputSignal);
  FIELD(ncclRma_v14_t, iget);
  FIELD(ncclRma_v14_t, iflush);
  FIELD(ncclRma_v14_t, test);
  FIELD(ncclRma_v14_t, rmaProgress);
  FIELD(ncclRma_v14_t, queryLastError);
  FIELD(ncclRma_v14_t, finalize);
  SIZE(ncclRma_v14_t);
#endif
#ifdef EPYARD_ABI_GIN_V13
  FIELD(ncclGinConfig_v13_t, nSignals);
  FIELD(ncclGinConfig_v13_t, nCounters);
  FIELD(ncclGinConfig_v13_t, nContexts);
  FIELD(ncclGinConfig_v13_t, queueDepth);
  FIELD(ncclGinConfig_v13_t, trafficClass);
  SIZE(ncclGinConfig_v13_t);
  FIELD(ncclGin_v13_t, name);
  FIELD(ncclGin_v13_t, init);
  FIELD(ncclGin_v13_t, devices);
  FIELD(ncclGin_v13_t, getProperties);
  FIELD(ncclGin_v13_t, listen);
  FIELD(ncclGin_v13_t, connect);
  FIELD(ncclGin_v13_t, createContext);
  FIELD(ncclGin_v13_t, regMrSym);
  FIELD(ncclGin_v13_t, regMrSymDmaBuf);
  FIELD(ncclGin_v13_t, deregMrSym);
  FIELD(ncclGin_v13_t, destroyContext);
  FIELD(ncclGin_v13_t, closeColl);
  FIELD(ncclGin_v13_t, closeListen);
  FIELD(ncclGin_v13_t, iput);
  FIELD(ncclGin_v13_t, iputSignal);
  FIELD(ncclGin_v13_t, iget);
  FIELD(ncclGin_v13_t, iflush);
  FIELD(ncclGin_v13_t, test);
  FIELD(ncclGin_v13_t, ginProgress);
  FIELD(ncclGin_v13_t, queryLastError);
  FIELD(ncclGin_v13_t, finalize);
  SIZE(ncclGin_v13_t);
#endif
  return 0;
}
