// A verbs endpoint: one CQ, one SRQ and an RC QP per peer. Two-sided messages land in the
// endpoint's bounce buffers (the SRQ cannot tell a send from an RDMA write with immediate, and
// both consume a receive), then are copied into the engine's posted receives in order; a write
// with immediate becomes a kRemoteWrite completion and its bounce buffer is reposted at once.
#include <arpa/inet.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

#include "engine/log.h"
#include "engine/params.h"
#include "engine/wire.h"
#include "verbs/verbs.h"

namespace epyard::net::verbs {
namespace {

constexpr int kCqEntries = 8192;
constexpr int kMaxSendWr = 1024;

bool isBounce(uint64_t wr_id) { return wr_id >= 1 && wr_id <= VerbsEndpoint::kBounces; }

uint32_t randomPsn() {
  static thread_local std::mt19937 rng(std::random_device{}());
  return rng() & 0xffffff;
}

}  // namespace

VerbsEndpoint::VerbsEndpoint(VerbsNic* nic) : nic_(nic), api_(nic->api()) {}

VerbsEndpoint::~VerbsEndpoint() {
  if (cm_ != nullptr && id_ != 0) cm_->remove(id_);  // no new peers from here on
  for (auto& [key, r] : reaching_) r->worker.join();  // bounded by the request's timeout
  for (Peer& p : peers_) api_->destroy_qp(p.qp);
  if (srq_ != nullptr) api_->destroy_srq(srq_);
  if (bounce_mr_ != nullptr) api_->dereg_mr(bounce_mr_);
  free(bounce_);
  if (cq_ != nullptr) api_->destroy_cq(cq_);
}

bool VerbsEndpoint::open(std::string* error) {
  cm_ = ConnManager::get(nic_->settings().cm_ipv4, error);
  if (cm_ == nullptr) return false;
  cq_ = api_->create_cq(nic_->context(), kCqEntries, nullptr, nullptr, 0);
  if (cq_ == nullptr) {
    *error = nic_->info().name + ": ibv_create_cq failed (" + strerror(errno) + ")";
    return false;
  }
  ibv_srq_init_attr sa{};
  sa.attr.max_wr = kBounces;
  sa.attr.max_sge = 1;
  srq_ = api_->create_srq(nic_->pd(), &sa);
  bounce_ = static_cast<char*>(aligned_alloc(4096, kBounces * kBounceBytes));
  if (bounce_ != nullptr) bounce_mr_ = api_->reg_mr(nic_->pd(), bounce_, kBounces * kBounceBytes, IBV_ACCESS_LOCAL_WRITE);
  if (srq_ == nullptr || bounce_mr_ == nullptr) {
    *error = nic_->info().name + (srq_ == nullptr ? ": ibv_create_srq failed" : ": registering bounce buffers failed");
    return false;
  }
  for (int i = 0; i < kBounces; ++i) {
    if (!postBounce(i)) {
      *error = nic_->info().name + ": posting to the SRQ failed";
      return false;
    }
  }
  secret_ = randomId();
  id_ = cm_->add(this);
  return true;
}

bool VerbsEndpoint::postBounce(int i) {
  ibv_sge sge{reinterpret_cast<uint64_t>(bounce_ + static_cast<size_t>(i) * kBounceBytes),
              static_cast<uint32_t>(kBounceBytes), bounce_mr_->lkey};
  ibv_recv_wr wr{}, *bad = nullptr;
  wr.wr_id = static_cast<uint64_t>(i) + 1;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  return ibv_post_srq_recv(srq_, &wr, &bad) == 0;
}

bool VerbsEndpoint::localAddress(std::vector<uint8_t>* out) {
  EndpointAddr a{};
  a.magic = kEndpointAddrMagic;
  a.endpoint_id = id_;
  a.secret = secret_;
  nic_->fillAddress(&a);
  a.cm_ipv4 = cm_->ipv4();
  a.cm_port = cm_->port();
  out->assign(reinterpret_cast<const uint8_t*>(&a), reinterpret_cast<const uint8_t*>(&a) + sizeof(a));
  return true;
}

std::string VerbsEndpoint::keyOf(const EndpointAddr& a) {
  return std::to_string(a.cm_ipv4) + ":" + std::to_string(a.cm_port) + "/" + std::to_string(a.endpoint_id);
}

std::string VerbsEndpoint::describe(const EndpointAddr& a) const {
  char where[INET_ADDRSTRLEN] = "?";
  in_addr ip{};
  ip.s_addr = a.cm_ipv4;
  inet_ntop(AF_INET, &ip, where, sizeof(where));
  std::string port = a.is_global ? "gid " : "lid " + std::to_string(a.lid);
  if (a.is_global) {
    char gid[40];
    inet_ntop(AF_INET6, a.gid, gid, sizeof(gid));
    port += gid;
  }
  return port + " (endpoint " + std::to_string(a.endpoint_id) + " of " + where + ":" +
         std::to_string(ntohs(a.cm_port)) + ")";
}

struct ibv_qp* VerbsEndpoint::createQp(std::string* error) {
  ibv_qp_init_attr qa{};
  qa.send_cq = cq_;
  qa.recv_cq = cq_;
  qa.srq = srq_;
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = static_cast<uint32_t>(std::min(kMaxSendWr, nic_->maxQpWr()));
  qa.cap.max_recv_wr = 1;
  qa.cap.max_send_sge = 1;
  qa.cap.max_recv_sge = 1;
  struct ibv_qp* qp = api_->create_qp(nic_->pd(), &qa);
  if (qp == nullptr) {
    *error = nic_->info().name + ": ibv_create_qp failed (" + strerror(errno) + ")";
    return nullptr;
  }
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_INIT;
  a.pkey_index = 0;
  a.port_num = static_cast<uint8_t>(nic_->port());
  a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  if (int rc = api_->modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) {
    *error = nic_->info().name + ": QP to INIT: " + strerror(rc);
    api_->destroy_qp(qp);
    return nullptr;
  }
  return qp;
}

bool VerbsEndpoint::connectQp(struct ibv_qp* qp, const EndpointAddr& to, const QpInfo& remote,
                              uint32_t local_psn, std::string* error) {
  const VerbsSettings& s = nic_->settings();
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = nic_->mtu();
  a.dest_qp_num = remote.qpn;
  a.rq_psn = remote.psn;
  a.max_dest_rd_atomic = 1;
  a.min_rnr_timer = 12;
  a.ah_attr.dlid = to.lid;
  a.ah_attr.sl = static_cast<uint8_t>(s.service_level);
  a.ah_attr.port_num = static_cast<uint8_t>(nic_->port());
  if (to.is_global) {
    a.ah_attr.is_global = 1;
    memcpy(a.ah_attr.grh.dgid.raw, to.gid, sizeof(to.gid));
    a.ah_attr.grh.sgid_index = static_cast<uint8_t>(s.gid_index);
    a.ah_attr.grh.hop_limit = 255;
    a.ah_attr.grh.traffic_class = static_cast<uint8_t>(s.traffic_class);
  }
  int rc = api_->modify_qp(qp, &a,
                           IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                               IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
  const char* step = "RTR";
  if (rc == 0) {
    a = {};
    a.qp_state = IBV_QPS_RTS;
    a.sq_psn = local_psn;
    a.timeout = static_cast<uint8_t>(s.timeout);
    a.retry_cnt = static_cast<uint8_t>(s.retry_cnt);
    a.rnr_retry = 7;  // receiver not ready: retry for ever (its bounce buffers come back)
    a.max_rd_atomic = 1;
    step = "RTS";
    rc = api_->modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                             IBV_QP_MAX_QP_RD_ATOMIC);
  }
  if (rc != 0) {
    *error = nic_->info().name + ": QP to " + step + " towards " + describe(to) + ": " + strerror(rc);
    return false;
  }
  return true;
}

uint64_t VerbsEndpoint::insertPeer(const EndpointAddr& addr, struct ibv_qp* qp) {
  std::lock_guard<std::mutex> lock(mutex_);
  Peer p;
  p.key = keyOf(addr);
  p.addr = addr;
  p.qp = qp;
  peers_.push_back(p);
  const uint64_t index = peers_.size() - 1;
  peer_qps_.insert(qp->qp_num);
  peer_index_.emplace(p.key, index);  // both sides connecting at once: the first QP names it
  return index;
}

bool VerbsEndpoint::parsePeer(const uint8_t* addr, size_t len, EndpointAddr* to) {
  if (len != sizeof(*to) || (memcpy(to, addr, sizeof(*to)), to->magic != kEndpointAddrMagic)) {
    setError("not a verbs endpoint address (" + std::to_string(len) + " bytes)");
    return false;
  }
  return true;
}

bool VerbsEndpoint::addPeer(const uint8_t* addr, size_t len, uint64_t* peer) {
  EndpointAddr to{};
  if (!parsePeer(addr, len, &to)) return false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = peer_index_.find(keyOf(to));
    if (it != peer_index_.end()) {  // it connected to us first
      *peer = it->second;
      return true;
    }
  }
  std::string error;
  if (!connectTo(to, peer, &error)) {
    setError(error);
    return false;
  }
  return true;
}

Endpoint::AddPeer VerbsEndpoint::addPeerStep(const uint8_t* addr, size_t len, uint64_t* peer) {
  EndpointAddr to{};
  if (!parsePeer(addr, len, &to)) return AddPeer::kFailed;
  const std::string key = keyOf(to);
  std::unique_ptr<Reaching> finished;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = reaching_.find(key);
    if (it == reaching_.end()) {
      auto known = peer_index_.find(key);
      if (known != peer_index_.end()) {  // connected already (it asked us first)
        *peer = known->second;
        return AddPeer::kDone;
      }
      auto r = std::make_unique<Reaching>();
      Reaching* raw = r.get();
      raw->worker = std::thread([this, to, raw] {
        raw->ok = connectTo(to, &raw->peer, &raw->error);
        raw->done.store(true, std::memory_order_release);
      });
      reaching_.emplace(key, std::move(r));
      return AddPeer::kPending;
    }
    if (!it->second->done.load(std::memory_order_acquire)) return AddPeer::kPending;
    finished = std::move(it->second);
    reaching_.erase(it);
  }
  finished->worker.join();
  if (!finished->ok) {
    setError(finished->error);
    return AddPeer::kFailed;
  }
  *peer = finished->peer;
  return AddPeer::kDone;
}

bool VerbsEndpoint::connectTo(const EndpointAddr& to, uint64_t* peer, std::string* error) {
  struct ibv_qp* qp = createQp(error);
  if (qp == nullptr) return false;
  std::vector<uint8_t> mine;
  localAddress(&mine);
  EndpointAddr me{};
  memcpy(&me, mine.data(), sizeof(me));
  const QpInfo local{qp->qp_num, randomPsn()};
  QpInfo remote;
  const int timeout_ms = static_cast<int>(std::min<int64_t>(params().timeout_ms, 30000));
  if (!cm_->request(to, me, local, &remote, timeout_ms, error) || !connectQp(qp, to, remote, local.psn, error)) {
    api_->destroy_qp(qp);
    return false;
  }
  *peer = insertPeer(to, qp);
  return true;
}

bool VerbsEndpoint::acceptPeer(const EndpointAddr& from, const QpInfo& remote, QpInfo* local,
                               std::string* error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (peers_.size() >= kMaxPeers) {
      *error = nic_->info().name + ": endpoint " + std::to_string(id_) + " already has " +
               std::to_string(kMaxPeers) + " QPs";
      return false;
    }
  }
  struct ibv_qp* qp = createQp(error);
  if (qp == nullptr) return false;
  const uint32_t psn = randomPsn();
  if (!connectQp(qp, from, remote, psn, error)) {
    api_->destroy_qp(qp);
    return false;
  }
  local->qpn = qp->qp_num;
  local->psn = psn;
  insertPeer(from, qp);
  return true;
}

std::string VerbsEndpoint::peerName(uint64_t peer) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (peer >= peers_.size()) return "unknown peer";
  return describe(peers_[peer].addr);
}

std::string VerbsEndpoint::lastError() {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

void VerbsEndpoint::setError(const std::string& e) {
  std::lock_guard<std::mutex> lock(mutex_);
  last_error_ = e;
}

PostResult VerbsEndpoint::postRecv(void* buf, size_t len, void* /*desc*/, OpContext* ctx) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (early_.empty()) {
    posted_.push_back({buf, len, ctx});
    return PostResult::kPosted;
  }
  std::vector<uint8_t> msg = std::move(early_.front());
  early_.pop_front();
  Completion c;
  c.context = ctx;
  if (msg.size() > len) {
    c.kind = Completion::Kind::kError;
    c.error = "a message of " + std::to_string(msg.size()) + " bytes arrived for a receive of " +
              std::to_string(len);
  } else {
    memcpy(buf, msg.data(), msg.size());
    c.length = msg.size();
  }
  ready_.push_back(c);
  return PostResult::kPosted;
}

void VerbsEndpoint::onMessage(int bounce, size_t length, std::vector<Completion>* ready) {
  const char* data = bounce_ + static_cast<size_t>(bounce) * kBounceBytes;
  std::lock_guard<std::mutex> lock(mutex_);
  if (posted_.empty()) {
    if (early_.size() >= kMaxEarlyMessages) {  // nobody is receiving: a peer floods us
      Completion c;
      c.kind = Completion::Kind::kError;
      c.error = std::to_string(kMaxEarlyMessages) + " messages arrived before any receive was posted";
      ready->push_back(c);
      return;
    }
    early_.emplace_back(data, data + length);
    return;
  }
  PostedRecv r = posted_.front();
  posted_.pop_front();
  Completion c;
  c.context = r.ctx;
  if (length > r.len) {
    c.kind = Completion::Kind::kError;
    c.error = "a message of " + std::to_string(length) + " bytes arrived for a receive of " +
              std::to_string(r.len);
  } else {
    memcpy(r.buf, data, length);
    c.length = length;
  }
  ready->push_back(c);
}

PostResult VerbsEndpoint::postWr(uint64_t peer, ibv_wr_opcode op, const void* buf, size_t len, void* desc,
                                 uint64_t remote_addr, uint64_t key, uint32_t imm, OpContext* ctx,
                                 const char* what) {
  struct ibv_qp* qp = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (peer < peers_.size()) qp = peers_[peer].qp;
  }
  if (qp == nullptr) {
    setError(std::string(what) + ": no peer " + std::to_string(peer));
    return PostResult::kFailed;
  }
  ibv_sge sge{reinterpret_cast<uint64_t>(buf), static_cast<uint32_t>(len),
              static_cast<uint32_t>(reinterpret_cast<uintptr_t>(desc))};
  ibv_send_wr wr{};
  wr.wr_id = reinterpret_cast<uint64_t>(ctx);
  wr.sg_list = &sge;
  wr.num_sge = len > 0 ? 1 : 0;
  wr.opcode = op;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.imm_data = htonl(imm);
  wr.wr.rdma.remote_addr = remote_addr;
  wr.wr.rdma.rkey = static_cast<uint32_t>(key);
  struct ibv_send_wr* bad = nullptr;
  const int rc = ibv_post_send(qp, &wr, &bad);
  if (rc == 0) return PostResult::kPosted;
  if (rc == ENOMEM) return PostResult::kRetry;  // send queue full
  setError(std::string(what) + ": " + strerror(rc));
  return PostResult::kFailed;
}

PostResult VerbsEndpoint::postSend(uint64_t peer, const void* buf, size_t len, void* desc,
                                   OpContext* ctx) {
  if (len > kBounceBytes) {
    setError("two-sided messages are limited to " + std::to_string(kBounceBytes) + " bytes, got " +
             std::to_string(len));
    return PostResult::kFailed;
  }
  return postWr(peer, IBV_WR_SEND, buf, len, desc, 0, 0, 0, ctx, "ibv_post_send(SEND)");
}

PostResult VerbsEndpoint::postWrite(uint64_t peer, const void* buf, size_t len, void* desc,
                                    uint64_t remote_addr, uint64_t key, bool with_imm, uint32_t imm,
                                    OpContext* ctx) {
  return with_imm ? postWr(peer, IBV_WR_RDMA_WRITE_WITH_IMM, buf, len, desc, remote_addr, key, imm, ctx,
                           "ibv_post_send(RDMA_WRITE_WITH_IMM)")
                  : postWr(peer, IBV_WR_RDMA_WRITE, buf, len, desc, remote_addr, key, 0, ctx,
                           "ibv_post_send(RDMA_WRITE)");
}

PostResult VerbsEndpoint::postRead(uint64_t peer, void* buf, size_t len, void* desc, uint64_t remote_addr,
                                   uint64_t key, OpContext* ctx) {
  return postWr(peer, IBV_WR_RDMA_READ, buf, len, desc, remote_addr, key, 0, ctx, "ibv_post_send(RDMA_READ)");
}

int VerbsEndpoint::poll(Completion* out, int max) {
  std::string down;
  if (nic_->portDown(&down)) {
    setError(down);
    return -1;
  }
  int n = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    while (n < max && !ready_.empty()) {
      out[n++] = std::move(ready_.front());
      ready_.pop_front();
    }
  }
  if (n == max) return n;
  ibv_wc wc[16];
  const int got = ibv_poll_cq(cq_, std::min(16, max - n), wc);
  if (got < 0) {
    setError(nic_->info().name + ": ibv_poll_cq failed");
    return -1;
  }
  bool from_peer[16];  // arrivals on a QP this endpoint connected (one lock for the batch)
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int i = 0; i < got; ++i) {
      from_peer[i] = !isBounce(wc[i].wr_id) || wc[i].status != IBV_WC_SUCCESS ||
                     peer_qps_.count(wc[i].qp_num) != 0;
      if (!from_peer[i] && dropped_++ == 0)
        EPY_WARN("epyard: %s: endpoint %u drops a message from QP %u, which is not one of its peers",
                 nic_->info().name.c_str(), id_, wc[i].qp_num);
    }
  }
  std::vector<Completion> messages;
  for (int i = 0; i < got; ++i) {
    const ibv_wc& w = wc[i];
    if (isBounce(w.wr_id)) {
      const int b = static_cast<int>(w.wr_id) - 1;
      if (w.status == IBV_WC_WR_FLUSH_ERR) continue;  // the QP is going away
      if (!from_peer[i]) {
        // Not a QP this endpoint connected: whatever it says is not from our peer. Dropped.
      } else if (w.status != IBV_WC_SUCCESS) {
        Completion& c = out[n++];
        c = Completion();
        c.kind = Completion::Kind::kError;
        c.error = std::string("receive failed: ") + api_->wc_status_str(w.status) + " (vendor error " +
                  std::to_string(w.vendor_err) + ")";
      } else if (w.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
        Completion& c = out[n++];
        c = Completion();
        c.kind = Completion::Kind::kRemoteWrite;
        c.imm = ntohl(w.imm_data);
      } else {
        messages.clear();
        onMessage(b, w.byte_len, &messages);
        for (Completion& c : messages) out[n++] = std::move(c);
      }
      if (!postBounce(b)) {
        setError(nic_->info().name + ": reposting a receive on the SRQ failed");
        return -1;
      }
      continue;
    }
    Completion& c = out[n++];
    c = Completion();
    c.context = reinterpret_cast<OpContext*>(w.wr_id);
    if (w.status != IBV_WC_SUCCESS) {
      c.kind = Completion::Kind::kError;
      c.error = std::string(api_->wc_status_str(w.status)) + " (vendor error " + std::to_string(w.vendor_err) + ")";
    } else {
      c.length = w.byte_len;
    }
  }
  return n;
}

}  // namespace epyard::net::verbs
