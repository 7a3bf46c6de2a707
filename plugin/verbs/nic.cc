// Opening the verbs transport (devices, ports, GIDs) and one port as a Nic: its protection
// domain and memory registrations.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "engine/log.h"
#include "engine/params.h"
#include "verbs/devices.h"
#include "verbs/verbs.h"

namespace epyard::net::verbs {
namespace {

constexpr int kAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

bool fileExists(const char* path) { return access(path, F_OK) == 0; }

// GPUDirect RDMA needs the NVIDIA peer-memory module (nvidia-peermem, or the older nv_peer_mem).
bool gpuDirectAvailable() {
  return fileExists("/sys/module/nvidia_peermem") || fileExists("/sys/kernel/mm/memory_peers/nv_mem/version");
}

// The address QP numbers are exchanged on: EPYARD_IB_CM_ADDR, else the first non-loopback IPv4
// interface that is up, else loopback.
bool cmAddress(uint32_t* out, std::string* why) {
  const std::string& text = params().ib_cm_addr;
  if (!text.empty()) {
    in_addr a{};
    if (inet_pton(AF_INET, text.c_str(), &a) != 1) {
      *why = "EPYARD_IB_CM_ADDR=\"" + text + "\" is not an IPv4 address";
      return false;
    }
    *out = a.s_addr;
    return true;
  }
  *out = htonl(INADDR_LOOPBACK);
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return true;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    if (!(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)) continue;
    *out = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
    break;
  }
  freeifaddrs(list);
  return true;
}

bool ipv4Mapped(const union ibv_gid& g) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(g.raw, prefix, sizeof(prefix)) == 0;
}

}  // namespace

VerbsNic::VerbsNic(const VerbsApi* api, struct ibv_context* ctx, int port, NicInfo info,
                   const VerbsSettings& settings)
    : api_(api), ctx_(ctx), port_(port), info_(std::move(info)), settings_(settings) {}

VerbsNic::~VerbsNic() {
  if (pd_ != nullptr) api_->dealloc_pd(pd_);
}

bool VerbsNic::open(std::string* error) {
  ibv_port_attr pa{};
  if (api_->query_port(ctx_, static_cast<uint8_t>(port_), &pa) != 0) {
    *error = info_.name + ": ibv_query_port failed";
    return false;
  }
  lid_ = pa.lid;
  mtu_ = pa.active_mtu;
  by_gid_ = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
  int index = 0;
  if (by_gid_) {
    index = settings_.gid_index;
    if (index < 0) {  // auto: the highest IPv4-mapped (RoCE v2) GID, else 0
      index = 0;
      for (int i = 0; i < pa.gid_tbl_len; ++i) {
        union ibv_gid g {};
        if (api_->query_gid(ctx_, static_cast<uint8_t>(port_), i, &g) == 0 && ipv4Mapped(g)) index = i;
      }
    }
  }
  if (api_->query_gid(ctx_, static_cast<uint8_t>(port_), index, &gid_) != 0) {
    *error = info_.name + ": no GID at index " + std::to_string(index) +
             (by_gid_ ? " (EPYARD_IB_GID_INDEX)" : "");
    return false;
  }
  settings_.gid_index = index;
  ibv_device_attr da{};
  if (api_->query_device(ctx_, &da) == 0 && da.max_qp_wr > 0) max_qp_wr_ = da.max_qp_wr;
  pd_ = api_->alloc_pd(ctx_);
  if (pd_ == nullptr) {
    *error = info_.name + ": ibv_alloc_pd failed";
    return false;
  }
  if (dmabufWorks()) info_.ptr_support |= NCCL_PTR_DMABUF;
  return true;
}

// As NCCL probes it: a DMA-BUF registration of no file fails with EBADF where the kernel and
// driver can import DMA-BUFs, with EOPNOTSUPP / EPROTONOSUPPORT where they cannot.
bool VerbsNic::dmabufWorks() const {
  if (api_->reg_dmabuf_mr == nullptr) return false;
  errno = 0;
  struct ibv_mr* mr = api_->reg_dmabuf_mr(pd_, 0, 0, 0, -1, 0);
  if (mr != nullptr) {
    api_->dereg_mr(mr);
    return true;
  }
  return errno != EOPNOTSUPP && errno != EPROTONOSUPPORT;
}

void VerbsNic::fillAddress(EndpointAddr* addr) const {
  addr->lid = lid_;
  addr->port = static_cast<uint8_t>(port_);
  addr->is_global = by_gid_ ? 1 : 0;
  memcpy(addr->gid, gid_.raw, sizeof(addr->gid));
}

bool VerbsNic::registerMemory(void* addr, size_t len, int ptr_type, int dmabuf_fd,
                              uint64_t dmabuf_offset, MemoryRegistration* out, std::string* error) {
  if ((ptr_type == NCCL_PTR_CUDA || ptr_type == NCCL_PTR_DMABUF) && !(info_.ptr_support & ptr_type)) {
    *error = info_.name + (ptr_type == NCCL_PTR_CUDA
                               ? ": GPU memory needs GPUDirect RDMA (the nvidia-peermem module), which is not loaded"
                               : ": this libibverbs cannot register DMA-BUF memory");
    return false;
  }
  struct ibv_mr* mr = nullptr;
  const bool relaxed = settings_.relaxed_ordering && api_->reg_mr_iova2 != nullptr;
  const int access = kAccess | (relaxed ? IBV_ACCESS_RELAXED_ORDERING : 0);
  if (ptr_type == NCCL_PTR_DMABUF) {
    if (api_->reg_dmabuf_mr == nullptr) {
      *error = "this libibverbs has no ibv_reg_dmabuf_mr";
      return false;
    }
    mr = api_->reg_dmabuf_mr(pd_, dmabuf_offset, len, reinterpret_cast<uint64_t>(addr), dmabuf_fd, access);
  } else if (relaxed) {
    mr = api_->reg_mr_iova2(pd_, addr, len, reinterpret_cast<uint64_t>(addr), static_cast<unsigned>(access));
  } else {
    mr = api_->reg_mr(pd_, addr, len, kAccess);
  }
  if (mr == nullptr) {
    *error = info_.name + ": registering " + std::to_string(len) + " bytes failed (" +
             strerror(errno) + ")";
    return false;
  }
  out->provider_handle = mr;
  out->desc = reinterpret_cast<void*>(static_cast<uintptr_t>(mr->lkey));
  out->key = mr->rkey;
  return true;
}

void VerbsNic::deregisterMemory(MemoryRegistration* reg) {
  if (reg->provider_handle != nullptr) api_->dereg_mr(static_cast<struct ibv_mr*>(reg->provider_handle));
  reg->provider_handle = nullptr;
}

std::unique_ptr<Endpoint> VerbsNic::openEndpoint(std::string* error) {
  auto ep = std::make_unique<VerbsEndpoint>(this);
  if (!ep->open(error)) return nullptr;
  return ep;
}

void VerbsNic::setPortDown(const std::string& why) {
  std::lock_guard<std::mutex> lock(down_mutex_);
  down_why_ = why;
  down_.store(true);
}

void VerbsNic::setPortUp() { down_.store(false); }

bool VerbsNic::portDown(std::string* why) const {
  if (!down_.load(std::memory_order_relaxed)) return false;
  std::lock_guard<std::mutex> lock(down_mutex_);
  *why = down_why_;
  return true;
}

VerbsTransport::~VerbsTransport() {
  if (watching_) return;  // event threads still read the contexts (never, in practice: see net.cc)
  nics_.clear();
  for (struct ibv_context* c : contexts_) api_->close_device(c);
}

void VerbsTransport::watchAsyncEvents() {
  watching_ = true;
  for (struct ibv_context* ctx : contexts_) {
    std::vector<VerbsNic*> nics;
    for (auto& n : nics_)
      if (n->context() == ctx) nics.push_back(n.get());
    const VerbsApi* api = api_;
    std::thread([api, ctx, nics] {
      for (;;) {
        ibv_async_event ev{};
        if (api->get_async_event(ctx, &ev) != 0) {
          if (errno == EINTR || errno == EAGAIN) continue;
          EPY_WARN("epyard: verbs: reading async events stopped (%s)", strerror(errno));
          return;
        }
        const bool port_event = ev.event_type == IBV_EVENT_PORT_ERR || ev.event_type == IBV_EVENT_PORT_ACTIVE;
        for (VerbsNic* nic : nics) {
          if (port_event && nic->port() != static_cast<int>(ev.element.port_num)) continue;
          const std::string what = std::string(api->event_type_str(ev.event_type));
          if (ev.event_type == IBV_EVENT_PORT_ACTIVE) {
            nic->setPortUp();
            EPY_INFO(NCCL_NET, "epyard: %s: %s", nic->info().name.c_str(), what.c_str());
          } else if (ev.event_type == IBV_EVENT_PORT_ERR || ev.event_type == IBV_EVENT_DEVICE_FATAL) {
            nic->setPortDown("port " + nic->info().name + " went down (" + what + ")");
            EPY_WARN("epyard: %s: %s: its connections fail", nic->info().name.c_str(), what.c_str());
          }
        }
        api->ack_async_event(&ev);
      }
    }).detach();
  }
}

std::unique_ptr<Transport> openTransport(std::string* why) {
  const Params& p = params();
  HcaFilter filter;
  if (!HcaFilter::parse(p.ib_hca, &filter, why)) {
    *why = "EPYARD_IB_HCA: " + *why;
    return nullptr;
  }
  const VerbsApi* api = loadVerbs(p.ib_library, why);
  if (api == nullptr) return nullptr;
  VerbsSettings settings;
  settings.gid_index = static_cast<int>(p.ib_gid_index);
  settings.traffic_class = static_cast<int>(p.ib_traffic_class);
  settings.service_level = static_cast<int>(p.ib_service_level);
  settings.timeout = static_cast<int>(p.ib_timeout);
  settings.retry_cnt = static_cast<int>(p.ib_retry_cnt);
  settings.relaxed_ordering = p.ib_relaxed_ordering != 0;
  if (!cmAddress(&settings.cm_ipv4, why)) return nullptr;

  auto t = std::make_unique<VerbsTransport>();
  t->api_ = api;
  int count = 0;
  struct ibv_device** list = api->get_device_list(&count);
  if (list == nullptr || count == 0) {
    if (list != nullptr) api->free_device_list(list);
    *why = "libibverbs found no RDMA devices";
    return nullptr;
  }
  const std::vector<SysfsDevice> sysfs = scanSysfs("/sys");
  std::string skipped;
  for (int d = 0; d < count; ++d) {
    const std::string name = api->get_device_name(list[d]);
    struct ibv_context* ctx = api->open_device(list[d]);
    if (ctx == nullptr) {
      skipped += " " + name + " (cannot open)";
      continue;
    }
    ibv_device_attr da{};
    if (api->query_device(ctx, &da) != 0) {
      api->close_device(ctx);
      skipped += " " + name + " (ibv_query_device failed)";
      continue;
    }
    std::string pci_path;
    for (const SysfsDevice& s : sysfs)
      if (s.name == name) pci_path = s.pci_path;
    const size_t before = t->nics_.size();
    for (int port = 1; port <= da.phys_port_cnt; ++port) {
      if (!filter.accepts(name, port)) continue;
      ibv_port_attr pa{};
      if (api->query_port(ctx, static_cast<uint8_t>(port), &pa) != 0 || pa.state != IBV_PORT_ACTIVE) {
        skipped += " " + name + ":" + std::to_string(port) + " (not active)";
        continue;
      }
      NicInfo info;
      info.name = name + ":" + std::to_string(port);
      info.pci_path = pci_path;
      info.guid = da.node_guid;
      info.port = port;
      info.speed_mbps = portSpeedMbps(pa.active_width, pa.active_speed);
      info.max_msg_bytes = pa.max_msg_sz;
      info.ptr_support = NCCL_PTR_HOST | (gpuDirectAvailable() ? NCCL_PTR_CUDA : 0);  // + DMA-BUF: open()
      info.gpu_flush = true;
      auto nic = std::make_unique<VerbsNic>(api, ctx, port, info, settings);
      std::string error;
      if (!nic->open(&error)) {
        skipped += " " + info.name + " (" + error + ")";
        continue;
      }
      t->nics_.push_back(std::move(nic));
    }
    if (t->nics_.size() == before) {
      api->close_device(ctx);
    } else {
      t->contexts_.push_back(ctx);
    }
  }
  api->free_device_list(list);
  if (t->nics_.empty()) {
    *why = "no active port" + (filter.empty() ? std::string() : " accepted by EPYARD_IB_HCA=" + p.ib_hca) +
           (skipped.empty() ? std::string() : ":" + skipped);
    return nullptr;
  }
  if (!skipped.empty()) EPY_INFO(NCCL_INIT | NCCL_NET, "epyard: verbs skipped%s", skipped.c_str());
  t->watchAsyncEvents();
  return t;
}

}  // namespace epyard::net::verbs

namespace epyard::net {
std::unique_ptr<Transport> openVerbsTransport(std::string* why) { return verbs::openTransport(why); }
}  // namespace epyard::net
