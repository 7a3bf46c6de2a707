// What every connection shares: rails, the registered control block, progress, and the
// liveness policy that turns a dead or silent peer into an error instead of a hang.
#include "engine/comm.h"

#include <cstdlib>
#include <cstring>
#include <ctime>

#include "engine/log.h"
#include "engine/params.h"
#include "engine/progress.h"

namespace epyard::net {

int64_t nowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

bool Request::done() const {
  if (is_send || is_flush) return writes_done == num_writes;
  for (int i = 0; i < count; ++i)
    if (!buffer_done[i]) return false;
  return true;
}

void Comm::stopThreadedProgress() {
  if (threaded_) ProgressThreads::instance()->detach(this);
  threaded_ = false;
}

Comm::~Comm() {
  stopThreadedProgress();  // normally already done by the closer, while the comm was whole
  rails_.clear();          // closes endpoints: nothing posted can complete into us afterwards
  for (size_t i = 0; i < block_reg_.size(); ++i) dev_->nics[i]->deregisterMemory(&block_reg_[i]);
  free(block_);
  magic_ = 0;
}

ncclResult_t Comm::setupRails(int num_rails, std::string* error) {
  timeout_ns_ = params().timeout_ms * 1000000;
  last_activity_ns_ = nowNs();
  size_t bytes = (sizeof(ControlBlock) + 4095) & ~size_t(4095);
  block_ = static_cast<ControlBlock*>(aligned_alloc(4096, bytes));
  if (block_ == nullptr) {
    *error = "out of host memory for a control block";
    return ncclSystemError;
  }
  memset(block_, 0, bytes);
  block_reg_.resize(dev_->nics.size());
  for (size_t i = 0; i < dev_->nics.size(); ++i) {
    if (!dev_->nics[i]->registerMemory(block_, bytes, NCCL_PTR_HOST, -1, 0, &block_reg_[i],
                                       error)) {
      block_reg_.resize(i);
      return ncclSystemError;
    }
  }
  for (int r = 0; r < num_rails; ++r) {
    Rail rail;
    rail.nic_index = r % static_cast<int>(dev_->nics.size());
    rail.nic = dev_->nics[rail.nic_index];
    rail.ep = rail.nic->openEndpoint(error);
    if (!rail.ep) return ncclSystemError;
    rails_.push_back(std::move(rail));
  }
  for (auto& req : requests_) req.comm = this;
  ping_ctx_.owner = this;
  ping_ctx_.tag = kOpPing;
  return ncclSuccess;
}

void Comm::postQueued(int rail) {
  std::deque<QueuedWrite> local;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (rail_queue_[rail].empty()) return;
    local.swap(rail_queue_[rail]);
  }
  Rail& r = rails_[rail];
  while (!local.empty()) {
    // Request fields were written under the lock before queuing and stay put until the
    // write completes, so reading them here without the lock is safe.
    Request* req = local.front().req;
    int i = local.front().index;
    const Request::Write& w = req->writes[i];
    PostResult pr = r.ep->postWrite(r.peer, w.src, w.len, w.desc, w.remote_addr, w.key, true, w.imm,
                                    &req->contexts[i]);
    if (pr == PostResult::kRetry) break;
    if (pr == PostResult::kFailed) {
      std::lock_guard<std::mutex> lock(mutex_);
      fail("posting a write on rail " + std::to_string(rail) + ": " + r.ep->lastError());
      return;
    }
    local.pop_front();
  }
  if (!local.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    local.insert(local.end(), rail_queue_[rail].begin(), rail_queue_[rail].end());
    rail_queue_[rail].swap(local);
  }
}

void Comm::startThreadedProgress() {
  if (ProgressThreads* pool = ProgressThreads::instance()) {
    rail_queue_.resize(rails_.size());
    threaded_ = true;
    pool->attach(this);
  }
}

std::string Comm::peerName() {
  if (kind_ == CommKind::kListen) return "no peer (the listening endpoint)";
  if (rails_.empty() || !rails_[0].reached) return "a peer not reached yet";
  return rails_[0].ep->peerName(rails_[0].peer);
}

Endpoint::AddPeer Comm::reachRails(const RailAddr* addrs, std::string* error) {
  Endpoint::AddPeer all = Endpoint::AddPeer::kDone;
  for (size_t r = 0; r < rails_.size(); ++r) {
    Rail& rail = rails_[r];
    if (rail.reached) continue;
    switch (rail.ep->addPeerStep(addrs[r].bytes, addrs[r].len, &rail.peer)) {
      case Endpoint::AddPeer::kDone: rail.reached = true; break;
      case Endpoint::AddPeer::kPending: all = Endpoint::AddPeer::kPending; break;
      case Endpoint::AddPeer::kFailed:
        *error = "rail " + std::to_string(r) + ": " + rail.ep->lastError();
        return Endpoint::AddPeer::kFailed;
    }
  }
  return all;
}

void Comm::fail(const std::string& why) {
  if (!failure_.empty()) return;
  failure_ = why;
  EPY_WARN("epyard: connection with %s failed: %s", peerName().c_str(), why.c_str());
}

void Comm::dispatch(int rail, const Completion* completions, int n) {
  last_activity_ns_ = nowNs();
  for (int i = 0; i < n; ++i) {
    const Completion& c = completions[i];
    if (c.kind == Completion::Kind::kError) {
      fail("rail " + std::to_string(rail) + " reported " + c.error);
    } else if (c.kind == Completion::Kind::kRemoteWrite) {
      onRemoteWrite(c.imm);
    } else if (c.context != nullptr && c.context->tag == kOpPing) {
      ping_in_flight_ = false;
    } else if (c.context != nullptr) {
      onLocalCompletion(c.context, c.length);
    }
  }
}

ncclResult_t Comm::progress() {
  Completion completions[16];
  // Rails handed to progress threads are polled there; the caller only posts what waits.
  const size_t own_rails = threaded_ ? 0 : rails_.size();
  for (size_t r = 0; r < own_rails; ++r) {
    for (int rounds = 0; rounds < 8; ++rounds) {
      int n = rails_[r].ep->poll(completions, 16);
      if (n < 0) {
        fail("rail " + std::to_string(r) + ": " + rails_[r].ep->lastError());
        return ncclSystemError;
      }
      if (n == 0) break;
      dispatch(static_cast<int>(r), completions, n);
      if (n < 16) break;
    }
  }
  while (!unposted_.empty() && failure_.empty()) {
    Request* req = unposted_.front();
    if (!postWrites(req)) break;
    if (req->writes_posted < req->num_writes) break;  // provider still full
    unposted_.pop_front();
  }
  return failure_.empty() ? ncclSuccess : ncclSystemError;
}

bool Comm::postWrites(Request* req) {
  if (threaded_) {
    // Hand each write to the thread that owns its rail: the socket copies of providers like
    // tcp then happen there, in parallel, not on the caller's (NCCL's proxy) thread.
    for (int i = req->writes_posted; i < req->num_writes; ++i) {
      req->contexts[i].owner = req;
      req->contexts[i].tag = kOpWrite;
      rail_queue_[req->writes[i].rail].push_back({req, i});
    }
    req->writes_posted = req->num_writes;
    return true;
  }
  while (req->writes_posted < req->num_writes) {
    const Request::Write& w = req->writes[req->writes_posted];
    Rail& rail = rails_[w.rail];
    OpContext* ctx = &req->contexts[req->writes_posted];
    ctx->owner = req;
    ctx->tag = kOpWrite;
    PostResult pr =
        rail.ep->postWrite(rail.peer, w.src, w.len, w.desc, w.remote_addr, w.key, true, w.imm, ctx);
    if (pr == PostResult::kRetry) return true;
    if (pr == PostResult::kFailed) {
      fail("posting a write on rail " + std::to_string(w.rail) + ": " + rail.ep->lastError());
      return false;
    }
    ++req->writes_posted;
  }
  return true;
}

ncclResult_t Comm::checkLiveness() {
  if (!failure_.empty()) return ncclSystemError;
  int64_t idle = nowNs() - last_activity_ns_;
  if (idle > timeout_ns_) {
    fail("no sign of life from the peer for " + std::to_string(idle / 1000000) +
         " ms (EPYARD_NET_TIMEOUT_MS=" + std::to_string(timeout_ns_ / 1000000) + ")");
    return ncclSystemError;
  }
  // An idle wait is normal (the peer may simply not have posted yet); a small write checks that
  // the peer is still there. Its completion counts as activity.
  int64_t ping_after = timeout_ns_ / 4 < 200000000 ? timeout_ns_ / 4 : 200000000;
  if (idle > ping_after && !ping_in_flight_ && !rails_.empty() && peer_block_.addr != 0) {
    Rail& rail = rails_[0];
    uint64_t target = rail.nic->targetAddress(peer_block_.addr + offsetof(ControlBlock, ping_word),
                                              peer_block_.addr);
    PostResult pr =
        rail.ep->postWrite(rail.peer, &block_->ping_source, sizeof(uint64_t), blockDesc(0), target,
                           peer_block_.keys[0], false, 0, &ping_ctx_);
    if (pr == PostResult::kPosted) ping_in_flight_ = true;
    if (pr == PostResult::kFailed) {
      fail("checking the peer is alive: " + rail.ep->lastError());
      return ncclSystemError;
    }
  }
  return ncclSuccess;
}

}  // namespace epyard::net
