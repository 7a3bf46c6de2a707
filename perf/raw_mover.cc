// The baseline: the same pattern straight on the transport's endpoint (fi_writedata for
// libfabric), with no protocol: the sender writes into a buffer whose key it was given once,
// the receiver counts immediates. This is the ceiling the plugin is compared with.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/transport.h"
#include "mover.h"

namespace epyard::perf {
namespace {

using net::Completion;
using net::OpContext;
using net::PostResult;

struct Exchange {
  uint32_t addr_len;
  uint8_t addr[56];
  uint64_t buf_addr;
  uint64_t key;
};

class RawMover final : public Mover {
 public:
  explicit RawMover(const char* provider) : provider_(provider ? provider : "") {}
  const char* name() const override { return "raw"; }

  bool setup(int rank, Channel& ch, size_t max_bytes, std::string* error) override {
    transport_ = net::openOfiTransport(provider_, error);
    if (!transport_) return false;
    nic_ = transport_->nic(0);
    ep_ = nic_->openEndpoint(error);
    if (!ep_) return false;
    if (posix_memalign(&sbuf_, 4096, max_bytes) != 0 || posix_memalign(&rbuf_, 4096, max_bytes)) {
      *error = "out of memory";
      return false;
    }
    memset(sbuf_, rank + 1, max_bytes);
    if (!nic_->registerMemory(sbuf_, max_bytes, NCCL_PTR_HOST, -1, 0, &sreg_, error) ||
        !nic_->registerMemory(rbuf_, max_bytes, NCCL_PTR_HOST, -1, 0, &rreg_, error))
      return false;
    Exchange mine = {}, theirs = {};
    std::vector<uint8_t> addr;
    if (!ep_->localAddress(&addr) || addr.size() > sizeof(mine.addr)) {
      *error = "endpoint address: " + ep_->lastError();
      return false;
    }
    mine.addr_len = static_cast<uint32_t>(addr.size());
    memcpy(mine.addr, addr.data(), addr.size());
    mine.buf_addr = reinterpret_cast<uint64_t>(rbuf_);
    mine.key = rreg_.key;
    if (!ch.sendAll(&mine, sizeof(mine)) || !ch.recvAll(&theirs, sizeof(theirs))) {
      *error = "address exchange failed";
      return false;
    }
    if (!ep_->addPeer(theirs.addr, theirs.addr_len, &peer_)) {
      *error = ep_->lastError();
      return false;
    }
    remote_ = nic_->targetAddress(theirs.buf_addr, theirs.buf_addr);
    remote_key_ = theirs.key;
    slots_.assign(64, Slot{});
    return true;
  }

  bool postSend(size_t size, int* slot, std::string* error) override {
    *slot = freeSlot();
    if (*slot < 0) return progress(error);
    Slot& s = slots_[*slot];
    s.ctx.owner = &s;
    PostResult pr =
        ep_->postWrite(peer_, sbuf_, size, sreg_.desc, remote_, remote_key_, true, 0, &s.ctx);
    if (pr == PostResult::kFailed) {
      *error = ep_->lastError();
      return false;
    }
    if (pr == PostResult::kRetry) {
      *slot = -1;
      return progress(error);
    }
    s.busy = true;
    s.is_send = true;
    s.done = false;
    return true;
  }

  bool postRecv(size_t, int* slot, std::string* error) override {
    *slot = freeSlot();
    if (*slot < 0) return true;
    Slot& s = slots_[*slot];
    s.busy = true;
    s.is_send = false;
    s.target = ++recv_posted_;
    return true;
  }

  bool test(int slot, bool* done, std::string* error) override {
    if (!progress(error)) return false;
    Slot& s = slots_[slot];
    *done = s.is_send ? s.done : remote_seen_ >= s.target;
    if (*done) s.busy = false;
    return true;
  }

  void teardown() override {
    ep_.reset();
    if (nic_ != nullptr) {
      nic_->deregisterMemory(&sreg_);
      nic_->deregisterMemory(&rreg_);
    }
    free(sbuf_);
    free(rbuf_);
    sbuf_ = rbuf_ = nullptr;
  }

 private:
  struct Slot {
    OpContext ctx;
    bool busy = false, is_send = false, done = false;
    uint64_t target = 0;
  };
  int freeSlot() {
    for (size_t i = 0; i < slots_.size(); ++i)
      if (!slots_[i].busy) return static_cast<int>(i);
    return -1;
  }
  bool progress(std::string* error) {
    Completion c[16];
    int n = ep_->poll(c, 16);
    if (n < 0) {
      *error = ep_->lastError();
      return false;
    }
    for (int i = 0; i < n; ++i) {
      if (c[i].kind == Completion::Kind::kError) {
        *error = c[i].error;
        return false;
      }
      if (c[i].kind == Completion::Kind::kRemoteWrite)
        ++remote_seen_;
      else
        static_cast<Slot*>(c[i].context->owner)->done = true;
    }
    return true;
  }

  std::string provider_;
  std::unique_ptr<net::Transport> transport_;
  net::Nic* nic_ = nullptr;
  std::unique_ptr<net::Endpoint> ep_;
  void *sbuf_ = nullptr, *rbuf_ = nullptr;
  net::MemoryRegistration sreg_, rreg_;
  uint64_t peer_ = 0, remote_ = 0, remote_key_ = 0;
  uint64_t recv_posted_ = 0, remote_seen_ = 0;
  std::vector<Slot> slots_;
};

}  // namespace

Mover* makeRawOfiMover(const char* provider) { return new RawMover(provider); }

}  // namespace epyard::perf
