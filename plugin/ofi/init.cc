// Provider discovery: which libfabric provider, which NICs, and what they can do.
#include <climits>
#include <cstdlib>
#include <cstring>
#include <set>

#include "engine/log.h"
#include "ofi/ofi.h"

namespace epyard::net::ofi {
namespace {

constexpr uint64_t kCaps = FI_MSG | FI_RMA | FI_WRITE | FI_REMOTE_WRITE | FI_READ;

struct fi_info* makeHints(const OfiApi* api, const char* provider, uint64_t caps) {
  struct fi_info* hints = api->dupinfo(nullptr);
  if (hints == nullptr) return nullptr;
  hints->caps = caps;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  hints->ep_attr->type = FI_EP_RDM;
  hints->domain_attr->mr_mode =
      FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_HMEM;
  hints->domain_attr->threading = FI_THREAD_SAFE;
  hints->tx_attr->msg_order = FI_ORDER_NONE;
  hints->rx_attr->msg_order = FI_ORDER_NONE;
  hints->fabric_attr->prov_name = strdup(provider);
  return hints;
}

std::string sysfsPciPath(const struct fi_info* info) {
  const struct fid_nic* nic = info->nic;
  if (nic != nullptr && nic->bus_attr != nullptr && nic->bus_attr->bus_type == FI_BUS_PCI) {
    const auto& pci = nic->bus_attr->attr.pci;
    char path[128];
    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%04x:%02x:%02x.%x", pci.domain_id,
             pci.bus_id, pci.device_id, pci.function_id);
    char resolved[PATH_MAX];
    if (realpath(path, resolved) != nullptr) return resolved;
  }
  if (nic != nullptr && nic->device_attr != nullptr && nic->device_attr->name != nullptr) {
    std::string path = std::string("/sys/class/net/") + nic->device_attr->name + "/device";
    char resolved[PATH_MAX];
    if (realpath(path.c_str(), resolved) != nullptr) return resolved;
  }
  return "";
}

}  // namespace

int queryProvider(const OfiApi* api, const char* provider, struct fi_info** list,
                  std::string* why) {
  *list = nullptr;
  int rc = -FI_ENOMEM;
  const uint64_t tries[] = {kCaps | FI_HMEM, kCaps};
  for (uint64_t caps : tries) {
    struct fi_info* hints = makeHints(api, provider, caps);
    if (hints == nullptr) {
      *why = "fi_dupinfo failed";
      return -FI_ENOMEM;
    }
    rc = api->getinfo(FI_VERSION(1, 14), nullptr, nullptr, 0, hints, list);
    api->freeinfo(hints);
    if (rc == 0 && *list != nullptr) return 0;
    if (rc == 0) rc = -FI_ENODATA;
    *list = nullptr;
  }
  *why = std::string("no usable '") + provider + "' provider (fi_getinfo: " + api->strerror(-rc) +
         ")";
  return rc;
}

NicInfo describeNic(const struct fi_info* info, int index) {
  NicInfo n;
  n.name = info->domain_attr->name ? info->domain_attr->name : "ofi";
  n.pci_path = sysfsPciPath(info);
  n.guid = (static_cast<uint64_t>(index) << 56) ^ checksumName(n.name);
  n.speed_mbps = 100000;
  if (info->nic != nullptr && info->nic->link_attr != nullptr && info->nic->link_attr->speed > 0)
    n.speed_mbps = static_cast<int>(info->nic->link_attr->speed / 1000000);
  n.ptr_support = NCCL_PTR_HOST;
  if (info->caps & FI_HMEM) n.ptr_support |= NCCL_PTR_CUDA;
  n.max_msg_bytes = info->ep_attr->max_msg_size;
  return n;
}

namespace {

// Tries one provider name; fills `out` with one NIC per distinct domain.
bool discover(const OfiApi* api, const char* provider, OfiTransport* out, std::string* why) {
  struct fi_info* list = nullptr;
  if (queryProvider(api, provider, &list, why) != 0) return false;
  // tcp lists each interface once per address family; keep the first of each domain, and
  // prefer IPv4 so both peers agree on one address format.
  std::set<std::string> seen;
  for (int pass = 0; pass < 2; ++pass) {
    for (struct fi_info* info = list; info != nullptr; info = info->next) {
      bool ipv4_like = info->addr_format != FI_SOCKADDR_IN6;
      if ((pass == 0) != ipv4_like) continue;
      std::string domain = info->domain_attr->name ? info->domain_attr->name : "";
      if (!seen.insert(domain).second) continue;
      if (info->domain_attr->cq_data_size < 4) continue;
      int index = static_cast<int>(out->nics_.size());
      auto nic = std::make_unique<OfiNic>(api, api->dupinfo(info), describeNic(info, index));
      std::string error;
      if (!nic->open(&error)) {
        EPY_INFO(NCCL_INIT | NCCL_NET, "epyard: skipping %s NIC %s: %s", provider, domain.c_str(),
                 error.c_str());
        continue;
      }
      out->nics_.push_back(std::move(nic));
    }
  }
  api->freeinfo(list);
  if (out->nics_.empty()) {
    *why = std::string("provider '") + provider + "' offers no NIC with RMA and CQ data";
    return false;
  }
  out->provider_ = provider;
  return true;
}

}  // namespace

uint64_t checksumName(const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::unique_ptr<Transport> openTransport(const std::string& provider, std::string* why) {
  const OfiApi* api = loadOfi(why);
  if (api == nullptr) return nullptr;
  auto transport = std::make_unique<OfiTransport>();
  if (!provider.empty()) {
    if (!discover(api, provider.c_str(), transport.get(), why)) return nullptr;
  } else {
    std::string efa_why;
    if (!discover(api, "efa", transport.get(), &efa_why) &&
        !discover(api, "tcp;ofi_rxm", transport.get(), why)) {
      *why = efa_why + "; " + *why;
      return nullptr;
    }
  }
  for (int i = 0; i < transport->numNics(); ++i) {
    const NicInfo& n = transport->nic(i)->info();
    EPY_INFO(NCCL_INIT | NCCL_NET, "epyard: NIC %d: %s via libfabric '%s', %d Mbps%s", i,
             n.name.c_str(), transport->provider_.c_str(), n.speed_mbps,
             (n.ptr_support & NCCL_PTR_CUDA) ? ", GPU memory (FI_HMEM)" : ", host memory only");
  }
  return transport;
}

OfiNic::OfiNic(const OfiApi* api, struct fi_info* info, NicInfo nic_info)
    : api_(api), fi_(info), info_(std::move(nic_info)) {}

OfiNic::~OfiNic() {
  if (domain_ != nullptr) fi_close(&domain_->fid);
  if (fabric_ != nullptr) fi_close(&fabric_->fid);
  if (fi_ != nullptr) api_->freeinfo(fi_);
}

bool OfiNic::open(std::string* error) {
  if (fi_ == nullptr) {
    *error = "fi_dupinfo failed";
    return false;
  }
  int rc = api_->fabric(fi_->fabric_attr, &fabric_, nullptr);
  if (rc == 0) rc = fi_domain(fabric_, fi_, &domain_, nullptr);
  if (rc != 0) {
    *error = std::string("opening fabric/domain: ") + api_->strerror(-rc);
    return false;
  }
  return true;
}

uint64_t OfiNic::targetAddress(uint64_t addr, uint64_t base) const {
  return (fi_->domain_attr->mr_mode & FI_MR_VIRT_ADDR) ? addr : addr - base;
}

std::unique_ptr<Endpoint> OfiNic::openEndpoint(std::string* error) {
  auto ep = std::make_unique<OfiEndpoint>(api_, fi_, domain_);
  if (!ep->open(error)) return nullptr;
  return ep;
}

}  // namespace epyard::net::ofi

namespace epyard::net {
std::unique_ptr<Transport> openOfiTransport(const std::string& provider, std::string* why) {
  return ofi::openTransport(provider, why);
}
}  // namespace epyard::net
