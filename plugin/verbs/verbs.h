// The verbs transport: RC queue pairs over libibverbs (InfiniBand and RoCE). It offers the engine
// the same endpoint model as libfabric's RDM endpoints: an endpoint has an address, reaches any
// peer by address, receives two-sided messages from anyone, and gets immediate data of RDMA
// writes as completions. Underneath, an endpoint owns one CQ, one SRQ and one RC QP per peer;
// QP numbers are exchanged over TCP by a per-process connection manager (cm.cc).
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/transport.h"
#include "verbs/loader.h"

namespace epyard::net::verbs {

struct VerbsSettings {
  int gid_index = -1;  // RoCE; -1: auto
  int traffic_class = 0;
  int service_level = 0;
  int timeout = 20;
  int retry_cnt = 7;
  bool relaxed_ordering = true;
  uint32_t cm_ipv4 = 0;  // network order
};

// An endpoint's address as a peer inserts it (fits the engine's 56-byte limit).
struct EndpointAddr {
  uint32_t magic;
  uint32_t endpoint_id;  // unique among the endpoints of its process's connection manager
  uint8_t gid[16];
  uint16_t lid;
  uint8_t port;
  uint8_t is_global;  // address by GID (RoCE) rather than LID
  uint32_t cm_ipv4;   // the connection manager, network order
  uint16_t cm_port;   // network order
  uint16_t pad;
  uint64_t secret;    // random per endpoint: its manager connects QPs only for askers who know it
};
static_assert(sizeof(EndpointAddr) <= 56, "fits a rail address of the wire (kMaxAddrBytes)");
constexpr uint32_t kEndpointAddrMagic = 0x45505642;  // "EPVB"

// What one side of a new RC connection tells the other.
struct QpInfo {
  uint32_t qpn = 0;
  uint32_t psn = 0;
};

class VerbsEndpoint;

// The process's connection manager: a thread accepting TCP connections that ask an endpoint
// of this process for a QP to the asker. Started with the first endpoint.
class ConnManager {
 public:
  static ConnManager* get(uint32_t ipv4, std::string* error);  // nullptr with *error
  uint32_t ipv4() const { return ipv4_; }
  uint16_t port() const { return port_; }
  uint32_t add(VerbsEndpoint* ep);
  void remove(uint32_t id);
  // Asks the endpoint at `to` for a QP connected to `mine` (whose QP is `local`); *remote gets
  // its QP. Bounded by timeout_ms; false with *error naming the peer.
  bool request(const EndpointAddr& to, const EndpointAddr& mine, const QpInfo& local,
               QpInfo* remote, int timeout_ms, std::string* error);

 private:
  ConnManager() = default;
  bool start(uint32_t ipv4, std::string* error);
  void serve();
  void answer(int fd);

  // Askers answered at once, each on a thread of its own, so that one that connects and sends
  // nothing stalls only itself (for the 5 s read deadline); beyond that the accept loop answers
  // in turn, which slows a flood instead of spawning threads for it.
  static constexpr int kMaxConcurrentAnswers = 16;
  std::atomic<int> answering_{0};
  std::mutex mutex_;
  std::map<uint32_t, VerbsEndpoint*> endpoints_;
  uint32_t next_id_ = 1;
  uint32_t ipv4_ = 0;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
};

class VerbsNic final : public Nic {
 public:
  VerbsNic(const VerbsApi* api, struct ibv_context* ctx, int port, NicInfo info,
           const VerbsSettings& settings);
  ~VerbsNic() override;
  bool open(std::string* error);

  const NicInfo& info() const override { return info_; }
  bool registerMemory(void* addr, size_t len, int ptr_type, int dmabuf_fd, uint64_t dmabuf_offset,
                      MemoryRegistration* out, std::string* error) override;
  void deregisterMemory(MemoryRegistration* reg) override;
  std::unique_ptr<Endpoint> openEndpoint(std::string* error) override;
  uint64_t targetAddress(uint64_t addr, uint64_t /*base*/) const override { return addr; }

  const VerbsApi* api() const { return api_; }
  struct ibv_context* context() const { return ctx_; }
  struct ibv_pd* pd() const { return pd_; }
  int port() const { return port_; }
  const VerbsSettings& settings() const { return settings_; }
  // This port's address fields (LID, GID, whether to route by GID).
  void fillAddress(EndpointAddr* addr) const;
  int maxQpWr() const { return max_qp_wr_; }
  // Async events (the transport's event thread): the port went down / came back.
  void setPortDown(const std::string& why);
  void setPortUp();
  // True, with *why, while the port is down: endpoints on it fail their comms.
  bool portDown(std::string* why) const;
  bool dmabufWorks() const;
  enum ibv_mtu mtu() const { return mtu_; }

 private:
  const VerbsApi* api_;
  struct ibv_context* ctx_;  // shared by the device's ports; owned by the transport
  int port_;
  NicInfo info_;
  VerbsSettings settings_;
  struct ibv_pd* pd_ = nullptr;
  uint16_t lid_ = 0;
  union ibv_gid gid_ {};
  bool by_gid_ = false;
  int max_qp_wr_ = 1024;
  enum ibv_mtu mtu_ = IBV_MTU_1024;
  std::atomic<bool> down_{false};
  mutable std::mutex down_mutex_;
  std::string down_why_;
};

class VerbsEndpoint final : public Endpoint {
 public:
  explicit VerbsEndpoint(VerbsNic* nic);
  ~VerbsEndpoint() override;
  bool open(std::string* error);

  bool localAddress(std::vector<uint8_t>* out) override;
  bool addPeer(const uint8_t* addr, size_t len, uint64_t* peer) override;
  AddPeer addPeerStep(const uint8_t* addr, size_t len, uint64_t* peer) override;
  PostResult postRecv(void* buf, size_t len, void* desc, OpContext* ctx) override;
  PostResult postSend(uint64_t peer, const void* buf, size_t len, void* desc,
                      OpContext* ctx) override;
  PostResult postWrite(uint64_t peer, const void* buf, size_t len, void* desc, uint64_t remote_addr,
                       uint64_t key, bool with_imm, uint32_t imm, OpContext* ctx) override;
  PostResult postRead(uint64_t peer, void* buf, size_t len, void* desc, uint64_t remote_addr, uint64_t key,
                      OpContext* ctx) override;
  int poll(Completion* out, int max) override;
  std::string peerName(uint64_t peer) override;
  std::string lastError() override;

  // Connection manager side: a QP for the asker at `from`, connected to its QP `remote`.
  bool acceptPeer(const EndpointAddr& from, const QpInfo& remote, QpInfo* local, std::string* error);

  uint64_t secret() const { return secret_; }

  // Messages of two-sided sends land in bounce buffers of this size, then are copied out.
  static constexpr size_t kBounceBytes = 2048;
  static constexpr int kBounces = 128;
  // Bounds on what peers can make this endpoint hold: QPs, and messages no receive waits for
  // (connect/accept messages: a handful per connection in progress).
  static constexpr size_t kMaxPeers = 4096;
  static constexpr size_t kMaxEarlyMessages = 64;

 private:
  struct Peer {
    std::string key;  // connection manager address + endpoint id
    EndpointAddr addr;
    struct ibv_qp* qp = nullptr;
  };
  struct PostedRecv {
    void* buf;
    size_t len;
    OpContext* ctx;
  };
  static std::string keyOf(const EndpointAddr& a);
  std::string describe(const EndpointAddr& a) const;
  struct ibv_qp* createQp(std::string* error);
  bool connectQp(struct ibv_qp* qp, const EndpointAddr& to, const QpInfo& remote, uint32_t local_psn,
                 std::string* error);
  uint64_t insertPeer(const EndpointAddr& addr, struct ibv_qp* qp);
  // addPeer's parts: the address checked (false with the error set), then the blocking round
  // trip through the peer's connection manager (thread-safe; the error returned, not set).
  bool parsePeer(const uint8_t* addr, size_t len, EndpointAddr* to);
  bool connectTo(const EndpointAddr& to, uint64_t* peer, std::string* error);
  // A connectTo running on a thread of its own (addPeerStep).
  struct Reaching {
    std::thread worker;
    std::atomic<bool> done{false};
    bool ok = false;
    uint64_t peer = 0;
    std::string error;
  };
  bool postBounce(int i);
  void onMessage(int bounce, size_t length, std::vector<Completion>* ready);
  // Posts one signaled work request of `op` to `peer`'s QP (imm in host order).
  PostResult postWr(uint64_t peer, ibv_wr_opcode op, const void* buf, size_t len, void* desc,
                    uint64_t remote_addr, uint64_t key, uint32_t imm, OpContext* ctx, const char* what);
  void setError(const std::string& e);

  VerbsNic* nic_;
  const VerbsApi* api_;
  struct ibv_cq* cq_ = nullptr;
  struct ibv_srq* srq_ = nullptr;
  char* bounce_ = nullptr;
  struct ibv_mr* bounce_mr_ = nullptr;
  ConnManager* cm_ = nullptr;
  uint32_t id_ = 0;
  uint64_t secret_ = 0;

  std::mutex mutex_;  // everything below
  std::vector<Peer> peers_;
  std::map<std::string, uint64_t> peer_index_;
  std::set<uint32_t> peer_qps_;  // QPs this endpoint connected: arrivals on any other are dropped
  std::map<std::string, std::unique_ptr<Reaching>> reaching_;  // by peer key
  uint64_t dropped_ = 0;         // arrivals from unknown QPs
  std::deque<PostedRecv> posted_;          // the engine's receive buffers, oldest first
  std::deque<std::vector<uint8_t>> early_;  // messages that came before a receive was posted
  std::deque<Completion> ready_;            // completions made outside ibv_poll_cq
  std::string last_error_;
};

std::unique_ptr<Transport> openTransport(std::string* why);

class VerbsTransport final : public Transport {
 public:
  ~VerbsTransport() override;
  const char* name() const override { return "verbs"; }
  int numNics() const override { return static_cast<int>(nics_.size()); }
  Nic* nic(int index) override { return nics_[index].get(); }

  // Starts one thread per device that turns async events into NIC state (the transport then
  // lives as long as the process: the threads read its contexts).
  void watchAsyncEvents();

  const VerbsApi* api_ = nullptr;
  std::vector<struct ibv_context*> contexts_;
  std::vector<std::unique_ptr<VerbsNic>> nics_;
  bool watching_ = false;
};

}  // namespace epyard::net::verbs
