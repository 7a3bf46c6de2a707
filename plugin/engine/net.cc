// Entry points of the engine: argument checks, the device table, and dispatch to comms.
#include "engine/net.h"

#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "engine/comm.h"
#include "engine/log.h"
#include "engine/params.h"
#include "engine/progress.h"

namespace epyard::net {
namespace {

// A connect in progress. The token NCCL carries back in the handle is random, and it finds the
// connect only with the handle it was started from (same listener id and checksum), so a copied
// or forged handle cannot take over another connection. `busy` while one call steps it.
struct PendingConnect {
  SendComm* comm = nullptr;
  uint64_t listen_id = 0;
  uint32_t checksum = 0;
  bool busy = false;
};

struct Engine {
  std::mutex mutex;
  bool initialized = false;
  std::unique_ptr<Transport> transport;
  std::deque<Device> devices;  // deque: makeVDevice appends without moving the others
  std::mutex pending_mutex;
  std::map<uint64_t, PendingConnect> pending;  // connects in progress, by handle token
};

Engine& engine() {
  static Engine* e = new Engine;  // never destroyed: NCCL may call us during exit
  return *e;
}

Device* deviceAt(int dev) {
  Engine& e = engine();
  std::lock_guard<std::mutex> lock(e.mutex);
  if (dev < 0 || dev >= static_cast<int>(e.devices.size())) return nullptr;
  return &e.devices[dev];
}

template <typename T>
T* asComm(void* p, CommKind kind) {
  auto* c = static_cast<T*>(p);
  if (c == nullptr || !c->valid() || c->kind() != kind) return nullptr;
  return c;
}

RegEntry* asReg(void* mhandle) {
  auto* r = static_cast<RegEntry*>(mhandle);
  return (r != nullptr && r->magic == RegEntry::kMagic) ? r : nullptr;
}

Device makeDevice(std::string name, std::vector<Nic*> nics, std::vector<int> members) {
  Device d;
  d.name = std::move(name);
  d.nics = std::move(nics);
  d.members = std::move(members);
  d.cache = std::make_unique<RegCache>(d.nics);
  return d;
}

}  // namespace

ncclResult_t netInit(ncclDebugLogger_t logger) {
  if (logger != nullptr) setLogger(logger);
  Engine& e = engine();
  std::lock_guard<std::mutex> lock(e.mutex);
  if (e.initialized) return ncclSuccess;
  Params p = loadParams();
  resolveAutoParams(&p, std::thread::hardware_concurrency());
  setParams(p);
  EPY_INFO(NCCL_INIT | NCCL_NET,
           "epyard: %lld rails per connection, %lld progress threads, "
           "stripes of >= %lld bytes",
           (long long)p.rails, (long long)p.progress_threads, (long long)p.min_stripe_bytes);
  ProgressThreads::configure(static_cast<int>(params().progress_threads));
  const std::string& choice = params().transport;
  if (choice != "auto" && choice != "verbs" && choice != "ofi") {
    EPY_WARN("epyard: EPYARD_NET_TRANSPORT=\"%s\" is not auto, verbs or ofi", choice.c_str());
    return ncclInvalidUsage;
  }
  std::string why, verbs_why;
  if (choice != "ofi") e.transport = openVerbsTransport(&verbs_why);
  if (!e.transport && choice == "verbs") {
    EPY_WARN("epyard: EPYARD_NET_TRANSPORT=verbs, but the verbs transport is unavailable: %s",
             verbs_why.c_str());
    return ncclSystemError;
  }
  if (!e.transport) {
    if (choice == "auto")
      EPY_INFO(NCCL_INIT | NCCL_NET, "epyard: no verbs transport (%s); trying libfabric", verbs_why.c_str());
    e.transport = openOfiTransport(params().ofi_provider, &why);
  } else if (params().ib_qps_per_conn > 0) {  // verbs: a rail per QP
    p.rails = params().ib_qps_per_conn;
    setParams(p);
  }
  if (!e.transport && choice == "ofi") {
    EPY_WARN("epyard: EPYARD_NET_TRANSPORT=ofi, but libfabric is unavailable: %s", why.c_str());
    return ncclSystemError;
  }
  if (!e.transport) {
    EPY_INFO(NCCL_INIT | NCCL_NET, "epyard: no network devices: %s", why.c_str());
  } else {
    EPY_INFO(NCCL_INIT | NCCL_NET, "epyard: %s transport, %d NIC(s)", e.transport->name(),
             e.transport->numNics());
    for (int i = 0; i < e.transport->numNics(); ++i) {
      Nic* nic = e.transport->nic(i);
      e.devices.push_back(makeDevice(nic->info().name, {nic}, {i}));
    }
  }
  e.initialized = true;
  return ncclSuccess;
}

ncclResult_t netFinalize() { return ncclSuccess; }

ncclResult_t netDevices(int* ndev) {
  if (ndev == nullptr) return ncclInvalidArgument;
  Engine& e = engine();
  std::lock_guard<std::mutex> lock(e.mutex);
  *ndev = static_cast<int>(e.devices.size());
  return ncclSuccess;
}

ncclResult_t netGetProperties(int dev, NetProperties* props) {
  Device* d = deviceAt(dev);
  if (d == nullptr || props == nullptr) {
    EPY_WARN("epyard: getProperties: no device %d", dev);
    return ncclInvalidArgument;
  }
  *props = NetProperties();
  const NicInfo& first = d->nics[0]->info();
  props->name = d->name.c_str();
  props->pci_path = first.pci_path.empty() ? nullptr : first.pci_path.c_str();
  props->guid = first.guid;
  props->ptr_support = first.ptr_support | NCCL_PTR_HOST;  // what every NIC of the device offers
  props->force_flush = static_cast<int>(params().force_flush);
  size_t max_msg = first.max_msg_bytes;
  int speed = 0;
  for (Nic* nic : d->nics) {
    props->ptr_support &= nic->info().ptr_support | NCCL_PTR_HOST;
    speed += nic->info().speed_mbps;
    if (nic->info().max_msg_bytes < max_msg) max_msg = nic->info().max_msg_bytes;
  }
  props->speed_mbps = speed;
  props->latency_us = first.latency_us;
  props->max_comms = static_cast<int>(params().max_comms);
  props->max_recvs = kMaxRecvs;
  // One write per rail; a message is at most rails x max_msg, capped as NCCL requires.
  size_t limit = max_msg == 0 ? (1ull << 31) : max_msg;
  if (limit > static_cast<size_t>(NCCL_MAX_NET_SIZE_BYTES)) limit = NCCL_MAX_NET_SIZE_BYTES;
  props->max_p2p_bytes = limit;
  props->max_coll_bytes = limit;
  props->max_multi_request = 1;
  props->vdev_count = static_cast<int>(d->members.size());
  for (size_t i = 0; i < d->members.size() && i < NCCL_NET_MAX_DEVS_PER_NIC; ++i)
    props->vdevs[i] = d->members[i];
  return ncclSuccess;
}

ncclResult_t netListen(int dev, void* handle, void** listen_comm) {
  if (handle == nullptr || listen_comm == nullptr) return ncclInvalidArgument;
  *listen_comm = nullptr;
  Device* d = deviceAt(dev);
  if (d == nullptr) {
    EPY_WARN("epyard: listen: no device %d", dev);
    return ncclInvalidArgument;
  }
  auto comm = std::make_unique<ListenComm>(d);
  std::string error;
  if (comm->listen(static_cast<ConnectHandle*>(handle), static_cast<int>(params().rails), &error) !=
      ncclSuccess) {
    EPY_WARN("epyard: listen on device %d (%s): %s", dev, d->name.c_str(), error.c_str());
    return ncclSystemError;
  }
  *listen_comm = comm.release();
  return ncclSuccess;
}

ncclResult_t netConnect(int dev, void* handle_ptr, void** send_comm) {
  if (handle_ptr == nullptr || send_comm == nullptr) return ncclInvalidArgument;
  *send_comm = nullptr;
  auto* handle = static_cast<ConnectHandle*>(handle_ptr);
  if (const char* bad = checkHandle(*handle)) {
    EPY_WARN("epyard: connect: %s", bad);
    return ncclInvalidArgument;
  }
  Engine& e = engine();
  SendComm* comm = nullptr;
  {
    std::lock_guard<std::mutex> lock(e.pending_mutex);
    auto it = handle->pending_token == 0 ? e.pending.end() : e.pending.find(handle->pending_token);
    if (it != e.pending.end() && it->second.listen_id == handle->listen_id &&
        it->second.checksum == handle->checksum) {
      if (it->second.busy) return ncclSuccess;  // another thread is stepping it: call again
      it->second.busy = true;
      comm = it->second.comm;
    }
  }
  if (comm == nullptr) {  // no connect of this handle in progress (a stale token is ignored)
    Device* d = deviceAt(dev);
    if (d == nullptr) {
      EPY_WARN("epyard: connect: no device %d", dev);
      return ncclInvalidArgument;
    }
    int rails = static_cast<int>(params().rails);
    if (static_cast<int>(handle->rails) < rails) rails = static_cast<int>(handle->rails);
    auto fresh = std::make_unique<SendComm>(d);
    if (fresh->startConnect(*handle, rails) != ncclSuccess) return ncclSystemError;
    comm = fresh.release();
    std::lock_guard<std::mutex> lock(e.pending_mutex);
    uint64_t token = randomId();
    while (e.pending.count(token) != 0) token = randomId();
    handle->pending_token = token;
    e.pending[token] = PendingConnect{comm, handle->listen_id, handle->checksum, true};
  }
  bool done = false;
  ncclResult_t res = comm->connectStep(&done);
  {
    std::lock_guard<std::mutex> lock(e.pending_mutex);
    if (res != ncclSuccess || done) {
      e.pending.erase(handle->pending_token);
      handle->pending_token = 0;
    } else {
      e.pending[handle->pending_token].busy = false;
    }
  }
  if (res != ncclSuccess) {
    delete comm;
    return res;
  }
  if (done) *send_comm = comm;
  return ncclSuccess;
}

ncclResult_t netAccept(void* listen_comm, void** recv_comm) {
  auto* listen = asComm<ListenComm>(listen_comm, CommKind::kListen);
  if (listen == nullptr || recv_comm == nullptr) {
    EPY_WARN("epyard: accept: not a listen comm");
    return ncclInvalidArgument;
  }
  RecvComm* comm = nullptr;
  ncclResult_t res = listen->accept(&comm);
  *recv_comm = comm;
  return res;
}

ncclResult_t netRegMr(void* comm_ptr, void* data, size_t size, int type, int dmabuf_fd,
                      uint64_t dmabuf_offset, void** mhandle) {
  auto* comm = static_cast<Comm*>(comm_ptr);
  if (comm == nullptr || !comm->valid() || mhandle == nullptr) {
    EPY_WARN("epyard: regMr: not a send or receive comm");
    return ncclInvalidArgument;
  }
  *mhandle = nullptr;
  RegEntry* entry = nullptr;
  std::string error;
  ncclResult_t res =
      comm->device()->cache->acquire(data, size, type, dmabuf_fd, dmabuf_offset, &entry, &error);
  if (res != ncclSuccess) {
    EPY_WARN("epyard: regMr(%p, %zu bytes, type %d): %s", data, size, type, error.c_str());
    return res;
  }
  *mhandle = entry;
  return ncclSuccess;
}

ncclResult_t netDeregMr(void* comm_ptr, void* mhandle) {
  auto* comm = static_cast<Comm*>(comm_ptr);
  RegEntry* entry = asReg(mhandle);
  if (comm == nullptr || !comm->valid() || entry == nullptr ||
      !comm->device()->cache->release(entry)) {
    EPY_WARN("epyard: deregMr: unknown comm or memory handle");
    return ncclInvalidArgument;
  }
  return ncclSuccess;
}

ncclResult_t netIsend(void* send_comm, void* data, size_t size, int tag, void* mhandle,
                      void** request) {
  auto* comm = asComm<SendComm>(send_comm, CommKind::kSend);
  if (comm == nullptr || request == nullptr) {
    EPY_WARN("epyard: isend: not a send comm");
    return ncclInvalidArgument;
  }
  *request = nullptr;
  RegEntry* reg = asReg(mhandle);
  if (size > 0 && (data == nullptr || reg == nullptr)) {
    EPY_WARN("epyard: isend of %zu bytes needs a buffer registered with regMr", size);
    return ncclInvalidArgument;
  }
  if (reg != nullptr && size > 0 &&
      (reinterpret_cast<uintptr_t>(data) < reg->start ||
       reinterpret_cast<uintptr_t>(data) + size > reg->end)) {
    EPY_WARN("epyard: isend buffer %p + %zu lies outside its registration", data, size);
    return ncclInvalidArgument;
  }
  Request* req = nullptr;
  std::lock_guard<std::mutex> lock(comm->mutex());
  ncclResult_t res = comm->isend(data, size, tag, reg, &req);
  if (res == ncclSystemError) res = ncclRemoteError;
  *request = req;
  return res;
}

ncclResult_t netIrecv(void* recv_comm, int n, void** data, const size_t* sizes, const int* tags,
                      void** mhandles, void** request) {
  auto* comm = asComm<RecvComm>(recv_comm, CommKind::kRecv);
  if (comm == nullptr || request == nullptr) {
    EPY_WARN("epyard: irecv: not a receive comm");
    return ncclInvalidArgument;
  }
  *request = nullptr;
  if (n < 1 || n > kMaxRecvs || data == nullptr || sizes == nullptr || tags == nullptr) {
    EPY_WARN("epyard: irecv: %d buffers requested; 1 to %d are supported", n, kMaxRecvs);
    return ncclInvalidArgument;
  }
  RegEntry* regs[kMaxRecvs];
  for (int i = 0; i < n; ++i) {
    regs[i] = mhandles != nullptr ? asReg(mhandles[i]) : nullptr;
    if (sizes[i] > 0 && (data[i] == nullptr || regs[i] == nullptr)) {
      EPY_WARN("epyard: irecv buffer %d (%zu bytes) needs a buffer registered with regMr", i,
               sizes[i]);
      return ncclInvalidArgument;
    }
  }
  Request* req = nullptr;
  std::lock_guard<std::mutex> lock(comm->mutex());
  ncclResult_t res = comm->irecv(n, data, sizes, tags, regs, &req);
  if (res == ncclSystemError) res = ncclRemoteError;
  *request = req;
  return res;
}

ncclResult_t netIflush(void* recv_comm, int n, void** data, const int* sizes, void** mhandles,
                       void** request) {
  auto* comm = asComm<RecvComm>(recv_comm, CommKind::kRecv);
  if (comm == nullptr || request == nullptr) return ncclInvalidArgument;
  *request = nullptr;
  if (n < 1 || n > kMaxRecvs || data == nullptr || sizes == nullptr || mhandles == nullptr) {
    EPY_WARN("epyard: iflush: %d buffers; 1 to %d with sizes and mhandles are expected", n, kMaxRecvs);
    return ncclInvalidArgument;
  }
  RegEntry* regs[kMaxRecvs];
  for (int i = 0; i < n; ++i) {
    regs[i] = asReg(mhandles[i]);
    if (sizes[i] > 0 && regs[i] == nullptr) {
      EPY_WARN("epyard: iflush buffer %d (%d bytes) has no registration from regMr", i, sizes[i]);
      return ncclInvalidArgument;
    }
  }
  Request* req = nullptr;
  std::lock_guard<std::mutex> lock(comm->mutex());
  ncclResult_t res = comm->iflush(n, data, sizes, regs, &req);
  *request = req;
  return res;
}

ncclResult_t netTest(void* request, int* done, int* sizes) {
  auto* req = static_cast<Request*>(request);
  if (req == nullptr || req->magic != Request::kMagic || !req->in_use || done == nullptr) {
    EPY_WARN("epyard: test: not a live request");
    return ncclInvalidArgument;
  }
  *done = 0;
  Comm* comm = req->comm;
  std::lock_guard<std::mutex> lock(comm->mutex());
  // A request that completed stays completed even if the connection fails in the same poll
  // (e.g. a later keep-alive write to a peer that has finished and exited).
  const bool healthy = comm->progress() == ncclSuccess;
  if (!req->error.empty()) return req->is_send ? ncclInvalidUsage : ncclRemoteError;
  if (!healthy && !req->done()) return ncclRemoteError;
  if (!req->done()) {
    if (!req->is_send && !req->is_flush && comm->kind() == CommKind::kRecv) {
      req->error = static_cast<RecvComm*>(comm)->missingSegments(req);
      if (!req->error.empty()) {
        EPY_WARN("epyard: receive: %s", req->error.c_str());
        return ncclRemoteError;
      }
    }
    return comm->checkLiveness() == ncclSuccess ? ncclSuccess : ncclRemoteError;
  }
  if (sizes != nullptr) {
    if (req->is_send) {
      sizes[0] = static_cast<int>(req->size);
    } else {
      for (int i = 0; i < req->count; ++i) sizes[i] = static_cast<int>(req->received[i]);
    }
  }
  req->in_use = false;
  *done = 1;
  return ncclSuccess;
}

SendComm* sendCommForTesting(void* send_comm) { return asComm<SendComm>(send_comm, CommKind::kSend); }
RecvComm* recvCommForTesting(void* recv_comm) { return asComm<RecvComm>(recv_comm, CommKind::kRecv); }

ncclResult_t netCloseSend(void* send_comm) {
  auto* comm = asComm<SendComm>(send_comm, CommKind::kSend);
  if (comm == nullptr) return ncclInvalidArgument;
  comm->stopThreadedProgress();
  delete comm;
  return ncclSuccess;
}

ncclResult_t netCloseRecv(void* recv_comm) {
  auto* comm = asComm<RecvComm>(recv_comm, CommKind::kRecv);
  if (comm == nullptr) return ncclInvalidArgument;
  comm->stopThreadedProgress();
  delete comm;
  return ncclSuccess;
}

ncclResult_t netCloseListen(void* listen_comm) {
  auto* comm = asComm<ListenComm>(listen_comm, CommKind::kListen);
  if (comm == nullptr) return ncclInvalidArgument;
  delete comm;
  return ncclSuccess;
}

ncclResult_t netMakeVDevice(int* dev, int ndevs, const int* devs) {
  if (dev == nullptr || devs == nullptr || ndevs < 1 || ndevs > NCCL_NET_MAX_DEVS_PER_NIC) {
    EPY_WARN("epyard: makeVDevice: %d devices given; 1 to %d are supported", ndevs,
             NCCL_NET_MAX_DEVS_PER_NIC);
    return ncclInvalidArgument;
  }
  Engine& e = engine();
  std::lock_guard<std::mutex> lock(e.mutex);
  std::vector<Nic*> nics;
  std::vector<int> members;
  std::string name;
  for (int i = 0; i < ndevs; ++i) {
    if (devs[i] < 0 || devs[i] >= static_cast<int>(e.devices.size())) {
      EPY_WARN("epyard: makeVDevice: no device %d", devs[i]);
      return ncclInvalidArgument;
    }
    const Device& d = e.devices[devs[i]];
    for (Nic* nic : d.nics) nics.push_back(nic);
    members.insert(members.end(), d.members.begin(), d.members.end());
    name += (i ? "+" : "") + d.name;
  }
  if (members.size() > NCCL_NET_MAX_DEVS_PER_NIC) {
    EPY_WARN("epyard: makeVDevice: %zu NICs in one virtual device; at most %d", members.size(),
             NCCL_NET_MAX_DEVS_PER_NIC);
    return ncclInvalidArgument;
  }
  e.devices.push_back(makeDevice(name, nics, members));
  *dev = static_cast<int>(e.devices.size()) - 1;
  EPY_INFO(NCCL_INIT | NCCL_NET, "epyard: virtual device %d = %s", *dev, name.c_str());
  return ncclSuccess;
}

}  // namespace epyard::net
