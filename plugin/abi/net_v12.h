// NCCL net plugin ABI v12 (NCCL 2.30.3+): the properties only, which the RMA v14 table returns
// (the v12 net table itself comes with issue 17). Not a prefix of v11: the virtual-device list
// holds 8 devices, so every field after it moves; railId and planeId are new. Declared from
// NVIDIA/nccl v2.30.7-1 src/include/plugin/net/net_v12.h, field by field.
#pragma once

#include "abi/net_common.h"

#define NCCL_NET_MAX_DEVS_PER_NIC_V12 8

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int ndevs;
  int devs[NCCL_NET_MAX_DEVS_PER_NIC_V12];
} ncclNetVDeviceProps_v12_t;

typedef struct {
  char* name;
  char* pciPath;
  uint64_t guid;
  int ptrSupport;
  int regIsGlobal;
  int forceFlush;
  int speed;
  int port;
  float latency;
  int maxComms;
  int maxRecvs;
  ncclNetDeviceType netDeviceType;
  int netDeviceVersion;
  ncclNetVDeviceProps_v12_t vProps;
  size_t maxP2pBytes;
  size_t maxCollBytes;
  int maxMultiRequestSize;
  int16_t railId;
  int16_t planeId;
} ncclNetProperties_v12_t;

#ifdef __cplusplus
}
static_assert(offsetof(ncclNetProperties_v12_t, maxP2pBytes) == 104, "ncclNetProperties_v12_t layout changed");
static_assert(offsetof(ncclNetProperties_v12_t, railId) == 124, "ncclNetProperties_v12_t layout changed");
static_assert(sizeof(ncclNetProperties_v12_t) == 128, "ncclNetProperties_v12_t layout changed");
#endif
