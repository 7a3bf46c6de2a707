// Connection objects of the protocol engine. A SendComm and a RecvComm each own `rails`
// endpoints to their one peer and a ControlBlock registered on every NIC; a ListenComm owns the
// endpoint connecting peers first talk to. See DESIGN.md ("Net plugin") for the protocol.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/clock.h"
#include "engine/reg_cache.h"
#include "engine/transport.h"
#include "engine/wire.h"

namespace epyard::net {

struct Device {
  std::string name;
  std::vector<Nic*> nics;    // a virtual device stripes its rails over several NICs
  std::vector<int> members;  // the physical devices it is made of (itself, when physical)
  std::unique_ptr<RegCache> cache;
};

enum class CommKind : uint32_t { kListen = 0x4c53544e, kSend = 0x53454e44, kRecv = 0x52454356 };

// Operation tags carried in OpContext::tag.
enum OpTag : uint32_t { kOpWrite = 1, kOpCtsWrite, kOpPing, kOpCtrlSend, kOpCtrlRecv, kOpFlush };

struct Rail {
  Nic* nic = nullptr;
  int nic_index = 0;
  std::unique_ptr<Endpoint> ep;
  uint64_t peer = 0;
  bool reached = false;  // `peer` is set (addPeerStep said kDone)
};

struct Request {
  static constexpr uint32_t kMagic = 0x52455153;  // "REQS"
  uint32_t magic = kMagic;
  bool in_use = false;
  bool is_send = false;
  bool is_flush = false;  // an iflush: num_writes RDMA reads, writes_done of them completed
  class Comm* comm = nullptr;
  std::string error;  // non-empty: the request failed
  // Send side.
  uint32_t slot = 0, buffer = 0;
  uint64_t size = 0;
  struct Write {
    int rail;
    const uint8_t* src;
    uint64_t len;
    void* desc;
    uint64_t remote_addr;
    uint64_t key;
    uint32_t imm;
  };
  Write writes[kMaxRails + 1];
  int num_writes = 0, writes_posted = 0, writes_done = 0;
  OpContext contexts[kMaxRails + 1];
  // Receive side.
  int count = 0;
  uint64_t posted[kMaxRecvs] = {};
  uint64_t received[kMaxRecvs] = {};
  uint32_t segments_seen[kMaxRecvs] = {};
  uint32_t segments_expected[kMaxRecvs] = {};
  bool record_seen[kMaxRecvs] = {};
  int64_t record_ns[kMaxRecvs] = {};  // when the record arrived
  bool buffer_done[kMaxRecvs] = {};
  int tags[kMaxRecvs] = {};

  bool done() const;
};

class Comm {
 public:
  Comm(CommKind kind, Device* dev) : kind_(kind), dev_(dev) {}
  virtual ~Comm();
  CommKind kind() const { return kind_; }
  Device* device() const { return dev_; }
  bool valid() const { return magic_ == kMagic; }

  // Polls every rail and hands each completion to onCompletion/onRemoteWrite.
  ncclResult_t progress();
  // The request-level wait policy: pings an idle peer, fails after EPYARD_NET_TIMEOUT_MS.
  ncclResult_t checkLiveness();
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  std::string peerName();
  // Handles completions polled from `rail` (by progress() or a progress thread).
  void dispatch(int rail, const Completion* completions, int n);
  int numRails() const { return static_cast<int>(rails_.size()); }
  Endpoint* railEndpoint(int rail) { return rails_[rail].ep.get(); }
  // Tests only (a stand-in that fails or delays posts): puts `ep` in place of rail `rail`'s
  // endpoint and returns the one it replaces. Not with progress threads running.
  std::unique_ptr<Endpoint> swapRailEndpointForTesting(int rail, std::unique_ptr<Endpoint> ep) {
    rails_[rail].ep.swap(ep);
    return ep;
  }
  // Hands the rails to the progress threads (when EPYARD_NET_PROGRESS_THREADS > 0).
  void startThreadedProgress();
  // Takes the rails back from the progress threads; call before destroying the comm (a thread
  // must never dispatch into a half-destroyed object).
  void stopThreadedProgress();
  // Progress threads: posts the writes queued for `rail` (takes the mutex itself).
  void postQueued(int rail);
  // Serialises the NCCL thread's calls with the progress threads' dispatch.
  std::mutex& mutex() { return mutex_; }

  static constexpr uint32_t kMagic = 0x434f4d4d;  // "COMM"

 protected:
  // Opens `num_rails` endpoints and registers the control block on every NIC they use.
  ncclResult_t setupRails(int num_rails, std::string* error);
  // Connect/accept: one step of reaching the peer's rail r at addrs[r], for every rail not
  // reached yet (Endpoint::addPeerStep). kPending while any is still being reached; kFailed
  // with *error naming the rail.
  Endpoint::AddPeer reachRails(const RailAddr* addrs, std::string* error);
  void fail(const std::string& why);
  virtual void onLocalCompletion(OpContext* ctx, size_t length) = 0;
  virtual void onRemoteWrite(uint32_t imm) = 0;
  // Posts queued writes of `req` in order; false when a post failed (request failed).
  bool postWrites(Request* req);
  uint64_t blockKey(int rail) const { return block_reg_[rails_[rail].nic_index].key; }
  void* blockDesc(int rail) const { return block_reg_[rails_[rail].nic_index].desc; }

  uint32_t magic_ = kMagic;
  CommKind kind_;
  Device* dev_;
  std::vector<Rail> rails_;
  ControlBlock* block_ = nullptr;
  std::vector<MemoryRegistration> block_reg_;  // per NIC of the device
  RemoteBlock peer_block_ = {};
  std::deque<Request*> unposted_;  // requests with writes still to post (provider was full)
  int64_t last_activity_ns_ = 0;
  int64_t timeout_ns_ = 0;
  OpContext ping_ctx_;
  bool ping_in_flight_ = false;
  std::string failure_;
  bool threaded_ = false;
  std::mutex mutex_;
  struct QueuedWrite {
    Request* req;
    int index;
  };
  std::vector<std::deque<QueuedWrite>> rail_queue_;  // threaded mode: writes per rail
  Request requests_[kMaxRequests];

  friend class Engine;
};

// Test seam (tests/unit/hostile_sender_test.cc): sees the writes of every message this comm
// sends, after planning and before posting, with the completion record they carry (nullptr
// for a single sized write), and may change or drop them, as a faulty or hostile sender would.
// Empty in production.
using SendTamper = std::function<void(Request* req, Record* record)>;

class SendComm final : public Comm {
 public:
  explicit SendComm(Device* dev) : Comm(CommKind::kSend, dev) {}
  void setTamper(SendTamper tamper) { tamper_ = std::move(tamper); }
  ncclResult_t isend(void* data, size_t size, int tag, RegEntry* reg, Request** out);
  // Connect state machine (see connect.cc).
  ncclResult_t connectStep(bool* done);
  ncclResult_t startConnect(const ConnectHandle& handle, int rails);

 private:
  void onLocalCompletion(OpContext* ctx, size_t length) override;
  void onRemoteWrite(uint32_t imm) override;
  ncclResult_t planWrites(Request* req, const CtsBuffer& dst, const uint8_t* src, size_t size,
                          RegEntry* reg);

  // Reach the listener, send it our message, wait for its answer, reach each rail it names.
  enum class ConnectState { kReachListener, kSendMsg, kWaitAccept, kReachRails, kConnected };
  ConnectState state_ = ConnectState::kReachListener;
  std::vector<uint8_t> listen_addr_;
  uint64_t listen_peer_ = 0;
  uint64_t conn_id_ = 0;
  int64_t connect_deadline_ns_ = 0;
  bool msg_sent_ = false, accept_received_ = false;
  size_t accept_length_ = 0;
  OpContext ctrl_send_ctx_, ctrl_recv_ctx_;
  std::string listener_name_;

  uint64_t send_seq_ = 0;  // CTS sequence the next isend consumes
  bool cts_arrived_[kMaxRequests] = {};
  CtsEntry current_ = {};  // copy of the CTS entry being consumed
  bool current_valid_ = false;
  uint32_t current_used_ = 0;  // bit per buffer already matched by an isend
  int next_rail_ = 0;          // round-robin start for single-rail messages
  SendTamper tamper_;
};

// Test seam (tests/unit/hostile_peer_test.cc): sees every clear-to-send entry this comm writes
// to its sender, before posting, and may change it as a faulty or hostile receiver would (the
// bytes written stay those of the entry as built). Empty in production.
using CtsTamper = std::function<void(CtsEntry* entry)>;

class RecvComm final : public Comm {
 public:
  explicit RecvComm(Device* dev) : Comm(CommKind::kRecv, dev) {}
  void setTamper(CtsTamper tamper) { tamper_ = std::move(tamper); }
  ncclResult_t irecv(int n, void** data, const size_t* sizes, const int* tags, RegEntry** regs,
                     Request** out);
  // After a receive into GPU memory on a NIC that needs it (or always, with
  // EPYARD_NET_FORCE_FLUSH): one RDMA read of the last non-empty buffer per rail, through a
  // loopback peer, so that the data the NIC wrote is visible to the GPU once the read completes.
  // *out stays null when none is needed.
  ncclResult_t iflush(int n, void** data, const int* sizes, RegEntry** regs, Request** out);
  // Accept: sets up rails toward the sender of `msg` and posts the answer.
  ncclResult_t startAccept(const ConnectMsg& msg, int rails);
  ncclResult_t acceptStep(bool* done);
  // Why `req` can no longer complete (a record whose segments did not follow it within the
  // timeout), or "" while it still can.
  std::string missingSegments(const Request* req) const;

 private:
  void onLocalCompletion(OpContext* ctx, size_t length) override;
  void onRemoteWrite(uint32_t imm) override;
  void checkBuffer(Request* req, uint32_t buffer);
  CtsTamper tamper_;

  bool answer_posted_ = false, answer_sent_ = false;
  int64_t accept_deadline_ns_ = 0;
  std::vector<RailAddr> sender_rails_;  // the connect message's rail addresses, reached in acceptStep
  OpContext ctrl_send_ctx_;
  OpContext cts_ctx_[kMaxRequests];
  uint64_t recv_seq_ = 0;
  // Accept: each rail's endpoint as its own peer, for iflush's reads (only where a NIC needs a
  // read-back of GPU memory it wrote, or EPYARD_NET_FORCE_FLUSH is set).
  bool setupFlushPeers(std::string* error);
  std::vector<uint64_t> flush_peers_;
  Request flushes_[kMaxRequests];
  uint32_t next_flush_ = 0;
};

struct ListenBlock {
  ConnectMsg msgs[4];
};

class ListenComm final : public Comm {
 public:
  explicit ListenComm(Device* dev) : Comm(CommKind::kListen, dev) {}
  ~ListenComm() override;
  ncclResult_t listen(ConnectHandle* handle, int rails, std::string* error);
  ncclResult_t accept(RecvComm** out);

 private:
  void onLocalCompletion(OpContext* ctx, size_t length) override;
  void onRemoteWrite(uint32_t imm) override {}
  bool repost(int i);

  uint64_t listen_id_ = 0;
  int accept_rails_ = 1;  // rails offered to connecting peers
  ListenBlock* lblock_ = nullptr;
  MemoryRegistration lreg_;
  OpContext recv_ctx_[4];
  std::deque<ConnectMsg> arrived_;
  std::unique_ptr<RecvComm> accepting_;
};

}  // namespace epyard::net
