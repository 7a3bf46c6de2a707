// Role-side building blocks shared by the conformance cases: connection set-up over the peer
// channel, retry loops for the non-blocking calls (each bounded by a deadline), registered host
// buffers and the data patterns the receiver checks byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "harness.h"

namespace epyard::nettest {

inline constexpr Millis kConnectTimeout{20000};
inline constexpr Millis kTransferTimeout{30000};
// Value given to EPYARD_NET_TIMEOUT_MS by the cases that time the plugin's error detection, and
// the slack allowed on top of it for scheduling on a loaded two-core machine.
inline constexpr int kNetTimeoutMs = 3000;
inline constexpr int kNetTimeoutSlackMs = 2000;
inline constexpr int kMaxGroup = 8;

// What the non-blocking loops do between unsuccessful polls: yield first (the plugin's progress
// threads, if any, and the other process share two cores), then sleep a little.
class Backoff {
 public:
  void idle();
  void reset() { idle_polls_ = 0; }

 private:
  unsigned idle_polls_ = 0;
};

struct RecvLink {
  void* listen_comm = nullptr;
  void* comm = nullptr;
};

// Receiver: listen on role.dev, send the handle to the sender, accept until a comm arrives.
RecvLink listenAndAccept(Role& role);
// Sender: take the handle from the receiver, connect until a comm arrives.
void* connectToPeer(Role& role);
// closeRecv then closeListen; each required to succeed.
void closeRecvLink(Role& role, RecvLink& link);
void closeSendComm(Role& role, void*& comm);

// Host memory from mmap, page aligned, registered with at most one comm.
class HostBuffer {
 public:
  explicit HostBuffer(size_t size);
  // Unmaps only if not registered: a still-registered buffer is leaked on purpose, because the
  // plugin may still use it (this runs while a failing role unwinds).
  ~HostBuffer();
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  void* mhandle() const { return mhandle_; }

  void registerWith(Role& role, void* comm);  // regMr(NCCL_PTR_HOST), required to succeed
  void deregister(Role& role);                // deregMr, required to succeed
  // Forget the registration without deregMr (the comm was closed with it); unmaps.
  void abandonRegistration();

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* comm_ = nullptr;
  void* mhandle_ = nullptr;
};

// isend / irecv until the plugin returns a request; NULL means "try again". Between tries,
// progress() (if given) tests the requests already in flight, as NCCL's proxy does. A plugin
// error or the deadline fails the role; `what` names the call in the message.
void* postSend(Role& role, void* comm, void* data, size_t size, int tag, void* mhandle,
               const Deadline& deadline, const char* what,
               const std::function<void()>& progress = nullptr);
void* postRecv(Role& role, void* comm, int n, void** data, const size_t* sizes, int* tags,
               void** mhandles, const Deadline& deadline, const char* what,
               const std::function<void()>& progress = nullptr);

// One isend / irecv call: the request, or nullptr when the plugin said "try again". A plugin
// error fails the role.
void* trySend(Role& role, void* comm, void* data, size_t size, int tag, void* mhandle,
              const char* what);
void* tryRecv(Role& role, void* comm, int n, void** data, const size_t* sizes, int* tags,
              void** mhandles, const char* what);

// Requests in flight, one per slot. progress() tests each once, as NCCL's proxy loop does.
class RequestSet {
 public:
  using OnDone = std::function<void(size_t slot, const int* sizes)>;

  explicit RequestSet(size_t slots) : requests_(slots, nullptr) {}
  size_t slots() const { return requests_.size(); }
  bool busy(size_t slot) const { return requests_[slot] != nullptr; }
  size_t inFlight() const { return in_flight_; }
  void post(size_t slot, void* request);
  // test() every request in flight once; a finished one frees its slot and is handed to
  // on_done. Returns how many finished. A plugin error fails the role.
  size_t progress(Role& role, const char* what, const OnDone& on_done = nullptr);
  // progress() until nothing is in flight; fails the role at the deadline.
  void drain(Role& role, const Deadline& deadline, const char* what,
             const OnDone& on_done = nullptr);

 private:
  std::vector<void*> requests_;
  size_t in_flight_ = 0;
};

// One test() call. Returns true when the request finished successfully (sizes filled); a plugin
// error fails the role.
bool testOnce(Role& role, void* request, int* sizes, const char* what);
// test() until done; fails the role on an error or at the deadline.
void waitDone(Role& role, void* request, int* sizes, const Deadline& deadline, const char* what);

// For error-path cases: test() until done or an error, or the deadline. Returns the first
// non-success result, or ncclSuccess with *done telling whether it completed.
ncclResult_t waitOutcome(Role& role, void* request, int* sizes, const Deadline& deadline,
                         int* done);

// Deterministic content: byte i of a message with seed s. Different seeds give different bytes
// at (almost) every offset, so a message landing in the wrong buffer is caught.
void fillPattern(void* data, size_t size, uint64_t seed);
// "" when data holds the pattern; otherwise the first bad offset, the bytes there and how many
// bytes differ.
std::string checkPattern(const void* data, size_t size, uint64_t seed);
// "" when every byte equals value; otherwise the first offset that does not.
std::string checkFilled(const void* data, size_t size, uint8_t value);

uint64_t mix64(uint64_t x);

// Receiver-side fill value of buffers before a receive: a byte that is neither written by a
// correct receive (outside the message) nor likely in a pattern run.
inline constexpr uint8_t kSentinel = 0xE5;

}  // namespace epyard::nettest
