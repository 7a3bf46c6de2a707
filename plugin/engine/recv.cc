// The receiving side: post a grouped receive by writing one CTS entry into the sender's ring,
// then count what lands. A buffer is complete when its single sized write arrived, or when its
// completion record arrived and as many segments as the record names; nothing assumes the
// order in which writes land.
#include <cstring>

#include "engine/comm.h"
#include "engine/log.h"

namespace epyard::net {

void RecvComm::onLocalCompletion(OpContext* ctx, size_t length) {
  if (ctx->tag == kOpCtrlSend) answer_sent_ = true;
  // CTS writes need no bookkeeping: the slot is reused only after the sender acted on it.
}

void RecvComm::checkBuffer(Request* req, uint32_t buffer) {
  if (req->record_seen[buffer] && req->segments_seen[buffer] == req->segments_expected[buffer])
    req->buffer_done[buffer] = true;
}

void RecvComm::onRemoteWrite(uint32_t imm) {
  Imm d = decodeImm(imm);
  Request* req = &requests_[d.slot];
  if (!req->in_use || req->is_send || d.buffer >= static_cast<uint32_t>(req->count)) {
    fail("protocol error: data for slot " + std::to_string(d.slot) + " buffer " +
         std::to_string(d.buffer) + " which has no posted receive");
    return;
  }
  switch (d.kind) {
    case ImmKind::kSized:
      req->received[d.buffer] = d.payload;
      req->buffer_done[d.buffer] = true;
      break;
    case ImmKind::kSegment:
      ++req->segments_seen[d.buffer];
      checkBuffer(req, d.buffer);
      break;
    case ImmKind::kRecord: {
      const Record& rec = block_->records[d.slot][d.buffer];
      if (rec.flags & kRecordTruncated) {
        req->error = "the peer sent " + std::to_string(rec.size) + " bytes to a " +
                     std::to_string(req->posted[d.buffer]) + "-byte receive (tag " +
                     std::to_string(req->tags[d.buffer]) + ")";
        EPY_WARN("epyard: receive from %s: %s", peerName().c_str(), req->error.c_str());
        req->buffer_done[d.buffer] = true;
        break;
      }
      req->record_seen[d.buffer] = true;
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
    req->tags[i] = tags[i];
    CtsBuffer& b = entry->buffers[i];
    b.addr = reinterpret_cast<uint64_t>(data[i]);
    b.base = regs[i] != nullptr ? regs[i]->start : b.addr;
    b.size = sizes[i];
    b.tag = tags[i];
    for (size_t r = 0; r < rails_.size(); ++r)
      b.keys[r] = regs[i] != nullptr ? regs[i]->regs[rails_[r].nic_index].key : 0;
  }
  Rail& rail = rails_[0];
  uint64_t remote = peer_block_.addr + offsetof(ControlBlock, ring) + slot * sizeof(CtsEntry);
  for (;;) {
    PostResult pr =
        rail.ep->postWrite(rail.peer, entry, ctsWireBytes(entry->count), blockDesc(0),
                           rail.nic->targetAddress(remote, peer_block_.addr), peer_block_.keys[0],
                           true, encodeImm(ImmKind::kCts, slot, 0, 0), &cts_ctx_[slot]);
    if (pr == PostResult::kPosted) break;
    if (pr == PostResult::kFailed) {
      req->in_use = false;
      fail("posting a receive: " + rail.ep->lastError());
      return ncclSystemError;
    }
    // The provider is full: make room by progressing, then post again (bounded by liveness).
    if (progress() != ncclSuccess || checkLiveness() != ncclSuccess) {
      req->in_use = false;
      return ncclSystemError;
    }
  }
  ++recv_seq_;
  *out = req;
  return ncclSuccess;
}

}  // namespace epyard::net
