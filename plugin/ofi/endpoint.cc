// One RDM endpoint with its own completion queue and address vector.
#include <cstring>

#include "ofi/ofi.h"

namespace epyard::net::ofi {

OfiEndpoint::OfiEndpoint(const OfiApi* api, struct fi_info* info, struct fid_domain* domain)
    : api_(api), info_(info), domain_(domain) {}

OfiEndpoint::~OfiEndpoint() {
  // Closing the endpoint first cancels what is still posted; then nothing can touch the CQ.
  if (ep_ != nullptr) fi_close(&ep_->fid);
  if (av_ != nullptr) fi_close(&av_->fid);
  if (cq_ != nullptr) fi_close(&cq_->fid);
}

bool OfiEndpoint::open(std::string* error) {
  struct fi_cq_attr cq_attr;
  memset(&cq_attr, 0, sizeof(cq_attr));
  cq_attr.format = FI_CQ_FORMAT_DATA;
  cq_attr.size = 4096;
  cq_attr.wait_obj = FI_WAIT_NONE;
  struct fi_av_attr av_attr;
  memset(&av_attr, 0, sizeof(av_attr));
  av_attr.type = FI_AV_TABLE;
  av_attr.count = 8;
  const char* step = "fi_cq_open";
  int rc = fi_cq_open(domain_, &cq_attr, &cq_, nullptr);
  if (rc == 0) step = "fi_av_open", rc = fi_av_open(domain_, &av_attr, &av_, nullptr);
  if (rc == 0) step = "fi_endpoint", rc = fi_endpoint(domain_, info_, &ep_, nullptr);
  if (rc == 0) step = "fi_ep_bind(cq)", rc = fi_ep_bind(ep_, &cq_->fid, FI_TRANSMIT | FI_RECV);
  if (rc == 0) step = "fi_ep_bind(av)", rc = fi_ep_bind(ep_, &av_->fid, 0);
  if (rc == 0) step = "fi_enable", rc = fi_enable(ep_);
  if (rc != 0) {
    *error = std::string(step) + ": " + api_->strerror(-rc);
    return false;
  }
  std::vector<uint8_t> mine;
  if (!localAddress(&mine)) {
    *error = last_error_;
    return false;
  }
  addr_len_ = mine.size();  // every peer of this provider has an address of this length
  return true;
}

bool OfiEndpoint::localAddress(std::vector<uint8_t>* out) {
  size_t len = 64;
  out->assign(len, 0);
  int rc = fi_getname(&ep_->fid, out->data(), &len);
  if (rc == -FI_ETOOSMALL) {
    out->assign(len, 0);
    rc = fi_getname(&ep_->fid, out->data(), &len);
  }
  if (rc != 0) {
    last_error_ = std::string("fi_getname: ") + api_->strerror(-rc);
    return false;
  }
  out->resize(len);
  return true;
}

bool OfiEndpoint::addPeer(const uint8_t* addr, size_t len, uint64_t* peer) {
  if (addr == nullptr || len != addr_len_) {  // the length came from the peer: check it
    last_error_ = "the peer's address is " + std::to_string(len) + " bytes, but this provider's are " +
                  std::to_string(addr_len_);
    return false;
  }
  fi_addr_t fi_addr = FI_ADDR_NOTAVAIL;
  int n = fi_av_insert(av_, addr, 1, &fi_addr, 0, nullptr);
  if (n != 1) {
    last_error_ = std::string("fi_av_insert rejected the peer address (") +
                  (n < 0 ? api_->strerror(-n) : "0 inserted") + ")";
    return false;
  }
  *peer = fi_addr;
  if (peer_addrs_.size() <= fi_addr) peer_addrs_.resize(fi_addr + 1);
  peer_addrs_[fi_addr].assign(addr, addr + len);
  return true;
}

std::string OfiEndpoint::peerName(uint64_t peer) {
  if (peer >= peer_addrs_.size() || peer_addrs_[peer].empty()) return "unknown peer";
  char text[128];
  size_t len = sizeof(text);
  fi_av_straddr(av_, peer_addrs_[peer].data(), text, &len);
  text[sizeof(text) - 1] = '\0';
  return text;
}

PostResult OfiEndpoint::classify(ssize_t rc, const char* what) {
  if (rc == 0) return PostResult::kPosted;
  if (rc == -FI_EAGAIN) return PostResult::kRetry;
  last_error_ = std::string(what) + ": " + api_->strerror(static_cast<int>(-rc));
  return PostResult::kFailed;
}

PostResult OfiEndpoint::postRecv(void* buf, size_t len, void* desc, OpContext* ctx) {
  return classify(fi_recv(ep_, buf, len, desc, FI_ADDR_UNSPEC, ctx), "fi_recv");
}

PostResult OfiEndpoint::postSend(uint64_t peer, const void* buf, size_t len, void* desc,
                                 OpContext* ctx) {
  return classify(fi_send(ep_, buf, len, desc, peer, ctx), "fi_send");
}

PostResult OfiEndpoint::postWrite(uint64_t peer, const void* buf, size_t len, void* desc,
                                  uint64_t remote_addr, uint64_t key, bool with_imm, uint32_t imm,
                                  OpContext* ctx) {
  if (with_imm)
    return classify(fi_writedata(ep_, buf, len, desc, imm, peer, remote_addr, key, ctx),
                    "fi_writedata");
  return classify(fi_write(ep_, buf, len, desc, peer, remote_addr, key, ctx), "fi_write");
}

PostResult OfiEndpoint::postRead(uint64_t peer, void* buf, size_t len, void* desc, uint64_t remote_addr,
                                 uint64_t key, OpContext* ctx) {
  return classify(fi_read(ep_, buf, len, desc, peer, remote_addr, key, ctx), "fi_read");
}

int OfiEndpoint::poll(Completion* out, int max) {
  struct fi_cq_data_entry entries[16];
  if (max > 16) max = 16;
  ssize_t n = fi_cq_read(cq_, entries, max);
  if (n > 0) {
    for (ssize_t i = 0; i < n; ++i) {
      Completion& c = out[i];
      if (entries[i].flags & FI_REMOTE_CQ_DATA) {
        c.kind = Completion::Kind::kRemoteWrite;
        c.context = nullptr;
        c.imm = static_cast<uint32_t>(entries[i].data);
      } else {
        c.kind = Completion::Kind::kLocal;
        c.context = static_cast<OpContext*>(entries[i].op_context);
        c.length = entries[i].len;
      }
    }
    return static_cast<int>(n);
  }
  if (n == -FI_EAGAIN) return 0;
  if (n == -FI_EAVAIL) {
    struct fi_cq_err_entry err;
    memset(&err, 0, sizeof(err));
    if (fi_cq_readerr(cq_, &err, 0) < 0) {
      last_error_ = "fi_cq_readerr failed";
      return -1;
    }
    char detail[256] = "";
    fi_cq_strerror(cq_, err.prov_errno, err.err_data, detail, sizeof(detail));
    Completion& c = out[0];
    c.kind = Completion::Kind::kError;
    c.context = static_cast<OpContext*>(err.op_context);
    c.error = std::string(api_->strerror(err.err)) + " (" + detail + ")";
    return 1;
  }
  last_error_ = std::string("fi_cq_read: ") + api_->strerror(static_cast<int>(-n));
  return -1;
}

}  // namespace epyard::net::ofi
