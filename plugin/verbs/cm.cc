// The connection manager: RC QPs need each other's numbers before they can talk, and the engine
// reaches a listener it has never spoken to. So every process runs one thread that accepts TCP
// connections on (EPYARD_IB_CM_ADDR, an ephemeral port); a request names an endpoint of this
// process and carries the asker's address and QP; the endpoint makes a QP connected to it and
// the answer carries that QP's number. Every wait on the asking side is bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "engine/clock.h"
#include "engine/log.h"
#include "verbs/verbs.h"

namespace epyard::net::verbs {
namespace {

constexpr uint32_t kRequestMagic = 0x45504351;  // "EPCQ"
constexpr uint32_t kReplyMagic = 0x45504352;    // "EPCR"

struct Request {
  uint32_t magic;
  uint32_t target;         // endpoint id at the server
  uint64_t target_secret;  // from the target's address: proves the asker was given it
  EndpointAddr from;
  QpInfo qp;
};

struct Reply {
  uint32_t magic;
  int32_t ok;
  QpInfo qp;
  char error[160];
};

int64_t nowMs() { return nowNs() / 1000000; }

// Reads or writes exactly n bytes before `deadline_ms` (monotonic); false on error or timeout.
bool transfer(int fd, void* p, size_t n, bool out, int64_t deadline_ms) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    const int64_t left = deadline_ms - nowMs();
    if (left <= 0) return false;
    pollfd pfd{fd, static_cast<short>(out ? POLLOUT : POLLIN), 0};
    const int r = ::poll(&pfd, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t k = out ? ::send(fd, b, n, MSG_NOSIGNAL) : ::recv(fd, b, n, 0);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    b += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

std::string hostPort(uint32_t ipv4, uint16_t port_be) {
  char text[INET_ADDRSTRLEN] = "?";
  in_addr a{};
  a.s_addr = ipv4;
  inet_ntop(AF_INET, &a, text, sizeof(text));
  return std::string(text) + ":" + std::to_string(ntohs(port_be));
}

}  // namespace

ConnManager* ConnManager::get(uint32_t ipv4, std::string* error) {
  static std::mutex once;
  static ConnManager* cm = nullptr;  // never destroyed: endpoints may outlive static destructors
  std::lock_guard<std::mutex> lock(once);
  if (cm != nullptr) return cm;
  auto* fresh = new ConnManager;
  if (!fresh->start(ipv4, error)) {
    delete fresh;
    return nullptr;
  }
  cm = fresh;
  return cm;
}

bool ConnManager::start(uint32_t ipv4, std::string* error) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = ipv4;
  socklen_t len = sizeof(sa);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
      ::listen(listen_fd_, 128) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    *error = "verbs connection manager cannot listen on " + hostPort(ipv4, 0) + ": " + strerror(errno) +
             " (set EPYARD_IB_CM_ADDR)";
    if (listen_fd_ >= 0) ::close(listen_fd_);
    return false;
  }
  ipv4_ = ipv4;
  port_ = sa.sin_port;
  EPY_INFO(NCCL_INIT | NCCL_NET, "epyard: verbs connection manager listening on %s", hostPort(ipv4_, port_).c_str());
  std::thread([this] { serve(); }).detach();
  return true;
}

uint32_t ConnManager::add(VerbsEndpoint* ep) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint32_t id = next_id_++;
  endpoints_[id] = ep;
  return id;
}

void ConnManager::remove(uint32_t id) {
  std::lock_guard<std::mutex> lock(mutex_);  // waits for an answer in progress on it
  endpoints_.erase(id);
}

void ConnManager::serve() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      EPY_WARN("epyard: verbs connection manager at %s stopped: accept: %s",
               hostPort(ipv4_, port_).c_str(), strerror(errno));
      return;
    }
    if (answering_.fetch_add(1) < kMaxConcurrentAnswers) {
      std::thread([this, fd] {  // detached: the manager is never destroyed
        answer(fd);
        ::close(fd);
        answering_.fetch_sub(1);
      }).detach();
    } else {
      answer(fd);
      ::close(fd);
      answering_.fetch_sub(1);
    }
  }
}

void ConnManager::answer(int fd) {
  const int64_t deadline = nowMs() + 5000;
  Request req{};
  if (!transfer(fd, &req, sizeof(req), false, deadline) || req.magic != kRequestMagic ||
      req.from.magic != kEndpointAddrMagic)
    return;  // not ours, or gone: the asker times out with its own message
  Reply rep{};
  rep.magic = kReplyMagic;
  std::string error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = endpoints_.find(req.target);
    if (it == endpoints_.end()) {
      error = "endpoint " + std::to_string(req.target) + " is closed";
    } else if (it->second->secret() != req.target_secret) {
      error = "endpoint " + std::to_string(req.target) + " refuses: the request does not carry its secret";
      EPY_WARN("epyard: verbs connection manager: %s (asked by %s)", error.c_str(),
               hostPort(req.from.cm_ipv4, req.from.cm_port).c_str());
    } else {
      rep.ok = it->second->acceptPeer(req.from, req.qp, &rep.qp, &error) ? 1 : 0;
    }
  }
  snprintf(rep.error, sizeof(rep.error), "%s", error.c_str());
  transfer(fd, &rep, sizeof(rep), true, deadline);
}

bool ConnManager::request(const EndpointAddr& to, const EndpointAddr& mine, const QpInfo& local,
                          QpInfo* remote, int timeout_ms, std::string* error) {
  const std::string where = hostPort(to.cm_ipv4, to.cm_port) + " endpoint " + std::to_string(to.endpoint_id);
  const int64_t deadline = nowMs() + timeout_ms;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + strerror(errno);
    return false;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = to.cm_ipv4;
  sa.sin_port = to.cm_port;
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 || errno == EINPROGRESS;
  if (ok) {  // connected once writable with no pending error
    pollfd pfd{fd, POLLOUT, 0};
    const int64_t left = deadline - nowMs();
    int err = 0;
    socklen_t len = sizeof(err);
    ok = left > 0 && ::poll(&pfd, 1, static_cast<int>(left)) == 1 &&
         ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    if (!ok && err != 0) errno = err;
  }
  if (!ok) {
    *error = "cannot reach the verbs connection manager at " + where + ": " +
             (errno != 0 ? strerror(errno) : "timed out");
    ::close(fd);
    return false;
  }
  Request req{};
  req.magic = kRequestMagic;
  req.target = to.endpoint_id;
  req.target_secret = to.secret;
  req.from = mine;
  req.qp = local;
  Reply rep{};
  ok = transfer(fd, &req, sizeof(req), true, deadline) && transfer(fd, &rep, sizeof(rep), false, deadline);
  ::close(fd);
  if (!ok || rep.magic != kReplyMagic) {
    *error = "no answer from the verbs connection manager at " + where + " within " +
             std::to_string(timeout_ms) + " ms";
    return false;
  }
  if (!rep.ok) {
    rep.error[sizeof(rep.error) - 1] = '\0';
    *error = where + " refused the connection: " + rep.error;
    return false;
  }
  *remote = rep.qp;
  return true;
}

}  // namespace epyard::net::verbs
