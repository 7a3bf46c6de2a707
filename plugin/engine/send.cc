// The sending side: consume CTS entries in posting order, match the tag inside a grouped
// receive, and write the data (striped over rails for large messages) with immediate data.
#include <cstring>

#include "engine/comm.h"
#include "engine/log.h"
#include "engine/params.h"

namespace epyard::net {

void SendComm::onRemoteWrite(uint32_t imm) {
  Imm d = decodeImm(imm);
  if (d.kind != ImmKind::kCts) {
    fail("protocol error: unexpected immediate 0x" + std::to_string(imm) + " at the sender");
    return;
  }
  cts_arrived_[d.slot] = true;
}

void SendComm::onLocalCompletion(OpContext* ctx, size_t length) {
  switch (ctx->tag) {
    case kOpCtrlSend:
      msg_sent_ = true;
      break;
    case kOpCtrlRecv:
      accept_received_ = true;
      accept_length_ = length;
      break;
    case kOpWrite:
      ++static_cast<Request*>(ctx->owner)->writes_done;
      break;
    default:
      break;
  }
}

ncclResult_t SendComm::planWrites(Request* req, const CtsBuffer& dst, const uint8_t* src,
                                  size_t size, RegEntry* reg) {
  const int rails = static_cast<int>(rails_.size());
  const uint64_t stripe = static_cast<uint64_t>(params().min_stripe_bytes);
  const int first = next_rail_;
  next_rail_ = (next_rail_ + 1) % rails;
  auto target = [&](int rail, uint64_t offset) {
    return rails_[rail].nic->targetAddress(dst.addr + offset, dst.base);
  };
  auto record = [&](uint64_t bytes, uint32_t segments, uint32_t flags) {
    Record* rec = &block_->record_stage[req->slot][req->buffer];
    rec->size = bytes;
    rec->segments = segments;
    rec->flags = flags;
    uint64_t remote = peer_block_.addr + offsetof(ControlBlock, records) +
                      (req->slot * kMaxRecvs + req->buffer) * sizeof(Record);
    req->writes[req->num_writes++] = {first,
                                      reinterpret_cast<const uint8_t*>(rec),
                                      sizeof(Record),
                                      blockDesc(first),
                                      rails_[first].nic->targetAddress(remote, peer_block_.addr),
                                      peer_block_.keys[first],
                                      encodeImm(ImmKind::kRecord, req->slot, req->buffer, 0)};
  };
  if (size > dst.size) {
    record(size, 0, kRecordTruncated);
    return ncclInvalidUsage;
  }
  if (size == 0) {
    record(0, 0, 0);
    return ncclSuccess;
  }
  if (size < stripe && size <= kImmMaxSized) {
    req->writes[req->num_writes++] = {
        first,
        src,
        size,
        reg->regs[rails_[first].nic_index].desc,
        target(first, 0),
        dst.keys[first],
        encodeImm(ImmKind::kSized, req->slot, req->buffer, static_cast<uint32_t>(size))};
    return ncclSuccess;
  }
  uint64_t parts = size / stripe;
  if (parts < 1) parts = 1;
  if (parts > static_cast<uint64_t>(rails)) parts = rails;
  uint64_t chunk = ((size + parts - 1) / parts + 4095) & ~uint64_t(4095);
  uint32_t segments = 0;
  for (uint64_t offset = 0; offset < size; offset += chunk) {
    int rail = (first + static_cast<int>(segments)) % rails;
    uint64_t len = size - offset < chunk ? size - offset : chunk;
    req->writes[req->num_writes++] = {rail,
                                      src + offset,
                                      len,
                                      reg->regs[rails_[rail].nic_index].desc,
                                      target(rail, offset),
                                      dst.keys[rail],
                                      encodeImm(ImmKind::kSegment, req->slot, req->buffer, 0)};
    ++segments;
  }
  record(size, segments, 0);
  return ncclSuccess;
}

ncclResult_t SendComm::isend(void* data, size_t size, int tag, RegEntry* reg, Request** out) {
  *out = nullptr;
  if (progress() != ncclSuccess) return ncclSystemError;
  const uint32_t slot = static_cast<uint32_t>(send_seq_ % kMaxRequests);
  if (!current_valid_) {
    // The receiver has not posted yet: NCCL retries later. Waiting on a peer that died
    // must still end, so the liveness policy runs here too.
    if (!cts_arrived_[slot]) return checkLiveness() == ncclSuccess ? ncclSuccess : ncclSystemError;
    current_ = block_->ring[slot];
    if (current_.seq != send_seq_ || current_.count == 0 || current_.count > kMaxRecvs) {
      fail("protocol error: CTS slot " + std::to_string(slot) + " holds sequence " +
           std::to_string(current_.seq) + ", expected " + std::to_string(send_seq_));
      return ncclSystemError;
    }
    current_valid_ = true;
    current_used_ = 0;
  }
  int buffer = -1;
  for (uint32_t b = 0; b < current_.count; ++b) {
    if (!(current_used_ & (1u << b)) && current_.buffers[b].tag == tag) {
      buffer = static_cast<int>(b);
      break;
    }
  }
  if (buffer < 0) {
    EPY_WARN(
        "epyard: isend to %s: tag %d matches no open buffer of the receive posted as "
        "sequence %llu",
        peerName().c_str(), tag, static_cast<unsigned long long>(send_seq_));
    return ncclInvalidUsage;
  }
  Request* req = nullptr;
  for (auto& r : requests_) {
    if (!r.in_use) {
      req = &r;
      break;
    }
  }
  if (req == nullptr)  // all 32 requests busy: retry later
    return checkLiveness() == ncclSuccess ? ncclSuccess : ncclSystemError;
  req->in_use = true;
  req->is_send = true;
  req->error.clear();
  req->slot = slot;
  req->buffer = static_cast<uint32_t>(buffer);
  req->size = size;
  req->num_writes = req->writes_posted = req->writes_done = 0;
  ncclResult_t planned =
      planWrites(req, current_.buffers[buffer], static_cast<const uint8_t*>(data), size, reg);
  if (tamper_) {
    const bool has_record = req->num_writes > 0 &&
                            decodeImm(req->writes[req->num_writes - 1].imm).kind == ImmKind::kRecord;
    tamper_(req, has_record ? &block_->record_stage[slot][buffer] : nullptr);
  }
  current_used_ |= 1u << buffer;
  if (current_used_ == (1u << current_.count) - 1) {
    cts_arrived_[slot] = false;
    current_valid_ = false;
    ++send_seq_;
  }
  if (planned != ncclSuccess) {
    // Tell the receiver (the record says "truncated") so both sides report the error.
    if (postWrites(req) && req->writes_posted < req->num_writes) unposted_.push_back(req);
    req->error = "message of " + std::to_string(size) + " bytes is larger than the " +
                 std::to_string(current_.buffers[buffer].size) +
                 "-byte receive the peer posted (tag " + std::to_string(tag) + ")";
    EPY_WARN("epyard: isend to %s: %s", peerName().c_str(), req->error.c_str());
    *out = req;
    return ncclSuccess;
  }
  if (!postWrites(req)) {
    req->in_use = false;
    return ncclSystemError;
  }
  if (req->writes_posted < req->num_writes) unposted_.push_back(req);
  *out = req;
  return ncclSuccess;
}

}  // namespace epyard::net
