// The receiving side: post a grouped receive by writing one CTS entry into the sender's ring,
// then count what lands. A buffer is complete when its single sized write arrived, or when its
// completion record arrived and as many segments as the record names; nothing assumes the
// order in which writes land.
#include <cstring>

#include "engine/comm.h"
#include "engine/log.h"
#include "engine/params.h"

namespace epyard::net {

void RecvComm::onLocalCompletion(OpContext* ctx, size_t length) {
  if (ctx->tag == kOpCtrlSend) answer_sent_ = true;
  if (ctx->tag == kOpFlush) ++static_cast<Request*>(ctx->owner)->writes_done;
  // CTS writes need no bookkeeping: the slot is reused only after the sender acted on it.
}

void RecvComm::checkBuffer(Request* req, uint32_t buffer) {
  if (req->record_seen[buffer] && req->segments_seen[buffer] == req->segments_expected[buffer])
    req->buffer_done[buffer] = true;
}

// Everything below comes from the peer: a size is checked against what this side posted, a
// segment count against the connection's rails, and each buffer takes one sized write or one
// record. Anything else fails the connection as a protocol error.
void RecvComm::onRemoteWrite(uint32_t imm) {
  Imm d = decodeImm(imm);
  Request* req = &requests_[d.slot];
  // Named only in errors: this runs for every write that lands.
  auto where = [&] { return "slot " + std::to_string(d.slot) + " buffer " + std::to_string(d.buffer); };
  if (!req->in_use || req->is_send || d.buffer >= static_cast<uint32_t>(req->count)) {
    fail("protocol error: data for " + where() + " which has no posted receive");
    return;
  }
  const uint64_t posted = req->posted[d.buffer];
  switch (d.kind) {
    case ImmKind::kSized:
      if (req->buffer_done[d.buffer] || req->record_seen[d.buffer] || req->segments_seen[d.buffer]) {
        fail("protocol error: a second message for " + where());
      } else if (d.payload > posted) {
        fail("protocol error: the peer says " + std::to_string(d.payload) + " bytes arrived in a " +
             std::to_string(posted) + "-byte receive (" + where() + ")");
      } else {
        req->received[d.buffer] = d.payload;
        req->buffer_done[d.buffer] = true;
      }
      break;
    case ImmKind::kSegment:
      if (req->buffer_done[d.buffer] || ++req->segments_seen[d.buffer] > rails_.size()) {
        fail("protocol error: more segments than rails (" + std::to_string(rails_.size()) +
             ") for " + where());
        break;
      }
      checkBuffer(req, d.buffer);
      break;
    case ImmKind::kRecord: {
      const Record rec = block_->records[d.slot][d.buffer];  // a copy: the peer may rewrite it
      if (req->record_seen[d.buffer] || req->buffer_done[d.buffer]) {
        fail("protocol error: a second completion record for " + where());
        break;
      }
      if (rec.flags & kRecordTruncated) {
        req->error = "the peer sent " + std::to_string(rec.size) + " bytes to a " +
                     std::to_string(posted) + "-byte receive (tag " +
                     std::to_string(req->tags[d.buffer]) + ")";
        EPY_WARN("epyard: receive from %s: %s", peerName().c_str(), req->error.c_str());
        req->buffer_done[d.buffer] = true;
        break;
      }
      const bool empty_ok = rec.size == 0 && rec.segments == 0;
      if (rec.size > posted || rec.segments > rails_.size() ||
          (!empty_ok && (rec.size == 0 || rec.segments == 0)) ||
          rec.segments < req->segments_seen[d.buffer]) {
        fail("protocol error: completion record of " + std::to_string(rec.size) + " bytes in " +
             std::to_string(rec.segments) + " segments for a " + std::to_string(posted) +
             "-byte receive over " + std::to_string(rails_.size()) + " rails (" + where() + ", " +
             std::to_string(req->segments_seen[d.buffer]) + " segments already arrived)");
        break;
      }
      req->record_seen[d.buffer] = true;
      req->record_ns[d.buffer] = nowNs();
      req->segments_expected[d.buffer] = rec.segments;
      req->received[d.buffer] = rec.size;
      checkBuffer(req, d.buffer);
      break;
    }
    case ImmKind::kCts:
      fail("protocol error: CTS immediate arrived at the receiver");
      break;
  }
}

// The segments a record names were all written before it, so they land within the timeout
// of the record or never.
std::string RecvComm::missingSegments(const Request* req) const {
  const int64_t now = nowNs();
  for (int i = 0; i < req->count; ++i) {
    if (req->buffer_done[i] || !req->record_seen[i] || now - req->record_ns[i] <= timeout_ns_) continue;
    return "the completion record of buffer " + std::to_string(i) + " names " +
           std::to_string(req->segments_expected[i]) + " segments, but " +
           std::to_string(req->segments_seen[i]) + " arrived within " +
           std::to_string(timeout_ns_ / 1000000) + " ms (EPYARD_NET_TIMEOUT_MS)";
  }
  return "";
}

ncclResult_t RecvComm::irecv(int n, void** data, const size_t* sizes, const int* tags,
                             RegEntry** regs, Request** out) {
  *out = nullptr;
  if (progress() != ncclSuccess) return ncclSystemError;
  const uint32_t slot = static_cast<uint32_t>(recv_seq_ % kMaxRequests);
  Request* req = &requests_[slot];
  if (req->in_use)  // 32 receives outstanding: retry later
    return checkLiveness() == ncclSuccess ? ncclSuccess : ncclSystemError;
  req->in_use = true;
  req->is_send = false;
  req->error.clear();
  req->count = n;
  CtsEntry* entry = &block_->cts_stage[slot];
  entry->seq = recv_seq_;
  entry->count = static_cast<uint32_t>(n);
  for (int i = 0; i < n; ++i) {
    req->posted[i] = sizes[i];
    req->received[i] = 0;
    req->segments_seen[i] = req->segments_expected[i] = 0;
    req->record_seen[i] = req->buffer_done[i] = false;
    req->record_ns[i] = 0;
    req->tags[i] = tags[i];
    CtsBuffer& b = entry->buffers[i];
    b.addr = reinterpret_cast<uint64_t>(data[i]);
    b.base = regs[i] != nullptr ? regs[i]->start : b.addr;
    b.size = sizes[i];
    b.tag = tags[i];
    for (size_t r = 0; r < rails_.size(); ++r)
      b.keys[r] = regs[i] != nullptr ? regs[i]->regs[rails_[r].nic_index].key : 0;
  }
  const size_t wire_bytes = ctsWireBytes(entry->count);
  if (tamper_) tamper_(entry);
  Rail& rail = rails_[0];
  uint64_t remote = peer_block_.addr + offsetof(ControlBlock, ring) + slot * sizeof(CtsEntry);
  PostResult pr =
      rail.ep->postWrite(rail.peer, entry, wire_bytes, blockDesc(0),
                         rail.nic->targetAddress(remote, peer_block_.addr), peer_block_.keys[0],
                         true, encodeImm(ImmKind::kCts, slot, 0, 0), &cts_ctx_[slot]);
  if (pr != PostResult::kPosted) {
    req->in_use = false;
    if (pr == PostResult::kFailed) {
      fail("posting a receive: " + rail.ep->lastError());
      return ncclSystemError;
    }
    // The provider is full. NCCL calls again; meanwhile progress (ours or a progress thread's,
    // which needs the comm mutex NCCL's call holds) makes room. Never spin here.
    return checkLiveness() == ncclSuccess ? ncclSuccess : ncclSystemError;
  }
  ++recv_seq_;
  *out = req;
  return ncclSuccess;
}

bool RecvComm::setupFlushPeers(std::string* error) {
  bool needed = params().force_flush != 0;
  for (const Rail& rail : rails_)
    needed |= rail.nic->info().gpu_flush && (rail.nic->info().ptr_support & (NCCL_PTR_CUDA | NCCL_PTR_DMABUF));
  if (!needed) return true;
  for (size_t r = 0; r < rails_.size(); ++r) {
    std::vector<uint8_t> self;
    uint64_t peer = 0;
    if (!rails_[r].ep->localAddress(&self) || !rails_[r].ep->addPeer(self.data(), self.size(), &peer)) {
      *error = "rail " + std::to_string(r) + " cannot reach itself (for iflush): " + rails_[r].ep->lastError();
      return false;
    }
    flush_peers_.push_back(peer);
  }
  return true;
}

ncclResult_t RecvComm::iflush(int n, void** data, const int* sizes, RegEntry** regs, Request** out) {
  *out = nullptr;
  int last = -1;
  for (int i = 0; i < n; ++i)
    if (sizes[i] > 0) last = i;
  if (last < 0 || regs[last] == nullptr) return ncclSuccess;  // nothing arrived
  RegEntry* reg = regs[last];
  if (flush_peers_.empty()) return ncclSuccess;  // this device needs no read-back (setupFlushPeers)
  if (reg->ptr_type == NCCL_PTR_HOST && params().force_flush == 0) return ncclSuccess;
  if (progress() != ncclSuccess) return ncclSystemError;
  Request* req = &flushes_[next_flush_ % kMaxRequests];
  if (req->in_use) {
    EPY_WARN("epyard: iflush: %d flushes are still untested; test them before flushing again", kMaxRequests);
    return ncclInvalidUsage;
  }
  ++next_flush_;
  req->in_use = true;
  req->is_send = false;
  req->is_flush = true;
  req->comm = this;
  req->error.clear();
  req->count = 0;
  req->num_writes = static_cast<int>(rails_.size());
  req->writes_done = 0;
  const uint64_t addr = reinterpret_cast<uint64_t>(data[last]);
  for (size_t r = 0; r < rails_.size(); ++r) {
    Rail& rail = rails_[r];
    OpContext& ctx = req->contexts[r];
    ctx.owner = req;
    ctx.tag = kOpFlush;
    const uint64_t target = rail.nic->targetAddress(addr, reg->start);
    PostResult pr = PostResult::kRetry;
    for (int tries = 0; pr == PostResult::kRetry && tries < 1000; ++tries) {
      pr = rail.ep->postRead(flush_peers_[r], block_->flush_sink, 1, blockDesc(static_cast<int>(r)), target,
                             reg->regs[rail.nic_index].key, &ctx);
      if (pr == PostResult::kRetry && progress() != ncclSuccess) return ncclSystemError;
    }
    if (pr != PostResult::kPosted) {
      fail("iflush: rail " + std::to_string(r) + ": " +
           (pr == PostResult::kRetry ? std::string("the send queue stayed full") : rail.ep->lastError()));
      req->in_use = false;
      return ncclSystemError;
    }
  }
  *out = req;
  return ncclSuccess;
}

}  // namespace epyard::net
