// The libfabric transport: RDM endpoints with RMA writes and remote CQ data. libfabric is
// opened with dlopen, so the plugin loads (and tells NCCL "no devices") where it is missing.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "engine/transport.h"

namespace epyard::net::ofi {

// The few real symbols of libfabric; everything else is inline through the objects' ops.
struct OfiApi {
  int (*getinfo)(uint32_t, const char*, const char*, uint64_t, const struct fi_info*,
                 struct fi_info**) = nullptr;
  void (*freeinfo)(struct fi_info*) = nullptr;
  struct fi_info* (*dupinfo)(const struct fi_info*) = nullptr;
  int (*fabric)(struct fi_fabric_attr*, struct fid_fabric**, void*) = nullptr;
  const char* (*strerror)(int) = nullptr;
  uint32_t (*version)() = nullptr;
};
// Loads libfabric.so.1 once; nullptr with *why when it cannot.
const OfiApi* loadOfi(std::string* why);
// A stable 64-bit hash of a NIC name (its GUID when the provider reports none).
uint64_t checksumName(const std::string& name);
std::unique_ptr<Transport> openTransport(const std::string& provider, std::string* why);
// fi_getinfo for `provider` with our hints, asking for FI_HMEM first (a primary capability:
// providers such as EFA offer GPU memory only when asked) and again without it for providers
// that have none (tcp). 0 and the list, or the fi_getinfo error and *why.
int queryProvider(const OfiApi* api, const char* provider, struct fi_info** list,
                  std::string* why);
// What NCCL is told about one fi_info: GPU memory (NCCL_PTR_CUDA) only when it has FI_HMEM.
NicInfo describeNic(const struct fi_info* info, int index);

class OfiNic final : public Nic {
 public:
  OfiNic(const OfiApi* api, struct fi_info* info, NicInfo nic_info);
  ~OfiNic() override;
  bool open(std::string* error);

  const NicInfo& info() const override { return info_; }
  bool registerMemory(void* addr, size_t len, int ptr_type, int dmabuf_fd, uint64_t dmabuf_offset,
                      MemoryRegistration* out, std::string* error) override;
  void deregisterMemory(MemoryRegistration* reg) override;
  std::unique_ptr<Endpoint> openEndpoint(std::string* error) override;
  uint64_t targetAddress(uint64_t addr, uint64_t base) const override;

 private:
  const OfiApi* api_;
  struct fi_info* fi_;  // owned (a duplicate)
  NicInfo info_;
  struct fid_fabric* fabric_ = nullptr;
  struct fid_domain* domain_ = nullptr;
  std::atomic<uint64_t> next_key_{1};
};

class OfiEndpoint final : public Endpoint {
 public:
  OfiEndpoint(const OfiApi* api, struct fi_info* info, struct fid_domain* domain);
  ~OfiEndpoint() override;
  bool open(std::string* error);

  bool localAddress(std::vector<uint8_t>* out) override;
  bool addPeer(const uint8_t* addr, size_t len, uint64_t* peer) override;
  PostResult postRecv(void* buf, size_t len, void* desc, OpContext* ctx) override;
  PostResult postSend(uint64_t peer, const void* buf, size_t len, void* desc,
                      OpContext* ctx) override;
  PostResult postWrite(uint64_t peer, const void* buf, size_t len, void* desc, uint64_t remote_addr,
                       uint64_t key, bool with_imm, uint32_t imm, OpContext* ctx) override;
  PostResult postRead(uint64_t peer, void* buf, size_t len, void* desc, uint64_t remote_addr, uint64_t key,
                      OpContext* ctx) override;
  int poll(Completion* out, int max) override;
  std::string peerName(uint64_t peer) override;
  std::string lastError() override { return last_error_; }

 private:
  PostResult classify(ssize_t rc, const char* what);

  const OfiApi* api_;
  struct fi_info* info_;  // borrowed from the NIC
  struct fid_domain* domain_;
  struct fid_ep* ep_ = nullptr;
  struct fid_cq* cq_ = nullptr;
  struct fid_av* av_ = nullptr;
  size_t addr_len_ = 0;  // of this endpoint's own address, hence of every peer's
  std::vector<std::vector<uint8_t>> peer_addrs_;
  std::string last_error_;
};

class OfiTransport final : public Transport {
 public:
  const char* name() const override { return "ofi"; }
  int numNics() const override { return static_cast<int>(nics_.size()); }
  Nic* nic(int index) override { return nics_[index].get(); }
  std::vector<std::unique_ptr<OfiNic>> nics_;
  std::string provider_;
};

}  // namespace epyard::net::ofi
