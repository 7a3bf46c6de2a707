// Connection set-up as explicit state machines. listen() opens an endpoint and a handle;
// the connecting side sends a ConnectMsg (its rail addresses and control block) to it; the
// accepting side opens its rails and answers with an AcceptMsg from its rail 0. Neither side
// blocks: connect/accept return no comm until their machine reaches its last state.
#include <cstring>

#include "engine/comm.h"
#include "engine/log.h"
#include "engine/params.h"

namespace epyard::net {
namespace {

bool fillRailAddr(Endpoint* ep, RailAddr* out, std::string* error) {
  std::vector<uint8_t> addr;
  if (!ep->localAddress(&addr)) {
    *error = ep->lastError();
    return false;
  }
  if (addr.size() > sizeof(out->bytes)) {
    *error = "provider address of " + std::to_string(addr.size()) + " bytes is too long";
    return false;
  }
  out->len = static_cast<uint32_t>(addr.size());
  memcpy(out->bytes, addr.data(), addr.size());
  return true;
}

}  // namespace

// ---------------------------------------------------------------- listen side

ListenComm::~ListenComm() {
  accepting_.reset();
  rails_.clear();
  if (lblock_ != nullptr) {
    dev_->nics[0]->deregisterMemory(&lreg_);
    free(lblock_);
  }
}

bool ListenComm::repost(int i) {
  recv_ctx_[i].owner = this;
  recv_ctx_[i].tag = kOpCtrlRecv + (static_cast<uint32_t>(i) << 8);
  PostResult pr =
      rails_[0].ep->postRecv(&lblock_->msgs[i], sizeof(ConnectMsg), lreg_.desc, &recv_ctx_[i]);
  return pr == PostResult::kPosted;
}

ncclResult_t ListenComm::listen(ConnectHandle* handle, int rails, std::string* error) {
  accept_rails_ = rails;
  Rail rail;
  rail.nic = dev_->nics[0];
  rail.ep = rail.nic->openEndpoint(error);
  if (!rail.ep) return ncclSystemError;
  rails_.push_back(std::move(rail));
  lblock_ = static_cast<ListenBlock*>(aligned_alloc(4096, (sizeof(ListenBlock) + 4095) & ~4095ul));
  if (lblock_ == nullptr) {
    *error = "out of host memory";
    return ncclSystemError;
  }
  if (!dev_->nics[0]->registerMemory(lblock_, sizeof(ListenBlock), NCCL_PTR_HOST, -1, 0, &lreg_,
                                     error)) {
    free(lblock_);
    lblock_ = nullptr;
    return ncclSystemError;
  }
  for (int i = 0; i < 4; ++i) {
    if (!repost(i)) {
      *error = "posting a receive on the listen endpoint: " + rails_[0].ep->lastError();
      return ncclSystemError;
    }
  }
  RailAddr addr;
  if (!fillRailAddr(rails_[0].ep.get(), &addr, error)) return ncclSystemError;
  memset(handle, 0, sizeof(*handle));
  handle->addr_len = static_cast<uint16_t>(addr.len);
  memcpy(handle->addr, addr.bytes, addr.len);
  listen_id_ = randomId();
  handle->listen_id = listen_id_;
  handle->rails = static_cast<uint32_t>(rails);
  sealHandle(handle);
  return ncclSuccess;
}

void ListenComm::onLocalCompletion(OpContext* ctx, size_t length) {
  int i = static_cast<int>(ctx->tag >> 8);
  if ((ctx->tag & 0xff) != kOpCtrlRecv || i < 0 || i >= 4) return;
  const ConnectMsg& msg = lblock_->msgs[i];
  if (length < sizeof(ConnectMsg) || msg.magic != kConnectMagic || msg.version != kWireVersion ||
      msg.listen_id != listen_id_ || msg.rails == 0 || msg.rails > kMaxRails) {
    EPY_WARN("epyard: listen endpoint ignored a malformed connect message (%zu bytes)", length);
  } else {
    arrived_.push_back(msg);
  }
  if (!repost(i)) fail("reposting a receive on the listen endpoint: " + rails_[0].ep->lastError());
}

ncclResult_t ListenComm::accept(RecvComm** out) {
  *out = nullptr;
  EPY_CHECK(progress());
  if (!accepting_) {
    if (arrived_.empty()) return ncclSuccess;  // nobody has connected yet
    ConnectMsg msg = arrived_.front();
    arrived_.pop_front();
    accepting_ = std::make_unique<RecvComm>(dev_);
    int rails =
        static_cast<int>(msg.rails) < accept_rails_ ? static_cast<int>(msg.rails) : accept_rails_;
    ncclResult_t res = accepting_->startAccept(msg, rails);
    if (res != ncclSuccess) {
      accepting_.reset();
      return res;
    }
  }
  bool done = false;
  ncclResult_t res = accepting_->acceptStep(&done);
  if (res != ncclSuccess) {
    accepting_.reset();
    return res;
  }
  if (done) *out = accepting_.release();
  return ncclSuccess;
}

// ---------------------------------------------------------------- accepting side

ncclResult_t RecvComm::startAccept(const ConnectMsg& msg, int rails) {
  std::string error;
  if (setupRails(rails, &error) != ncclSuccess) {
    EPY_WARN("epyard: accept: %s", error.c_str());
    return ncclSystemError;
  }
  auto* answer = reinterpret_cast<AcceptMsg*>(block_->msg_out);
  memset(answer, 0, sizeof(*answer));
  answer->magic = kAcceptMagic;
  answer->rails = static_cast<uint32_t>(rails);
  answer->conn_id = msg.conn_id;
  answer->block.addr = reinterpret_cast<uint64_t>(block_);
  for (int r = 0; r < rails; ++r) {
    Rail& rail = rails_[r];
    if (const char* bad = checkRailAddr(msg.rail_addrs[r])) {
      EPY_WARN("epyard: accept: the connect message has %s (rail %d, %u bytes)", bad, r,
               msg.rail_addrs[r].len);
      return ncclRemoteError;
    }
    sender_rails_.push_back(msg.rail_addrs[r]);
    if (!fillRailAddr(rail.ep.get(), &answer->rail_addrs[r], &error)) {
      EPY_WARN("epyard: accept: %s", error.c_str());
      return ncclSystemError;
    }
    answer->block.keys[r] = blockKey(r);
  }
  if (!setupFlushPeers(&error)) {
    EPY_WARN("epyard: accept: %s", error.c_str());
    return ncclSystemError;
  }
  peer_block_ = msg.block;
  for (int s = 0; s < kMaxRequests; ++s) {
    cts_ctx_[s].owner = this;
    cts_ctx_[s].tag = kOpCtsWrite;
  }
  ctrl_send_ctx_.owner = this;
  ctrl_send_ctx_.tag = kOpCtrlSend;
  accept_deadline_ns_ = nowNs() + timeout_ns_;
  return ncclSuccess;
}

ncclResult_t RecvComm::acceptStep(bool* done) {
  *done = false;
  std::string error;
  const Endpoint::AddPeer reached = reachRails(sender_rails_.data(), &error);
  if (reached == Endpoint::AddPeer::kFailed) {
    EPY_WARN("epyard: accept: %s", error.c_str());
    return ncclRemoteError;
  }
  if (reached == Endpoint::AddPeer::kPending) {
    if (nowNs() <= accept_deadline_ns_) return ncclSuccess;
    EPY_WARN("epyard: accept: the sender's rails could not be reached within %lld ms (EPYARD_NET_TIMEOUT_MS)",
             static_cast<long long>(timeout_ns_ / 1000000));
    return ncclRemoteError;
  }
  if (!answer_posted_) {
    PostResult pr = rails_[0].ep->postSend(rails_[0].peer, block_->msg_out, sizeof(AcceptMsg),
                                           blockDesc(0), &ctrl_send_ctx_);
    if (pr == PostResult::kFailed) {
      EPY_WARN("epyard: accept: answering %s: %s", peerName().c_str(),
               rails_[0].ep->lastError().c_str());
      return ncclSystemError;
    }
    answer_posted_ = pr == PostResult::kPosted;
  }
  EPY_CHECK(progress());
  if (answer_sent_) {
    startThreadedProgress();
    *done = true;
    return ncclSuccess;
  }
  if (nowNs() > accept_deadline_ns_) {
    EPY_WARN("epyard: accept: %s did not take our answer within %lld ms (EPYARD_NET_TIMEOUT_MS)",
             peerName().c_str(), static_cast<long long>(timeout_ns_ / 1000000));
    return ncclRemoteError;
  }
  return ncclSuccess;
}

// ---------------------------------------------------------------- connecting side

ncclResult_t SendComm::startConnect(const ConnectHandle& handle, int rails) {
  std::string error;
  if (setupRails(rails, &error) != ncclSuccess) {
    EPY_WARN("epyard: connect: %s", error.c_str());
    return ncclSystemError;
  }
  Rail& rail0 = rails_[0];
  listen_addr_.assign(handle.addr, handle.addr + handle.addr_len);  // reached in connectStep
  listener_name_ = "the listening peer";  // named once reached
  ctrl_send_ctx_.owner = this;
  ctrl_send_ctx_.tag = kOpCtrlSend;
  ctrl_recv_ctx_.owner = this;
  ctrl_recv_ctx_.tag = kOpCtrlRecv;
  if (rail0.ep->postRecv(block_->msg_in, sizeof(AcceptMsg), blockDesc(0), &ctrl_recv_ctx_) !=
      PostResult::kPosted) {
    EPY_WARN("epyard: connect: posting a receive: %s", rail0.ep->lastError().c_str());
    return ncclSystemError;
  }
  auto* msg = reinterpret_cast<ConnectMsg*>(block_->msg_out);
  memset(msg, 0, sizeof(*msg));
  msg->magic = kConnectMagic;
  msg->version = kWireVersion;
  msg->listen_id = handle.listen_id;
  conn_id_ = randomId();
  msg->conn_id = conn_id_;
  msg->rails = static_cast<uint32_t>(rails);
  msg->block.addr = reinterpret_cast<uint64_t>(block_);
  for (int r = 0; r < rails; ++r) {
    if (!fillRailAddr(rails_[r].ep.get(), &msg->rail_addrs[r], &error)) {
      EPY_WARN("epyard: connect: %s", error.c_str());
      return ncclSystemError;
    }
    msg->block.keys[r] = blockKey(r);
  }
  connect_deadline_ns_ = nowNs() + timeout_ns_;
  state_ = ConnectState::kReachListener;
  return ncclSuccess;
}

ncclResult_t SendComm::connectStep(bool* done) {
  *done = false;
  if (state_ == ConnectState::kReachListener) {
    switch (rails_[0].ep->addPeerStep(listen_addr_.data(), listen_addr_.size(), &listen_peer_)) {
      case Endpoint::AddPeer::kDone:
        listener_name_ = rails_[0].ep->peerName(listen_peer_);
        state_ = ConnectState::kSendMsg;
        break;
      case Endpoint::AddPeer::kPending: break;
      case Endpoint::AddPeer::kFailed:
        EPY_WARN("epyard: connect: cannot reach the handle's address: %s", rails_[0].ep->lastError().c_str());
        return ncclRemoteError;
    }
  }
  if (state_ == ConnectState::kSendMsg) {
    PostResult pr = rails_[0].ep->postSend(listen_peer_, block_->msg_out, sizeof(ConnectMsg),
                                           blockDesc(0), &ctrl_send_ctx_);
    if (pr == PostResult::kFailed) {
      EPY_WARN("epyard: connect to %s: %s", listener_name_.c_str(),
               rails_[0].ep->lastError().c_str());
      return ncclRemoteError;
    }
    if (pr == PostResult::kPosted) state_ = ConnectState::kWaitAccept;
  }
  if (progress() != ncclSuccess) {
    EPY_WARN("epyard: connect to %s failed: %s", listener_name_.c_str(), failure_.c_str());
    return ncclRemoteError;
  }
  if (state_ == ConnectState::kWaitAccept && msg_sent_ && accept_received_) {
    const auto* answer = reinterpret_cast<const AcceptMsg*>(block_->msg_in);
    if (accept_length_ < sizeof(AcceptMsg) || answer->magic != kAcceptMagic ||
        answer->conn_id != conn_id_ || answer->rails == 0 || answer->rails > rails_.size()) {
      EPY_WARN("epyard: connect to %s: malformed answer from the listener", listener_name_.c_str());
      return ncclRemoteError;
    }
    rails_.resize(answer->rails);
    for (size_t r = 0; r < rails_.size(); ++r) {
      if (const char* bad = checkRailAddr(answer->rail_addrs[r])) {
        EPY_WARN("epyard: connect to %s: the answer has %s (rail %zu, %u bytes)",
                 listener_name_.c_str(), bad, r, answer->rail_addrs[r].len);
        return ncclRemoteError;
      }
    }
    state_ = ConnectState::kReachRails;  // the answer stays in msg_in: no receive follows it
  }
  if (state_ == ConnectState::kReachRails) {
    const auto* answer = reinterpret_cast<const AcceptMsg*>(block_->msg_in);
    std::string error;
    const Endpoint::AddPeer reached = reachRails(answer->rail_addrs, &error);
    if (reached == Endpoint::AddPeer::kFailed) {
      EPY_WARN("epyard: connect to %s: %s", listener_name_.c_str(), error.c_str());
      return ncclRemoteError;
    }
    if (reached == Endpoint::AddPeer::kDone) {
      peer_block_ = answer->block;
      last_activity_ns_ = nowNs();
      state_ = ConnectState::kConnected;
      startThreadedProgress();
    }
  }
  if (state_ == ConnectState::kConnected) {
    *done = true;
    return ncclSuccess;
  }
  if (nowNs() > connect_deadline_ns_) {
    EPY_WARN(
        "epyard: connect to %s: no answer within %lld ms (EPYARD_NET_TIMEOUT_MS); is the "
        "listening peer alive and reachable?",
        listener_name_.c_str(), static_cast<long long>(timeout_ns_ / 1000000));
    return ncclRemoteError;
  }
  return ncclSuccess;
}

}  // namespace epyard::net
