#include "net_ops.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

namespace epyard::nettest {

void Backoff::idle() {
  if (++idle_polls_ < 1000) {
    sched_yield();
  } else {
    usleep(50);
  }
}

RecvLink listenAndAccept(Role& role) {
  RecvLink link;
  char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
  phase("listen");
  NT_REQUIRE_OK(role.net.listen(role.dev, handle, &link.listen_comm));
  NT_REQUIRE(link.listen_comm != nullptr, "listen(dev=%d) succeeded but gave no listen comm",
             role.dev);
  role.peer.send(kMsgHandle, handle, sizeof(handle));
  phase("accept");
  const auto start = Clock::now();
  Deadline deadline(kConnectTimeout);
  Backoff backoff;
  for (;;) {
    ncclResult_t result = role.net.accept(link.listen_comm, &link.comm);
    NT_REQUIRE(result == ncclSuccess, "accept returned %s after %lld ms",
               resultName(result).c_str(), static_cast<long long>(millisSince(start)));
    if (link.comm != nullptr) return link;
    NT_REQUIRE(!deadline.expired(), "accept gave no recv comm within %lld ms",
               static_cast<long long>(kConnectTimeout.count()));
    NT_REQUIRE(!role.peer.peerGone(), "the sender exited while accept gave no recv comm (%lld ms)",
               static_cast<long long>(millisSince(start)));
    backoff.idle();
  }
}

void* connectToPeer(Role& role) {
  char handle[NCCL_NET_HANDLE_MAXSIZE];
  phase("wait for the listen handle");
  role.peer.recv(kMsgHandle, handle, sizeof(handle), Deadline(kConnectTimeout));
  phase("connect");
  const auto start = Clock::now();
  Deadline deadline(kConnectTimeout);
  Backoff backoff;
  void* comm = nullptr;
  for (;;) {
    ncclResult_t result = role.net.connect(role.dev, handle, &comm);
    NT_REQUIRE(result == ncclSuccess, "connect returned %s after %lld ms",
               resultName(result).c_str(), static_cast<long long>(millisSince(start)));
    if (comm != nullptr) return comm;
    NT_REQUIRE(!deadline.expired(), "connect gave no send comm within %lld ms",
               static_cast<long long>(kConnectTimeout.count()));
    NT_REQUIRE(!role.peer.peerGone(),
               "the receiver exited while connect gave no send comm (%lld ms)",
               static_cast<long long>(millisSince(start)));
    backoff.idle();
  }
}

void closeRecvLink(Role& role, RecvLink& link) {
  phase("closeRecv");
  if (link.comm) NT_REQUIRE_OK(role.net.closeRecv(link.comm));
  link.comm = nullptr;
  phase("closeListen");
  if (link.listen_comm) NT_REQUIRE_OK(role.net.closeListen(link.listen_comm));
  link.listen_comm = nullptr;
}

void closeSendComm(Role& role, void*& comm) {
  phase("closeSend");
  if (comm) NT_REQUIRE_OK(role.net.closeSend(comm));
  comm = nullptr;
}

HostBuffer::HostBuffer(size_t size) : size_(size) {
  size_t bytes = size == 0 ? 1 : size;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  NT_REQUIRE(p != MAP_FAILED, "mmap of %zu bytes failed: %s", bytes, strerror(errno));
  data_ = static_cast<uint8_t*>(p);
}

HostBuffer::~HostBuffer() {
  if (comm_ == nullptr && data_ != nullptr) munmap(data_, size_ == 0 ? 1 : size_);
}

void HostBuffer::registerWith(Role& role, void* comm) {
  NT_REQUIRE(comm_ == nullptr, "buffer registered twice");
  void* mhandle = nullptr;
  ncclResult_t result = role.net.regMr(comm, data_, size_, NCCL_PTR_HOST, &mhandle);
  NT_REQUIRE(result == ncclSuccess, "regMr(%p, %zu bytes, NCCL_PTR_HOST) returned %s", data_, size_,
             resultName(result).c_str());
  comm_ = comm;
  mhandle_ = mhandle;
}

void HostBuffer::deregister(Role& role) {
  if (comm_ == nullptr) return;
  void* comm = comm_;
  comm_ = nullptr;
  NT_REQUIRE_OK(role.net.deregMr(comm, mhandle_));
  mhandle_ = nullptr;
}

void HostBuffer::abandonRegistration() {
  comm_ = nullptr;
  mhandle_ = nullptr;
  if (data_) munmap(data_, size_ == 0 ? 1 : size_);
  data_ = nullptr;
}

void* trySend(Role& role, void* comm, void* data, size_t size, int tag, void* mhandle,
              const char* what) {
  void* request = nullptr;
  ncclResult_t result = role.net.isend(comm, data, size, tag, mhandle, &request);
  NT_REQUIRE(result == ncclSuccess, "%s: isend(size=%zu, tag=%d) returned %s", what, size, tag,
             resultName(result).c_str());
  return request;
}

void* tryRecv(Role& role, void* comm, int n, void** data, const size_t* sizes, int* tags,
              void** mhandles, const char* what) {
  void* request = nullptr;
  ncclResult_t result = role.net.irecv(comm, n, data, sizes, tags, mhandles, &request);
  NT_REQUIRE(result == ncclSuccess, "%s: irecv(n=%d, sizes[0]=%zu, tags[0]=%d) returned %s", what,
             n, n > 0 ? sizes[0] : 0, n > 0 ? tags[0] : 0, resultName(result).c_str());
  return request;
}

void* postSend(Role& role, void* comm, void* data, size_t size, int tag, void* mhandle,
               const Deadline& deadline, const char* what, const std::function<void()>& progress) {
  const auto start = Clock::now();
  Backoff backoff;
  for (;;) {
    if (void* request = trySend(role, comm, data, size, tag, mhandle, what)) return request;
    NT_REQUIRE(!deadline.expired(),
               "%s: isend(size=%zu, tag=%d) returned no request for %lld ms (deadline)", what, size,
               tag, static_cast<long long>(millisSince(start)));
    if (progress) progress();
    backoff.idle();
  }
}

void* postRecv(Role& role, void* comm, int n, void** data, const size_t* sizes, int* tags,
               void** mhandles, const Deadline& deadline, const char* what,
               const std::function<void()>& progress) {
  const auto start = Clock::now();
  Backoff backoff;
  for (;;) {
    if (void* request = tryRecv(role, comm, n, data, sizes, tags, mhandles, what)) return request;
    NT_REQUIRE(!deadline.expired(), "%s: irecv(n=%d) returned no request for %lld ms (deadline)",
               what, n, static_cast<long long>(millisSince(start)));
    if (progress) progress();
    backoff.idle();
  }
}

void RequestSet::post(size_t slot, void* request) {
  NT_REQUIRE(requests_[slot] == nullptr, "request slot %zu posted twice", slot);
  requests_[slot] = request;
  ++in_flight_;
}

size_t RequestSet::progress(Role& role, const char* what, const OnDone& on_done) {
  size_t finished = 0;
  for (size_t slot = 0; slot < requests_.size(); ++slot) {
    if (requests_[slot] == nullptr) continue;
    int sizes[kMaxGroup];
    for (int& s : sizes) s = -1;
    if (!testOnce(role, requests_[slot], sizes, what)) continue;
    requests_[slot] = nullptr;
    --in_flight_;
    ++finished;
    if (on_done) on_done(slot, sizes);
  }
  return finished;
}

void RequestSet::drain(Role& role, const Deadline& deadline, const char* what,
                       const OnDone& on_done) {
  const auto start = Clock::now();
  Backoff backoff;
  while (in_flight_ > 0) {
    if (progress(role, what, on_done) > 0) {
      backoff.reset();
      continue;
    }
    NT_REQUIRE(!deadline.expired(), "%s: %zu requests still not done after %lld ms (deadline)",
               what, in_flight_, static_cast<long long>(millisSince(start)));
    backoff.idle();
  }
}

bool testOnce(Role& role, void* request, int* sizes, const char* what) {
  int done = 0;
  ncclResult_t result = role.net.test(request, &done, sizes);
  NT_REQUIRE(result == ncclSuccess, "%s: test returned %s", what, resultName(result).c_str());
  return done != 0;
}

void waitDone(Role& role, void* request, int* sizes, const Deadline& deadline, const char* what) {
  const auto start = Clock::now();
  Backoff backoff;
  while (!testOnce(role, request, sizes, what)) {
    NT_REQUIRE(!deadline.expired(), "%s: request not done after %lld ms (deadline)", what,
               static_cast<long long>(millisSince(start)));
    backoff.idle();
  }
}

ncclResult_t waitOutcome(Role& role, void* request, int* sizes, const Deadline& deadline,
                         int* done) {
  Backoff backoff;
  for (;;) {
    *done = 0;
    ncclResult_t result = role.net.test(request, done, sizes);
    if (result != ncclSuccess || *done) return result;
    if (deadline.expired()) return ncclSuccess;
    backoff.idle();
  }
}

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

namespace {

inline uint64_t patternWord(uint64_t seed, size_t word_idx) {
  return mix64(seed * 0xD1B54A32D192ED03ull + word_idx);
}

}  // namespace

void fillPattern(void* data, size_t size, uint64_t seed) {
  auto* out = static_cast<uint8_t*>(data);
  size_t words = size / 8;
  for (size_t k = 0; k < words; ++k) {
    uint64_t w = patternWord(seed, k);
    memcpy(out + 8 * k, &w, 8);
  }
  if (size % 8) {
    uint64_t w = patternWord(seed, words);
    memcpy(out + 8 * words, &w, size % 8);
  }
}

std::string checkPattern(const void* data, size_t size, uint64_t seed) {
  const auto* in = static_cast<const uint8_t*>(data);
  size_t bad = 0;
  size_t first_bad = 0;
  uint8_t want_first = 0;
  uint8_t got_first = 0;
  for (size_t base = 0; base < size; base += 8) {
    uint64_t w = patternWord(seed, base / 8);
    uint8_t want[8];
    memcpy(want, &w, 8);
    size_t n = size - base < 8 ? size - base : 8;
    if (memcmp(in + base, want, n) == 0) continue;
    for (size_t i = 0; i < n; ++i) {
      if (in[base + i] == want[i]) continue;
      if (bad++ == 0) {
        first_bad = base + i;
        want_first = want[i];
        got_first = in[base + i];
      }
    }
  }
  if (bad == 0) return std::string();
  return formatString("%zu of %zu bytes differ; first at offset %zu: expected 0x%02x, got 0x%02x",
                      bad, size, first_bad, want_first, got_first);
}

std::string checkFilled(const void* data, size_t size, uint8_t value) {
  const auto* in = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) {
    if (in[i] != value) {
      return formatString("offset %zu holds 0x%02x, expected untouched 0x%02x", i, in[i], value);
    }
  }
  return std::string();
}

}  // namespace epyard::nettest
