// Conformance on error paths: truncation, a peer killed mid-transfer, corrupted listen handles
// and bad registrations. Each must end in an error code within EPYARD_NET_TIMEOUT_MS (set to
// kNetTimeoutMs here), with a WARN logged, never in a crash or a hang.
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <functional>
#include <vector>

#include "conformance.h"

namespace epyard::nettest {
namespace {

using NetFaults = NetCase;

constexpr size_t kMiB = 1024 * 1024;
constexpr Millis kErrorBudget{kNetTimeoutMs + kNetTimeoutSlackMs};
// How long the error cases keep waiting past the budget, so a late error is reported with its
// real delay rather than as "none".
constexpr Millis kOverrun{5000};

// How a transfer that is expected to fail ended.
struct Outcome {
  ncclResult_t result = ncclSuccess;
  bool done = false;         // completed successfully
  bool got_request = false;  // isend/irecv handed out a request
  int size = -1;             // size test() reported, when done
  int64_t elapsed_ms = 0;    // from `start`
  std::string where;         // the call that returned the error, or why none came
  std::string history;       // earlier steps of the same wait, for the message

  bool failed() const { return result != ncclSuccess; }
  std::string describe() const {
    std::string last;
    if (failed()) {
      last = formatString("%s returned %s after %lld ms", where.c_str(), resultName(result).c_str(),
                          static_cast<long long>(elapsed_ms));
    } else if (done) {
      last = formatString("completed successfully (size %d) after %lld ms", size,
                          static_cast<long long>(elapsed_ms));
    } else {
      last = formatString("no error after %lld ms (%s)", static_cast<long long>(elapsed_ms),
                          where.c_str());
    }
    return history + last;
  }
};

// test() until an error, completion or the deadline.
Outcome pendingOutcome(Role& role, void* request, Clock::time_point start,
                       const Deadline& deadline) {
  Outcome out;
  out.got_request = true;
  int done = 0;
  out.result = waitOutcome(role, request, &out.size, deadline, &done);
  out.done = done != 0 && out.result == ncclSuccess;
  out.elapsed_ms = millisSince(start);
  out.where = out.failed() ? "test" : "test kept reporting not done";
  return out;
}

// isend (retrying "try again") then test(), until an error, completion or the deadline.
Outcome sendOutcome(Role& role, void* comm, void* data, size_t size, int tag, void* mhandle,
                    Clock::time_point start, const Deadline& deadline) {
  Backoff backoff;
  for (;;) {
    void* request = nullptr;
    Outcome out;
    out.result = role.net.isend(comm, data, size, tag, mhandle, &request);
    out.elapsed_ms = millisSince(start);
    if (out.failed()) {
      out.where = "isend";
      return out;
    }
    if (request) return pendingOutcome(role, request, start, deadline);
    if (deadline.expired()) {
      out.where = "isend kept returning no request";
      return out;
    }
    backoff.idle();
  }
}

Outcome recvOutcome(Role& role, void* comm, void* data, size_t capacity, int tag, void* mhandle,
                    Clock::time_point start, const Deadline& deadline) {
  Backoff backoff;
  for (;;) {
    void* request = nullptr;
    Outcome out;
    out.result = role.net.irecv(comm, 1, &data, &capacity, &tag, &mhandle, &request);
    out.elapsed_ms = millisSince(start);
    if (out.failed()) {
      out.where = "irecv";
      return out;
    }
    if (request) return pendingOutcome(role, request, start, deadline);
    if (deadline.expired()) {
      out.where = "irecv kept returning no request";
      return out;
    }
    backoff.idle();
  }
}

// The checks every error case makes on the side that must see the error.
void expectTimelyError(const Outcome& out, int warns_before, const char* what) {
  NT_EXPECT(out.failed(), "%s: expected an error within %lld ms, but: %s", what,
            static_cast<long long>(kErrorBudget.count()), out.describe().c_str());
  if (!out.failed()) return;
  NT_EXPECT(out.elapsed_ms < kErrorBudget.count(),
            "%s: the error came after %lld ms, expected within EPYARD_NET_TIMEOUT_MS (%d ms) + "
            "%d ms slack",
            what, static_cast<long long>(out.elapsed_ms), kNetTimeoutMs, kNetTimeoutSlackMs);
  NT_EXPECT(warnCount() > warns_before, "%s: %s but the plugin logged no WARN", what,
            out.describe().c_str());
  note("%s: %s", what, out.describe().c_str());
}

// ---- truncation -------------------------------------------------------------------------------

// The receiver posts kPosted bytes and the sender sends more: both sides must get an error, and
// nothing past the posted bytes may be written.
void sendLargerThanReceive(int version, size_t sent) {
  constexpr size_t kPosted = 1000;
  const size_t buffer_bytes = sent + 4096;
  auto receiver = [=](Role& role) {
    RecvLink link = listenAndAccept(role);
    HostBuffer buf(buffer_bytes);
    buf.registerWith(role, link.comm);
    memset(buf.data(), kSentinel, buffer_bytes);
    phase("receive %zu bytes into %zu posted", sent, kPosted);
    int warns = warnCount();
    auto start = Clock::now();
    Outcome out = recvOutcome(role, link.comm, buf.data(), kPosted, 9, buf.mhandle(), start,
                              Deadline(kErrorBudget + kOverrun));
    std::string what = formatString("receiver, %zu bytes sent into %zu posted", sent, kPosted);
    expectTimelyError(out, warns, what.c_str());
    std::string bad = checkFilled(buf.data() + kPosted, buffer_bytes - kPosted, kSentinel);
    NT_EXPECT(bad.empty(), "%s: receive overflowed the posted %zu bytes: %s", what.c_str(), kPosted,
              bad.c_str());
    phase("sync before closing");
    role.peer.signal(kMsgDone);
    role.peer.await(kMsgDone, Deadline(kErrorBudget + kOverrun + kOverrun));
    buf.deregister(role);
    closeRecvLink(role, link);
  };
  auto sender = [=](Role& role) {
    void* comm = connectToPeer(role);
    HostBuffer buf(buffer_bytes);
    buf.registerWith(role, comm);
    fillPattern(buf.data(), sent, 77);
    phase("send %zu bytes into %zu posted", sent, kPosted);
    int warns = warnCount();
    auto start = Clock::now();
    Outcome out = sendOutcome(role, comm, buf.data(), sent, 9, buf.mhandle(), start,
                              Deadline(kErrorBudget + kOverrun));
    std::string what = formatString("sender, %zu bytes sent into %zu posted", sent, kPosted);
    expectTimelyError(out, warns, what.c_str());
    phase("sync before closing");
    role.peer.signal(kMsgDone);
    role.peer.await(kMsgDone, Deadline(kErrorBudget + kOverrun + kOverrun));
    buf.deregister(role);
    closeSendComm(role, comm);
  };
  RoleSpec recv_spec{receiver};
  RoleSpec send_spec{sender};
  runRoles(version, recv_spec, &send_spec, withNetTimeout());
}

TEST_P(NetFaults, SendLargerThanReceiveSmall) { sendLargerThanReceive(version(), 4000); }
TEST_P(NetFaults, SendLargerThanReceiveLarge) { sendLargerThanReceive(version(), kMiB); }

// ---- peer killed ------------------------------------------------------------------------------

constexpr size_t kKillTransferBytes = 64 * kMiB;
constexpr size_t kKillWindow = 4;
constexpr Millis kVictimLimit{60000};

// kInFlight: the victim keeps kKillWindow transfers of 64 MiB going and the killer has its own
// window outstanding when it kills (256 MiB in flight cannot all sit in socket buffers, so
// some must fail). kIdle: the victim has nothing posted; the killer's next transfer must fail.
enum class KillMode { kInFlight, kIdle };

void* postTransfer(Role& role, void* comm, bool is_sender, HostBuffer& buf,
                   const Deadline& deadline, const std::function<void()>& progress = nullptr) {
  void* data = buf.data();
  void* mhandle = buf.mhandle();
  size_t size = kKillTransferBytes;
  int tag = 3;
  return is_sender
             ? postSend(role, comm, data, size, tag, mhandle, deadline, "isend", progress)
             : postRecv(role, comm, 1, &data, &size, &tag, &mhandle, deadline, "irecv", progress);
}

// The victim: one transfer, then (kInFlight) keeps its window full or (kIdle) sleeps, until the
// other role kills it.
void transferUntilKilled(Role& role, void* comm, bool is_sender, KillMode mode) {
  pid_t pid = getpid();
  role.peer.send(kMsgPid, &pid, sizeof(pid));
  HostBuffer buf(kKillTransferBytes);
  buf.registerWith(role, comm);
  Deadline deadline(kVictimLimit);
  phase("first transfer");
  int got = -1;
  waitDone(role, postTransfer(role, comm, is_sender, buf, deadline), &got, deadline,
           "first transfer");
  if (mode == KillMode::kIdle) {
    phase("idle, waiting to be killed");
    while (!deadline.expired()) usleep(10 * 1000);
  } else {
    phase("transfer loop, waiting to be killed");
    RequestSet set(kKillWindow);
    auto progress = [&] { set.progress(role, "transfer before the kill"); };
    while (!deadline.expired()) {
      for (size_t slot = 0; slot < kKillWindow; ++slot) {
        if (!set.busy(slot))
          set.post(slot, postTransfer(role, comm, is_sender, buf, deadline, progress));
      }
      progress();
      sched_yield();
    }
  }
  NT_EXPECT(false, "the %s was not killed within %lld ms", is_sender ? "sender" : "receiver",
            static_cast<long long>(kVictimLimit.count()));
}

// After the kill: test the requests that were in flight until one fails; if they all complete,
// post a new transfer, which must fail (an error from isend/irecv or from its test).
Outcome outcomeAfterKill(Role& role, void* comm, bool is_sender, HostBuffer& buf,
                         std::vector<void*> pending, Clock::time_point start,
                         const Deadline& deadline) {
  Outcome out;
  size_t completed = 0;
  const size_t in_flight = pending.size();
  Backoff backoff;
  while (!pending.empty() && !deadline.expired()) {
    for (size_t i = 0; i < pending.size(); ++i) {
      int done = 0;
      out.result = role.net.test(pending[i], &done, &out.size);
      out.elapsed_ms = millisSince(start);
      if (out.failed()) {
        out.where = "test";
        out.history =
            formatString("%zu of %zu requests in flight completed first; ", completed, in_flight);
        return out;
      }
      if (done) {
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i--));
        ++completed;
      }
    }
    backoff.idle();
  }
  if (!pending.empty()) {
    out.where = formatString("test kept reporting %zu requests not done", pending.size());
    return out;
  }
  std::string history = in_flight == 0
                            ? std::string("nothing was in flight at the kill; ")
                            : formatString("all %zu requests in flight completed; ", in_flight);
  void* data = buf.data();
  out = is_sender
            ? sendOutcome(role, comm, data, kKillTransferBytes, 3, buf.mhandle(), start, deadline)
            : recvOutcome(role, comm, data, kKillTransferBytes, 3, buf.mhandle(), start, deadline);
  out.history = history + "then a new " + (is_sender ? "send: " : "receive: ");
  return out;
}

// The killer: one transfer, (kInFlight) its window posted, SIGKILL to the victim, then its own
// side must report an error within the budget.
void killPeer(Role& role, void* comm, bool is_sender, KillMode mode) {
  pid_t victim = -1;
  role.peer.recv(kMsgPid, &victim, sizeof(victim), Deadline(kConnectTimeout));
  HostBuffer buf(kKillTransferBytes);
  buf.registerWith(role, comm);
  phase("first transfer");
  int got = -1;
  auto first = Clock::now();
  waitDone(role, postTransfer(role, comm, is_sender, buf, Deadline(kTransferTimeout)), &got,
           Deadline(kTransferTimeout), "first transfer");
  note("first 64 MiB transfer took %lld ms", static_cast<long long>(millisSince(first)));
  std::vector<void*> pending;
  if (mode == KillMode::kInFlight) {
    phase("post %zu transfers, then kill", kKillWindow);
    for (size_t i = 0; i < kKillWindow; ++i) {
      pending.push_back(postTransfer(role, comm, is_sender, buf, Deadline(kTransferTimeout)));
    }
    usleep(10 * 1000);
  }
  int warns = warnCount();
  NT_REQUIRE(kill(victim, SIGKILL) == 0, "kill(%d, SIGKILL) failed: %s", static_cast<int>(victim),
             strerror(errno));
  auto start = Clock::now();
  phase("waiting for an error after the kill");
  Outcome out = outcomeAfterKill(role, comm, is_sender, buf, pending, start,
                                 Deadline(kErrorBudget + kOverrun));
  std::string what = formatString(
      "%s after the %s was SIGKILLed (%s)", is_sender ? "sender" : "receiver",
      is_sender ? "receiver" : "sender", mode == KillMode::kIdle ? "idle" : "transfers in flight");
  expectTimelyError(out, warns, what.c_str());
  buf.deregister(role);
}

void runKillCase(int version, bool killer_is_sender, KillMode mode) {
  auto receiver = [=](Role& role) {
    RecvLink link = listenAndAccept(role);
    if (killer_is_sender) {
      transferUntilKilled(role, link.comm, false, mode);
    } else {
      killPeer(role, link.comm, false, mode);
      closeRecvLink(role, link);
    }
  };
  auto sender = [=](Role& role) {
    void* comm = connectToPeer(role);
    if (killer_is_sender) {
      killPeer(role, comm, true, mode);
      closeSendComm(role, comm);
    } else {
      transferUntilKilled(role, comm, true, mode);
    }
  };
  RoleSpec recv_spec{receiver, killer_is_sender};
  RoleSpec send_spec{sender, !killer_is_sender};
  runRoles(version, recv_spec, &send_spec, withNetTimeout());
}

TEST_P(NetFaults, SenderKilledReceiverSeesError) {
  runKillCase(version(), false, KillMode::kInFlight);
}
TEST_P(NetFaults, ReceiverKilledSenderSeesError) {
  runKillCase(version(), true, KillMode::kInFlight);
}
TEST_P(NetFaults, ReceiveFromIdleKilledSenderFails) {
  runKillCase(version(), false, KillMode::kIdle);
}
TEST_P(NetFaults, SendToIdleKilledReceiverFails) { runKillCase(version(), true, KillMode::kIdle); }

// ---- corrupted handles ------------------------------------------------------------------------

struct HandleVariant {
  const char* name;
  char bytes[NCCL_NET_HANDLE_MAXSIZE];
};

std::vector<HandleVariant> corruptHandles(const char* valid) {
  std::vector<HandleVariant> out(4);
  out[0].name = "random bytes";
  for (size_t i = 0; i < NCCL_NET_HANDLE_MAXSIZE; ++i) {
    out[0].bytes[i] = static_cast<char>(mix64(0xBAD0 + i) >> 24);
  }
  out[1].name = "all zeros";
  memset(out[1].bytes, 0, NCCL_NET_HANDLE_MAXSIZE);
  // Truncated: the valid handle with everything after the first 8 bytes zeroed, and with the
  // second half of its used (up to the last nonzero byte) span zeroed.
  out[2].name = "valid handle, all but the first 8 bytes zeroed";
  memset(out[2].bytes, 0, NCCL_NET_HANDLE_MAXSIZE);
  memcpy(out[2].bytes, valid, 8);
  size_t used = NCCL_NET_HANDLE_MAXSIZE;
  while (used > 0 && valid[used - 1] == 0) --used;
  out[3].name = "valid handle, second half of its used bytes zeroed";
  memset(out[3].bytes, 0, NCCL_NET_HANDLE_MAXSIZE);
  memcpy(out[3].bytes, valid, used / 2);
  return out;
}

TEST_P(NetFaults, CorruptedHandles) {
  RunOptions options = withNetTimeout();
  runPair(
      [](Role& role) {
        char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
        void* listen_comm = nullptr;
        NT_REQUIRE_OK(role.net.listen(role.dev, handle, &listen_comm));
        phase("accept with nobody connecting");
        Backoff backoff;
        for (auto start = Clock::now(); millisSince(start) < 500; backoff.idle()) {
          void* comm = nullptr;
          ncclResult_t result = role.net.accept(listen_comm, &comm);
          NT_REQUIRE(result == ncclSuccess && comm == nullptr,
                     "accept with nobody connecting returned %s and comm %p; expected ncclSuccess "
                     "and NULL",
                     resultName(result).c_str(), comm);
        }
        role.peer.send(kMsgHandle, handle, sizeof(handle));
        phase("accept while the sender tries corrupted handles");
        bool listener_failed = false;
        Deadline deadline(Millis(60000));
        while (!role.peer.readable() && !deadline.expired() && !listener_failed) {
          void* comm = nullptr;
          ncclResult_t result = role.net.accept(listen_comm, &comm);
          if (result != ncclSuccess) {
            note("accept returned %s while the sender used corrupted handles; listening anew",
                 resultName(result).c_str());
            listener_failed = true;
          } else if (comm != nullptr) {
            NT_EXPECT(false,
                      "accept produced a recv comm although the sender only used "
                      "corrupted handles");
            role.net.closeRecv(comm);
          }
          backoff.idle();
        }
        role.peer.await(kMsgDone, Deadline(Millis(60000)));
        RecvLink link;
        if (listener_failed) {
          role.net.closeListen(listen_comm);
          link = listenAndAccept(role);
        } else {
          link.listen_comm = listen_comm;
          role.peer.send(kMsgHandle, handle, sizeof(handle));
          phase("accept the valid connection");
          Deadline accept_deadline(kConnectTimeout);
          while (link.comm == nullptr) {
            NT_REQUIRE_OK(role.net.accept(link.listen_comm, &link.comm));
            NT_REQUIRE(!accept_deadline.expired(), "no connection accepted after corrupted ones");
            backoff.idle();
          }
        }
        phase("one message over the valid connection");
        HostBuffer buf(4096);
        buf.registerWith(role, link.comm);
        void* data = buf.data();
        size_t capacity = 4096;
        int tag = 1;
        void* mhandle = buf.mhandle();
        int got = -1;
        waitDone(role,
                 postRecv(role, link.comm, 1, &data, &capacity, &tag, &mhandle,
                          Deadline(kTransferTimeout), "irecv"),
                 &got, Deadline(kTransferTimeout), "irecv");
        NT_EXPECT(got == 4096, "size %d after corrupted connects, expected 4096", got);
        std::string bad = checkPattern(buf.data(), 4096, 4242);
        NT_EXPECT(bad.empty(), "message after corrupted connects: %s", bad.c_str());
        buf.deregister(role);
        closeRecvLink(role, link);
      },
      [](Role& role) {
        char valid[NCCL_NET_HANDLE_MAXSIZE];
        role.peer.recv(kMsgHandle, valid, sizeof(valid), Deadline(kConnectTimeout));
        for (HandleVariant& variant : corruptHandles(valid)) {
          phase("connect with a corrupted handle (%s)", variant.name);
          int warns = warnCount();
          auto start = Clock::now();
          Deadline deadline(kErrorBudget + kOverrun);
          Outcome out;
          void* comm = nullptr;
          Backoff backoff;
          for (;;) {
            out.result = role.net.connect(role.dev, variant.bytes, &comm);
            out.elapsed_ms = millisSince(start);
            if (out.failed() || comm != nullptr || deadline.expired()) break;
            backoff.idle();
          }
          out.where = out.failed() ? "connect" : "connect kept returning no comm";
          std::string what = formatString("connect with a corrupted handle (%s)", variant.name);
          if (comm != nullptr) {
            NT_EXPECT(false, "%s returned a send comm after %lld ms; expected an error",
                      what.c_str(), static_cast<long long>(out.elapsed_ms));
            role.net.closeSend(comm);
            continue;
          }
          expectTimelyError(out, warns, what.c_str());
        }
        role.peer.signal(kMsgDone);
        void* comm = connectToPeer(role);
        HostBuffer buf(4096);
        buf.registerWith(role, comm);
        fillPattern(buf.data(), 4096, 4242);
        int sent = -1;
        waitDone(role,
                 postSend(role, comm, buf.data(), 4096, 1, buf.mhandle(),
                          Deadline(kTransferTimeout), "isend"),
                 &sent, Deadline(kTransferTimeout), "isend");
        buf.deregister(role);
        closeSendComm(role, comm);
      },
      options);
}

// ---- bad registrations ------------------------------------------------------------------------

void expectBadRegistrationsRejected(Role& role, void* comm, const char* comm_name) {
  NetProperties props;
  NT_REQUIRE_OK(role.net.getProperties(role.dev, &props));
  HostBuffer buf(4096);
  struct Case {
    std::string what;
    void* data;
    size_t size;
    int type;
  };
  std::vector<Case> cases = {{"NULL data, 4096 bytes, NCCL_PTR_HOST", nullptr, 4096, NCCL_PTR_HOST},
                             {"valid data, size 0, NCCL_PTR_HOST", buf.data(), 0, NCCL_PTR_HOST}};
  if (props.ptr_support & NCCL_PTR_CUDA) {
    note("ptrSupport 0x%x includes NCCL_PTR_CUDA; the unsupported-type case is skipped",
         props.ptr_support);
  } else {
    cases.push_back(
        {formatString("host data with type NCCL_PTR_CUDA (ptrSupport 0x%x)", props.ptr_support),
         buf.data(), 4096, NCCL_PTR_CUDA});
  }
  for (const Case& c : cases) {
    phase("regMr(%s) on the %s comm", c.what.c_str(), comm_name);
    int warns = warnCount();
    void* mhandle = nullptr;
    ncclResult_t result = role.net.regMr(comm, c.data, c.size, c.type, &mhandle);
    if (result == ncclSuccess) {
      NT_EXPECT(false, "regMr(%s) on the %s comm returned ncclSuccess; expected an error",
                c.what.c_str(), comm_name);
      role.net.deregMr(comm, mhandle);
      continue;
    }
    NT_EXPECT(warnCount() > warns, "regMr(%s) on the %s comm returned %s but logged no WARN",
              c.what.c_str(), comm_name, resultName(result).c_str());
  }
}

TEST_P(NetFaults, RegMrRejectsBadArguments) {
  runPair(
      [](Role& role) {
        RecvLink link = listenAndAccept(role);
        expectBadRegistrationsRejected(role, link.comm, "recv");
        phase("a message after the rejected registrations");
        HostBuffer buf(4096);
        buf.registerWith(role, link.comm);
        void* data = buf.data();
        size_t capacity = 4096;
        int tag = 2;
        void* mhandle = buf.mhandle();
        int got = -1;
        waitDone(role,
                 postRecv(role, link.comm, 1, &data, &capacity, &tag, &mhandle,
                          Deadline(kTransferTimeout), "irecv"),
                 &got, Deadline(kTransferTimeout), "irecv");
        NT_EXPECT(got == 4096 && checkPattern(buf.data(), 4096, 99).empty(),
                  "message after rejected registrations: size %d, %s", got,
                  checkPattern(buf.data(), 4096, 99).c_str());
        buf.deregister(role);
        closeRecvLink(role, link);
      },
      [](Role& role) {
        void* comm = connectToPeer(role);
        expectBadRegistrationsRejected(role, comm, "send");
        HostBuffer buf(4096);
        buf.registerWith(role, comm);
        fillPattern(buf.data(), 4096, 99);
        int sent = -1;
        waitDone(role,
                 postSend(role, comm, buf.data(), 4096, 2, buf.mhandle(),
                          Deadline(kTransferTimeout), "isend"),
                 &sent, Deadline(kTransferTimeout), "isend");
        buf.deregister(role);
        closeSendComm(role, comm);
      });
}

INSTANTIATE_TEST_SUITE_P(Abi, NetFaults, ::testing::ValuesIn(kAbiVersions), versionName);

}  // namespace
}  // namespace epyard::nettest
