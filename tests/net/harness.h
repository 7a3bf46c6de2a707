// Runs one conformance case as two fresh processes, a receiver and a sender, each of which
// loads the plugin, initialises it and drives it through one ABI version.
//
// The gtest process never calls into the plugin: it forks both roles, waits for them with a
// deadline, kills whatever is left and turns their reports into gtest failures. That way each
// case starts from a process in which the plugin was never initialised (no libfabric state or
// progress threads are inherited across fork), whichever cases ran before it.
//
// Inside a role, checks use the NT_* macros below, not gtest's: a failure is written to the
// report socket at once (so a later crash or hang cannot lose it); NT_REQUIRE* then unwinds the
// role, NT_EXPECT* carries on.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "net_api.h"

namespace epyard::nettest {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

class Deadline {
 public:
  explicit Deadline(Millis budget) : end_(Clock::now() + budget) {}
  bool expired() const { return Clock::now() >= end_; }
  Millis remaining() const;

 private:
  Clock::time_point end_;
};

inline int64_t millisSince(Clock::time_point start) {
  return std::chrono::duration_cast<Millis>(Clock::now() - start).count();
}

enum class Side { kReceiver, kSender };
const char* sideName(Side side);

// Message kinds on the socket between the two roles; each message carries its kind so a role
// that reads out of step fails with both kinds named instead of misreading bytes.
enum MsgKind : uint32_t {
  kMsgHandle = 1,  // NCCL_NET_HANDLE_MAXSIZE bytes from listen()
  kMsgPid = 2,     // pid_t of the writer
  kMsgGo = 3,      // "my side is ready", payload-free
  kMsgDone = 4,    // "my side finished this step", payload-free
};

// One end of the socket pair between the receiver and the sender processes.
class PeerChannel {
 public:
  explicit PeerChannel(int fd) : fd_(fd) {}
  void send(uint32_t kind, const void* data, size_t size);
  // Fails the role on a timeout, on EOF (peer exited) and on a kind or size mismatch.
  void recv(uint32_t kind, void* data, size_t size, Deadline deadline);
  // True when a message is waiting to be read (does not read it).
  bool readable();
  // True when the other role has exited (or crashed) and nothing is left to read from it.
  bool peerGone();
  void signal(uint32_t kind) { send(kind, nullptr, 0); }
  void await(uint32_t kind, Deadline deadline) { recv(kind, nullptr, 0, deadline); }

 private:
  int fd_;
};

// What a role body is handed. One role per process, so the report functions below are global.
struct Role {
  Side side;
  int version;
  NetApi& net;
  PeerChannel& peer;
  int dev = 0;
};

using RoleBody = std::function<void(Role&)>;

struct RoleSpec {
  RoleBody body;
  // The other role SIGKILLs this one on purpose; dying of SIGKILL is then no failure, and once
  // the other role has exited this one is killed without complaint.
  bool expect_killed = false;
};

struct RunOptions {
  // Set in both role processes before the plugin is loaded (the plugin reads its parameters
  // once at init).
  std::vector<std::pair<std::string, std::string>> env;
  // Backstop for the whole case; role bodies bound their own waits well inside it.
  std::chrono::seconds limit{120};
};

// Runs from a gtest TEST body: forks the roles (sender may be null for one-process cases),
// waits, and reports every role failure, crash or hang through ADD_FAILURE.
void runRoles(int version, const RoleSpec& receiver, const RoleSpec* sender,
              const RunOptions& options);

// ---- role side -------------------------------------------------------------------------------

struct RoleFatal {};  // thrown by NT_REQUIRE*, caught by the role's main

void reportFailure(const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
[[noreturn]] void reportFatal(const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
// A line shown in the gtest output of the case (timings, what the plugin returned).
void note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// The step this role is in; a hang or crash report names the last one.
void phase(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// WARN lines the plugin has logged in this process so far.
int warnCount();

std::string formatString(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace epyard::nettest

#define NT_EXPECT(cond, ...)                                                        \
  do {                                                                              \
    if (!(cond)) ::epyard::nettest::reportFailure(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#define NT_REQUIRE(cond, ...)                                                     \
  do {                                                                            \
    if (!(cond)) ::epyard::nettest::reportFatal(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#define NT_REQUIRE_OK(expr)                                        \
  do {                                                             \
    ncclResult_t nt_result_ = (expr);                              \
    NT_REQUIRE(nt_result_ == ncclSuccess, "%s returned %s", #expr, \
               ::epyard::nettest::resultName(nt_result_).c_str()); \
  } while (0)

#define NT_EXPECT_OK(expr)                                        \
  do {                                                            \
    ncclResult_t nt_result_ = (expr);                             \
    NT_EXPECT(nt_result_ == ncclSuccess, "%s returned %s", #expr, \
              ::epyard::nettest::resultName(nt_result_).c_str()); \
  } while (0)
