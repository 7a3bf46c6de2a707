// The one implementation of the net plugin. plugin/exports.cc adapts NCCL's ncclNet_vN tables
// to these functions; nothing here knows which ABI version called.
#pragma once

#include <cstddef>
#include <cstdint>

#include "abi/net_common.h"

namespace epyard::net {

struct NetProperties {
  const char* name = nullptr;
  const char* pci_path = nullptr;
  uint64_t guid = 0;
  int ptr_support = NCCL_PTR_HOST;
  int reg_is_global = 1;
  int force_flush = 0;
  int speed_mbps = 0;
  int port = 1;
  float latency_us = 0;
  int max_comms = 0;
  int max_recvs = 0;
  size_t max_p2p_bytes = 0;
  size_t max_coll_bytes = 0;
  int max_multi_request = 1;
  int vdev_count = 0;
  int vdevs[NCCL_NET_MAX_DEVS_PER_NIC] = {};
};

ncclResult_t netInit(ncclDebugLogger_t logger);
ncclResult_t netFinalize();
ncclResult_t netDevices(int* ndev);
ncclResult_t netGetProperties(int dev, NetProperties* props);
ncclResult_t netListen(int dev, void* handle, void** listen_comm);
ncclResult_t netConnect(int dev, void* handle, void** send_comm);
ncclResult_t netAccept(void* listen_comm, void** recv_comm);
ncclResult_t netRegMr(void* comm, void* data, size_t size, int type, int dmabuf_fd,
                      uint64_t dmabuf_offset, void** mhandle);
ncclResult_t netDeregMr(void* comm, void* mhandle);
ncclResult_t netIsend(void* send_comm, void* data, size_t size, int tag, void* mhandle,
                      void** request);
ncclResult_t netIrecv(void* recv_comm, int n, void** data, const size_t* sizes, const int* tags,
                      void** mhandles, void** request);
ncclResult_t netIflush(void* recv_comm, int n, void** data, const int* sizes, void** mhandles,
                       void** request);
ncclResult_t netTest(void* request, int* done, int* sizes);
ncclResult_t netCloseSend(void* send_comm);
ncclResult_t netCloseRecv(void* recv_comm);
ncclResult_t netCloseListen(void* listen_comm);
ncclResult_t netMakeVDevice(int* dev, int ndevs, const int* devs);

// Tests only: the SendComm behind `send_comm` (nullptr when it is not one), for SendComm::setTamper.
class SendComm* sendCommForTesting(void* send_comm);
// Tests only: the RecvComm behind `recv_comm` (nullptr when it is not one), for RecvComm::setTamper.
class RecvComm* recvCommForTesting(void* recv_comm);

}  // namespace epyard::net
