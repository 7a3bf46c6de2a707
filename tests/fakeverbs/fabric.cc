// The emulated fabric: LIDs claimed as files, UNIX stream sockets between contexts, and the
// service thread that plays the responder (placing data, taking receive WQEs) and completes
// the initiator's WQEs when their acknowledgements come back.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "fake_verbs.h"

namespace epyard::fakeverbs {
namespace {

std::string fabricDir() {
  const char* d = getenv("EPYARD_FAKEVERBS_DIR");
  if (d != nullptr && *d != '\0') return d;
  return "/tmp/epyard-fakeverbs-" + std::to_string(getuid());
}

bool writeFull(int fd, const void* p, size_t n) {
  const char* b = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    b += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool readFull(int fd, void* p, size_t n) {
  char* b = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = recv(fd, b, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void addWriteLockLocked(Context* c, int fd) { c->fd_write_mu[fd] = std::make_unique<std::mutex>(); }

Qp* qpLocked(Context* c, uint32_t qpn) {
  auto it = c->qps.find(qpn);
  return it == c->qps.end() ? nullptr : it->second;
}

Outgoing reply(int fd, const Frame& req, Frame::Type type, ibv_wc_status status) {
  Outgoing o;
  o.fd = fd;
  o.frame.type = type;
  o.frame.src_qpn = req.dst_qpn;
  o.frame.dst_qpn = req.src_qpn;
  o.frame.seq = req.seq;
  o.frame.status = status;
  return o;
}

bool takeRecvWqeLocked(Qp* q, RecvWqe* out) {
  std::deque<RecvWqe>& from =
      q->qp.srq != nullptr ? reinterpret_cast<Srq*>(q->qp.srq)->wqes : q->rq;
  if (from.empty()) return false;
  *out = std::move(from.front());
  from.pop_front();
  return true;
}

// Scatters `len` bytes into the WQE's buffers; false when they are too small or not this
// context's memory with local write access.
bool scatterLocked(Context* c, const std::vector<ibv_sge>& sges, const uint8_t* data,
                   uint64_t len) {
  uint64_t done = 0;
  for (const ibv_sge& s : sges) {
    if (done == len) break;
    const uint64_t n = std::min<uint64_t>(s.length, len - done);
    if (findMrLocked(c, s.lkey, s.addr, n, IBV_ACCESS_LOCAL_WRITE) == nullptr) return false;
    memcpy(reinterpret_cast<void*>(s.addr), data + done, n);
    done += n;
  }
  return done == len;
}

// A frame that needs a receive WQE (a send, a write with immediate), with one in hand.
void deliverLocked(Qp* q, const RecvWqe& w, const Inbound& in, std::vector<Outgoing>* out) {
  ibv_wc wc{};
  wc.wr_id = w.wr_id;
  wc.qp_num = q->qp.qp_num;
  wc.src_qp = in.frame.src_qpn;
  ibv_wc_status ack = IBV_WC_SUCCESS;
  if (in.frame.type == Frame::kWrite) {
    wc.opcode = IBV_WC_RECV_RDMA_WITH_IMM;
    wc.byte_len = static_cast<uint32_t>(in.frame.len);
    wc.wc_flags = IBV_WC_WITH_IMM;
    wc.imm_data = in.frame.imm;
  } else {
    wc.opcode = IBV_WC_RECV;
    wc.byte_len = static_cast<uint32_t>(in.frame.len);
    if (in.frame.has_imm) {
      wc.wc_flags = IBV_WC_WITH_IMM;
      wc.imm_data = in.frame.imm;
    }
    if (!scatterLocked(q->ctx, w.sges, in.payload.data(), in.frame.len)) {
      wc.status = IBV_WC_LOC_LEN_ERR;
      ack = IBV_WC_REM_INV_REQ_ERR;
    }
  }
  Outgoing o = reply(in.reply_fd, in.frame, Frame::kAck, ack);
  o.shows = reinterpret_cast<Cq*>(q->qp.recv_cq);  // polled once the acknowledgement is out
  o.hold = holdCompletion(o.shows, wc);
  out->push_back(std::move(o));
}

// Responder side of one request frame.
void serveRequestLocked(Context* c, int fd, Frame& f, std::vector<uint8_t>& payload,
                        std::vector<Outgoing>* out) {
  Qp* q = qpLocked(c, f.dst_qpn);
  const bool connected = q != nullptr &&
                         (q->qp.state == IBV_QPS_RTR || q->qp.state == IBV_QPS_RTS) &&
                         q->dest_lid == f.src_lid && q->dest_qpn == f.src_qpn;
  if (!connected) {  // a real responder drops it; the requester's retries run out
    out->push_back(reply(fd, f, f.type == Frame::kReadReq ? Frame::kReadResp : Frame::kAck,
                         IBV_WC_RETRY_EXC_ERR));
    return;
  }
  if (f.type == Frame::kReadReq) {
    Outgoing o = reply(fd, f, Frame::kReadResp, IBV_WC_SUCCESS);
    if (findMrLocked(c, f.rkey, f.remote_addr, f.len, IBV_ACCESS_REMOTE_READ) == nullptr) {
      o.frame.status = IBV_WC_REM_ACCESS_ERR;
    } else {
      o.payload.assign(reinterpret_cast<const uint8_t*>(f.remote_addr),
                       reinterpret_cast<const uint8_t*>(f.remote_addr) + f.len);
      o.frame.len = f.len;
    }
    out->push_back(std::move(o));
    return;
  }
  if (f.type == Frame::kWrite) {
    if (findMrLocked(c, f.rkey, f.remote_addr, f.len, IBV_ACCESS_REMOTE_WRITE) == nullptr) {
      out->push_back(reply(fd, f, Frame::kAck, IBV_WC_REM_ACCESS_ERR));
      return;
    }
    if (f.len > 0) memcpy(reinterpret_cast<void*>(f.remote_addr), payload.data(), f.len);
    if (!f.has_imm) {
      out->push_back(reply(fd, f, Frame::kAck, IBV_WC_SUCCESS));
      return;
    }
    payload.clear();  // placed; the WQE only carries the immediate
  }
  Inbound in{f, std::move(payload), fd};
  RecvWqe w;
  if (q->waiting.empty() && takeRecvWqeLocked(q, &w)) {
    deliverLocked(q, w, in, out);
  } else {
    q->waiting.push_back(std::move(in));  // no receive WQE: wait for one (endless RNR retry)
  }
}

// Requester side: an acknowledgement or read response for WQE f.seq of QP f.dst_qpn.
void serveResponseLocked(Context* c, const Frame& f, const std::vector<uint8_t>& payload) {
  Qp* q = qpLocked(c, f.dst_qpn);
  if (q == nullptr) return;
  auto it = q->pending.find(f.seq);
  if (it == q->pending.end()) return;  // flushed already
  PendingSend p = std::move(it->second);
  q->pending.erase(it);
  ibv_wc wc{};
  wc.wr_id = p.wr_id;
  wc.qp_num = q->qp.qp_num;
  wc.opcode = p.opcode;
  wc.status = static_cast<ibv_wc_status>(f.status);
  if (wc.status == IBV_WC_SUCCESS && f.type == Frame::kReadResp &&
      !scatterLocked(c, p.read_into, payload.data(), f.len))
    wc.status = IBV_WC_LOC_PROT_ERR;
  if (wc.status != IBV_WC_SUCCESS) {
    pushCompletion(reinterpret_cast<Cq*>(q->qp.send_cq), wc);
    failQpLocked(q, IBV_WC_WR_FLUSH_ERR);
    return;
  }
  if (p.opcode == IBV_WC_RDMA_READ || p.signaled)
    pushCompletion(reinterpret_cast<Cq*>(q->qp.send_cq), wc);
}

// The socket `fd` broke. If it was ours to a peer, that peer is gone: the WQEs waiting for its
// acknowledgements fail. Frames from it that wait for a receive WQE are dropped.
void peerGoneLocked(Context* c, int fd) {
  if (!c->dead_fds.insert(fd).second)
    return;  // closed with the context: a writer may hold its lock
  for (auto it = c->out_fds.begin(); it != c->out_fds.end(); ++it) {
    if (it->second != fd) continue;
    for (auto& [qpn, q] : c->qps)
      if (q->dest_lid == it->first && !q->pending.empty()) failQpLocked(q, IBV_WC_RETRY_EXC_ERR);
    c->out_fds.erase(it);
    break;
  }
  for (auto it = c->in_fds.begin(); it != c->in_fds.end();)
    it = *it == fd ? c->in_fds.erase(it) : it + 1;
  for (auto& [qpn, q] : c->qps)
    for (auto w = q->waiting.begin(); w != q->waiting.end();)
      w = w->reply_fd == fd ? q->waiting.erase(w) : w + 1;
}

void serviceLoop(Context* c) {
  for (;;) {
    std::vector<pollfd> fds;
    {
      std::lock_guard<std::mutex> lock(c->mu);
      if (c->stopping) return;
      fds.push_back({c->wake[0], POLLIN, 0});
      fds.push_back({c->listen_fd, POLLIN, 0});
      for (int fd : c->in_fds) fds.push_back({fd, POLLIN, 0});
      for (auto& [lid, fd] : c->out_fds) fds.push_back({fd, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), 100) <= 0) continue;
    if (fds[0].revents) {
      char b[64];
      if (read(c->wake[0], b, sizeof b) < 0) {
      }
    }
    if (fds[1].revents & POLLIN) {
      int fd = accept(c->listen_fd, nullptr, nullptr);
      if (fd >= 0) {
        std::lock_guard<std::mutex> lock(c->mu);
        c->in_fds.push_back(fd);
        addWriteLockLocked(c, fd);
      }
    }
    for (size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const int fd = fds[i].fd;
      Frame f;
      std::vector<uint8_t> payload;
      bool ok = readFull(fd, &f, sizeof f);
      if (ok && f.len > 0 && f.type != Frame::kReadReq) {
        payload.resize(f.len);
        ok = readFull(fd, payload.data(), f.len);
      }
      std::vector<Outgoing> out;
      {
        std::lock_guard<std::mutex> lock(c->mu);
        if (!ok) {
          peerGoneLocked(c, fd);
        } else if (f.type == Frame::kAck || f.type == Frame::kReadResp) {
          serveResponseLocked(c, f, payload);
        } else {
          serveRequestLocked(c, fd, f, payload, &out);
        }
      }
      sendAll(c, &out);
    }
  }
}

}  // namespace

void pushCompletion(Cq* cq, const ibv_wc& wc) {
  std::lock_guard<std::mutex> lock(cq->mu);
  cq->entries.push_back({wc, 0});
}

uint64_t holdCompletion(Cq* cq, const ibv_wc& wc) {
  std::lock_guard<std::mutex> lock(cq->mu);
  const uint64_t hold = cq->next_hold++;
  cq->entries.push_back({wc, hold});
  ++cq->held;
  return hold;
}

void showCompletion(Cq* cq, uint64_t hold) {
  std::lock_guard<std::mutex> lock(cq->mu);
  for (Cq::Entry& e : cq->entries) {
    if (e.hold != hold) continue;
    e.hold = 0;
    --cq->held;
    break;
  }
  cq->shown.notify_all();
}

void failQpLocked(Qp* q, ibv_wc_status status) {
  q->qp.state = IBV_QPS_ERR;
  for (auto& [seq, p] : q->pending) {
    ibv_wc wc{};
    wc.wr_id = p.wr_id;
    wc.qp_num = q->qp.qp_num;
    wc.opcode = p.opcode;
    wc.status = status;
    status = IBV_WC_WR_FLUSH_ERR;
    pushCompletion(reinterpret_cast<Cq*>(q->qp.send_cq), wc);
  }
  q->pending.clear();
  for (const RecvWqe& w : q->rq) {
    ibv_wc wc{};
    wc.wr_id = w.wr_id;
    wc.qp_num = q->qp.qp_num;
    wc.opcode = IBV_WC_RECV;
    wc.status = IBV_WC_WR_FLUSH_ERR;
    pushCompletion(reinterpret_cast<Cq*>(q->qp.recv_cq), wc);
  }
  q->rq.clear();
}

void rejectWaitingLocked(Qp* q, std::vector<Outgoing>* out) {
  for (const Inbound& in : q->waiting)
    out->push_back(reply(in.reply_fd, in.frame, Frame::kAck, IBV_WC_RETRY_EXC_ERR));
  q->waiting.clear();
}

void drainWaitingLocked(Qp* q, std::vector<Outgoing>* out) {
  RecvWqe w;
  while (!q->waiting.empty() && takeRecvWqeLocked(q, &w)) {
    deliverLocked(q, w, q->waiting.front(), out);
    q->waiting.pop_front();
  }
}

int peerSocketLocked(Context* c, uint32_t lid) {
  auto it = c->out_fds.find(lid);
  if (it != c->out_fds.end()) return it->second;
  std::ifstream in(fabricDir() + "/lid." + std::to_string(lid));
  std::string path;
  if (!std::getline(in, path)) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  c->out_fds[lid] = fd;
  addWriteLockLocked(c, fd);
  if (write(c->wake[1], "w", 1) < 0) {
  }
  return fd;
}

void sendAll(Context* c, std::vector<Outgoing>* out) {
  for (Outgoing& o : *out) {
    std::mutex* mu = nullptr;
    {
      std::lock_guard<std::mutex> lock(c->mu);
      auto it = c->fd_write_mu.find(o.fd);
      if (it != c->fd_write_mu.end()) mu = it->second.get();
    }
    if (mu != nullptr) {
      o.frame.src_lid = c->lid;
      bool ok;
      {
        std::lock_guard<std::mutex> lock(*mu);
        ok = writeFull(o.fd, &o.frame, sizeof o.frame) &&
             (o.payload.empty() || writeFull(o.fd, o.payload.data(), o.payload.size()));
      }
      if (!ok) {  // the peer is gone: what waits on it fails now
        std::lock_guard<std::mutex> lock(c->mu);
        peerGoneLocked(c, o.fd);
      }
    }
    if (o.shows != nullptr) showCompletion(o.shows, o.hold);  // written, or nobody to take it
  }
  out->clear();
}

// Serves a fresh socket first, then claims the lowest free LID by linking a file naming that
// socket to <dir>/lid.<n> (link fails if the name exists): a LID file always names a socket
// that already listens. LIDs of processes that died stay taken (tests are short).
namespace {

// A LID whose owner process is gone (it exited without closing the device, as programs that
// never call ibv_close_device do) is freed: its file and socket are removed. True when freed.
bool reclaimStale(const std::string& lid_file) {
  std::ifstream f(lid_file);
  std::string sock;
  if (!std::getline(f, sock)) return false;
  const size_t at = sock.rfind("/ctx.");
  if (at == std::string::npos) return false;
  const long pid = strtol(sock.c_str() + at + 5, nullptr, 10);
  if (pid <= 0 || kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) return false;
  unlink(sock.c_str());
  return unlink(lid_file.c_str()) == 0;
}

}  // namespace

bool openFabric(Context* c, std::string* error) {
  static std::atomic<int> contexts{0};
  const std::string dir = fabricDir();
  mkdir(dir.c_str(), 0700);
  const std::string stem =
      dir + "/ctx." + std::to_string(getpid()) + "." + std::to_string(contexts++);
  c->sock_path = stem + ".sock";
  unlink(c->sock_path.c_str());
  c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, c->sock_path.c_str(), sizeof(addr.sun_path) - 1);
  if (c->listen_fd < 0 ||
      bind(c->listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(c->listen_fd, 64) != 0 || pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    *error = std::string("fake verbs: cannot serve ") + c->sock_path + ": " + strerror(errno);
    return false;
  }
  const std::string named = stem + ".lid";
  {
    std::ofstream f(named);
    f << c->sock_path << "\n";
    if (!f) {
      *error = "fake verbs: cannot write " + named;
      return false;
    }
  }
  // Claims are serialised by a lock on the fabric's folder, so that freeing a stale LID and
  // taking it are one step (flock is dropped when a process dies).
  const int lock_fd = open((dir + "/.claims").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0 || flock(lock_fd, LOCK_EX) != 0) {
    *error = "fake verbs: cannot lock " + dir + "/.claims: " + strerror(errno);
    if (lock_fd >= 0) close(lock_fd);
    unlink(named.c_str());
    return false;
  }
  struct Unlock {
    int fd;
    ~Unlock() { close(fd); }
  } unlock{lock_fd};
  for (uint32_t lid = 1; lid < 0xc000; ++lid) {  // unicast LIDs
    const std::string file = dir + "/lid." + std::to_string(lid);
    if (link(named.c_str(), file.c_str()) != 0) {
      if (errno != EEXIST || !reclaimStale(file) || link(named.c_str(), file.c_str()) != 0) continue;
    }
    unlink(named.c_str());
    c->lid = lid;
    c->lid_file = file;
    c->service = std::thread(serviceLoop, c);
    return true;
  }
  unlink(named.c_str());
  *error = "fake verbs: no free LID under " + dir;
  return false;
}

void closeFabric(Context* c) {
  {
    std::lock_guard<std::mutex> lock(c->mu);
    c->stopping = true;
  }
  if (c->wake[1] >= 0 && write(c->wake[1], "s", 1) < 0) {
  }
  if (c->service.joinable()) c->service.join();
  for (int fd : c->in_fds) close(fd);
  for (int fd : c->dead_fds) close(fd);
  for (auto& [lid, fd] : c->out_fds) close(fd);
  for (int fd : {c->listen_fd, c->wake[0], c->wake[1]})
    if (fd >= 0) close(fd);
  unlink(c->sock_path.c_str());
  unlink(c->lid_file.c_str());
}

}  // namespace epyard::fakeverbs
