// The interface every transport implements (libfabric in plugin/ofi, verbs in plugin/verbs).
// A transport knows nothing of NCCL's ABI or of the protocol: it opens NICs, registers memory,
// opens endpoints, posts sends/receives/RDMA writes and reports completions. The engine
// (plugin/engine) builds the protocol on top of it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "abi/net_common.h"

namespace epyard::net {

// Space at the start of every operation context that a provider may use (libfabric's
// FI_CONTEXT/FI_CONTEXT2 modes ask for this).
struct OpContext {
  alignas(16) uint8_t provider_scratch[64];
  void* owner = nullptr;  // the engine object the completion belongs to
  uint32_t tag = 0;       // engine-defined (which kind of op, which index)
};

struct Completion {
  enum class Kind { kLocal, kRemoteWrite, kError };
  Kind kind = Kind::kLocal;
  OpContext* context = nullptr;  // kLocal / kError: the context the op was posted with
  uint32_t imm = 0;              // kRemoteWrite: the immediate data
  size_t length = 0;             // kLocal receives: bytes received
  std::string error;             // kError: provider's words
};

struct NicInfo {
  std::string name;
  std::string pci_path;
  uint64_t guid = 0;
  int speed_mbps = 0;
  int port = 1;
  float latency_us = 0;
  int ptr_support = NCCL_PTR_HOST;
  size_t max_msg_bytes = 0;
  // GPU memory the NIC wrote is visible to the GPU only after a read-back (iflush): verbs with
  // GPUDirect; libfabric providers order it themselves.
  bool gpu_flush = false;
};

// A registration of one memory range with one NIC.
struct MemoryRegistration {
  void* provider_handle = nullptr;  // transport-owned
  void* desc = nullptr;             // local descriptor to pass with posted operations
  uint64_t key = 0;                 // remote key the peer writes with
};

// Outcome of posting: posted, full (try again after polling), or a failure.
enum class PostResult { kPosted, kRetry, kFailed };

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  // This endpoint's address, as a peer must insert it.
  virtual bool localAddress(std::vector<uint8_t>* out) = 0;
  // Makes a peer reachable; *peer is the handle used when posting to it.
  virtual bool addPeer(const uint8_t* addr, size_t len, uint64_t* peer) = 0;
  // addPeer without blocking, for the connect and accept state machines: kPending means the
  // peer is being reached (verbs asks its connection manager on a thread of its own); call
  // again with the same address. Transports whose addPeer is immediate use the default.
  enum class AddPeer { kDone, kPending, kFailed };
  virtual AddPeer addPeerStep(const uint8_t* addr, size_t len, uint64_t* peer) {
    return addPeer(addr, len, peer) ? AddPeer::kDone : AddPeer::kFailed;
  }
  virtual PostResult postRecv(void* buf, size_t len, void* desc, OpContext* ctx) = 0;
  virtual PostResult postSend(uint64_t peer, const void* buf, size_t len, void* desc,
                              OpContext* ctx) = 0;
  // RDMA write; when with_imm, the peer gets a kRemoteWrite completion carrying imm.
  virtual PostResult postWrite(uint64_t peer, const void* buf, size_t len, void* desc,
                               uint64_t remote_addr, uint64_t key, bool with_imm, uint32_t imm,
                               OpContext* ctx) = 0;
  // RDMA read of `len` bytes at (remote_addr, key) of `peer` into buf (iflush reads back a GPU
  // buffer through a loopback peer this way).
  virtual PostResult postRead(uint64_t peer, void* buf, size_t len, void* desc, uint64_t remote_addr,
                              uint64_t key, OpContext* ctx) = 0;
  // Reaps up to max completions; returns how many, or -1 when the endpoint itself failed.
  virtual int poll(Completion* out, int max) = 0;
  // Printable peer address, for messages.
  virtual std::string peerName(uint64_t peer) = 0;
  // Last error text of a failed post.
  virtual std::string lastError() = 0;
};

// One NIC as opened by the transport: registrations and endpoints hang off it.
class Nic {
 public:
  virtual ~Nic() = default;
  virtual const NicInfo& info() const = 0;
  virtual bool registerMemory(void* addr, size_t len, int ptr_type, int dmabuf_fd,
                              uint64_t dmabuf_offset, MemoryRegistration* out,
                              std::string* error) = 0;
  virtual void deregisterMemory(MemoryRegistration* reg) = 0;
  virtual std::unique_ptr<Endpoint> openEndpoint(std::string* error) = 0;
  // The address a peer writes to reach `addr` inside a registration starting at `base`.
  virtual uint64_t targetAddress(uint64_t addr, uint64_t base) const = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  virtual int numNics() const = 0;
  virtual Nic* nic(int index) = 0;
};

// Opens the libfabric transport; nullptr (with *why) when libfabric or a provider is missing.
std::unique_ptr<Transport> openOfiTransport(const std::string& provider, std::string* why);
// Opens the verbs transport on every active port the parameters accept; nullptr (with *why)
// when libibverbs, a device or an active port is missing.
std::unique_ptr<Transport> openVerbsTransport(std::string* why);

}  // namespace epyard::net
