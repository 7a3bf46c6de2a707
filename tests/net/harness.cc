#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <exception>
#include <iostream>

#include "gtest/gtest.h"

namespace epyard::nettest {

// ---- role-process state and reports ------------------------------------------------------------

namespace {

struct RoleProcess {
  int report_fd = -1;
  Side side = Side::kReceiver;
  int version = 0;
  int failures = 0;
  bool trace = false;
  std::atomic<int> warns{0};
};
RoleProcess g_role;

std::string vformat(const char* fmt, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int needed = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (needed <= 0) return std::string();
  std::string out(static_cast<size_t>(needed) + 1, '\0');
  vsnprintf(out.data(), out.size(), fmt, args);
  out.resize(static_cast<size_t>(needed));
  return out;
}

void writeAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the harness is gone; nothing left to tell
    data += n;
    size -= static_cast<size_t>(n);
  }
}

std::string roleTag() {
  return formatString("[v%d %s pid %d]", g_role.version, sideName(g_role.side),
                      static_cast<int>(getpid()));
}

// One report line: a type letter, then the text with newlines flattened.
void sendReport(char type, std::string text) {
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  std::string line = std::string(1, type) + text + "\n";
  if (g_role.report_fd >= 0) writeAll(g_role.report_fd, line.data(), line.size());
}

void vreportFailure(const char* file, int line, const char* fmt, va_list args) {
  ++g_role.failures;
  const char* base = strrchr(file, '/');
  std::string text = formatString("%s:%d: ", base ? base + 1 : file, line) + vformat(fmt, args);
  std::string echo = roleTag() + " FAILURE " + text + "\n";
  writeAll(STDERR_FILENO, echo.data(), echo.size());
  sendReport('F', text);
}

const char* levelName(ncclDebugLogLevel level) {
  switch (level) {
    case NCCL_LOG_VERSION:
      return "VERSION";
    case NCCL_LOG_WARN:
      return "WARN";
    case NCCL_LOG_INFO:
      return "INFO";
    case NCCL_LOG_ABORT:
      return "ABORT";
    case NCCL_LOG_TRACE:
      return "TRACE";
    default:
      return "LOG";
  }
}

// The logger handed to init: one write() per line so lines of concurrent threads and of the
// two roles do not interleave. TRACE lines are printed only with EPYARD_TEST_TRACE=1.
void pluginLogger(ncclDebugLogLevel level, unsigned long /*flags*/, const char* file, int line,
                  const char* fmt, ...) {
  if (level == NCCL_LOG_WARN) g_role.warns.fetch_add(1);
  if (level == NCCL_LOG_NONE || (level == NCCL_LOG_TRACE && !g_role.trace)) return;
  va_list args;
  va_start(args, fmt);
  std::string text = fmt ? vformat(fmt, args) : std::string("(null format)");
  va_end(args);
  std::string out = formatString("%s %s %s:%d %s", roleTag().c_str(), levelName(level),
                                 file ? file : "?", line, text.c_str());
  if (out.empty() || out.back() != '\n') out += '\n';
  writeAll(STDERR_FILENO, out.data(), out.size());
}

// NCCL always hands init a profiler callback; this one records nothing.
ncclResult_t profilerStub(void** event_handle, int, void*, int64_t, void*) {
  if (event_handle) *event_handle = nullptr;
  return ncclSuccess;
}

[[noreturn]] void roleMain(Side side, int version, const RoleSpec& spec, const RunOptions& options,
                           int peer_fd, int report_fd) {
  g_role.report_fd = report_fd;
  g_role.side = side;
  g_role.version = version;
  int code = 0;
  try {
    for (const auto& [name, value] : options.env) setenv(name.c_str(), value.c_str(), 1);
    const char* trace = getenv("EPYARD_TEST_TRACE");
    g_role.trace = trace && strcmp(trace, "1") == 0;
    phase("load plugin");
    const char* path = getenv("EPYARD_TEST_PLUGIN");
    NT_REQUIRE(path && *path, "EPYARD_TEST_PLUGIN is not set");
    PluginLibrary lib;
    std::string error;
    NT_REQUIRE(lib.open(path, &error), "%s", error.c_str());
    std::unique_ptr<NetApi> net = resolveNetApi(lib, version, &error);
    NT_REQUIRE(net != nullptr, "%s", error.c_str());
    phase("init");
    NT_REQUIRE_OK(net->init(pluginLogger, profilerStub));
    PeerChannel peer(peer_fd);
    Role role{side, version, *net, peer};
    spec.body(role);
    phase("finalize");
    NT_REQUIRE_OK(net->finalize());
    phase("exit");
  } catch (const RoleFatal&) {
    code = 1;
  } catch (const std::exception& e) {
    reportFailure(__FILE__, __LINE__, "uncaught exception: %s", e.what());
    code = 1;
  } catch (...) {
    reportFailure(__FILE__, __LINE__, "uncaught exception of unknown type");
    code = 1;
  }
  if (g_role.failures > 0) code = 1;
  _exit(code);
}

}  // namespace

const char* sideName(Side side) { return side == Side::kReceiver ? "receiver" : "sender"; }

std::string formatString(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string out = vformat(fmt, args);
  va_end(args);
  return out;
}

void reportFailure(const char* file, int line, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vreportFailure(file, line, fmt, args);
  va_end(args);
}

void reportFatal(const char* file, int line, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vreportFailure(file, line, fmt, args);
  va_end(args);
  throw RoleFatal{};
}

void note(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string text = vformat(fmt, args);
  va_end(args);
  sendReport('N', text);
}

void phase(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string text = vformat(fmt, args);
  va_end(args);
  sendReport('P', text);
}

int warnCount() { return g_role.warns.load(); }

Millis Deadline::remaining() const {
  auto left = end_ - Clock::now();
  if (left < Clock::duration::zero()) return Millis(0);
  return std::chrono::duration_cast<Millis>(left);
}

// ---- peer channel ------------------------------------------------------------------------------

namespace {

struct MsgHeader {
  uint32_t kind;
  uint32_t size;
};

// Reads exactly size bytes before the deadline; false on timeout, EOF or error (*why says).
bool readFully(int fd, void* data, size_t size, const Deadline& deadline, std::string* why) {
  auto* out = static_cast<char*>(data);
  while (size > 0) {
    pollfd pfd{fd, POLLIN, 0};
    int64_t wait_ms = deadline.remaining().count();
    int ready = poll(&pfd, 1, static_cast<int>(wait_ms));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      *why = "timed out";
      return false;
    }
    ssize_t n = ::read(fd, out, size);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      *why = "the peer process closed the channel (exited or crashed)";
      return false;
    }
    if (n < 0) {
      *why = formatString("read failed: %s", strerror(errno));
      return false;
    }
    out += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

void PeerChannel::send(uint32_t kind, const void* data, size_t size) {
  MsgHeader header{kind, static_cast<uint32_t>(size)};
  std::string frame(reinterpret_cast<const char*>(&header), sizeof(header));
  if (size > 0) frame.append(static_cast<const char*>(data), size);
  const char* p = frame.data();
  size_t left = frame.size();
  while (left > 0) {
    ssize_t n = ::send(fd_, p, left, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    NT_REQUIRE(n > 0, "sending message kind %u to the %s failed: %s", kind,
               sideName(g_role.side == Side::kReceiver ? Side::kSender : Side::kReceiver),
               strerror(errno));
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void PeerChannel::recv(uint32_t kind, void* data, size_t size, Deadline deadline) {
  const char* other = sideName(g_role.side == Side::kReceiver ? Side::kSender : Side::kReceiver);
  MsgHeader header{};
  std::string why;
  NT_REQUIRE(readFully(fd_, &header, sizeof(header), deadline, &why),
             "waiting for message kind %u from the %s: %s", kind, other, why.c_str());
  NT_REQUIRE(header.kind == kind && header.size == size,
             "expected message kind %u (%zu bytes) from the %s, got kind %u (%u bytes)", kind, size,
             other, header.kind, header.size);
  if (size > 0) {
    NT_REQUIRE(readFully(fd_, data, size, deadline, &why),
               "reading message kind %u from the %s: %s", kind, other, why.c_str());
  }
}

bool PeerChannel::peerGone() {
  char byte;
  ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

bool PeerChannel::readable() {
  pollfd pfd{fd_, POLLIN, 0};
  return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP)) != 0;
}

// ---- orchestration (gtest process) -------------------------------------------------------------

namespace {

constexpr auto kGraceAfterPeerExit = std::chrono::seconds(30);

struct Child {
  Child(Side s, const RoleSpec* r) : side(s), spec(r) {}
  Side side;
  const RoleSpec* spec;
  pid_t pid = -1;
  int report_fd = -1;
  bool running = false;
  int status = 0;
  bool killed_for_timeout = false;
  bool killed_after_peer = false;
  std::string pending;
  std::string last_phase = "(start)";
  std::vector<std::string> failures;
  std::vector<std::string> notes;
};

void consumeReports(Child& child, bool until_eof) {
  if (child.report_fd < 0) return;
  char buf[4096];
  for (;;) {
    pollfd pfd{child.report_fd, POLLIN, 0};
    if (poll(&pfd, 1, until_eof ? 1000 : 0) <= 0) break;
    ssize_t n = ::read(child.report_fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(child.report_fd);
      child.report_fd = -1;
      break;
    }
    child.pending.append(buf, static_cast<size_t>(n));
  }
  size_t newline;
  while ((newline = child.pending.find('\n')) != std::string::npos) {
    std::string line = child.pending.substr(0, newline);
    child.pending.erase(0, newline + 1);
    if (line.empty()) continue;
    std::string text = line.substr(1);
    if (line[0] == 'F') child.failures.push_back(text);
    if (line[0] == 'N') child.notes.push_back(text);
    if (line[0] == 'P') child.last_phase = text;
  }
}

void killChild(Child& child) {
  if (!child.running) return;
  kill(child.pid, SIGKILL);
  waitpid(child.pid, &child.status, 0);
  child.running = false;
}

void reapIfExited(Child& child) {
  if (!child.running) return;
  if (waitpid(child.pid, &child.status, WNOHANG) == child.pid) child.running = false;
}

void monitor(std::vector<Child>& children, std::chrono::seconds limit) {
  const auto end = Clock::now() + limit;
  Clock::time_point first_exit{};
  bool any_exited = false;
  for (;;) {
    std::vector<pollfd> fds;
    for (Child& c : children) {
      if (c.report_fd >= 0) fds.push_back(pollfd{c.report_fd, POLLIN, 0});
    }
    if (!fds.empty()) poll(fds.data(), fds.size(), 20);
    bool all_done = true;
    for (Child& c : children) {
      consumeReports(c, false);
      reapIfExited(c);
      all_done = all_done && !c.running;
    }
    if (all_done) break;
    if (fds.empty()) usleep(20000);
    for (Child& c : children) {
      if (!c.running && !any_exited) {
        any_exited = true;
        first_exit = Clock::now();
      }
    }
    for (Child& c : children) {
      if (!c.running) continue;
      if (Clock::now() >= end) {
        c.killed_for_timeout = true;
        killChild(c);
      } else if (any_exited && c.spec->expect_killed) {
        killChild(c);
      } else if (any_exited && Clock::now() - first_exit >= kGraceAfterPeerExit) {
        c.killed_after_peer = true;
        killChild(c);
      }
    }
  }
  for (Child& c : children) consumeReports(c, true);
}

void judge(const Child& child, int version, std::chrono::seconds limit) {
  std::string who = formatString("[v%d %s]", version, sideName(child.side));
  for (const std::string& n : child.notes) std::cout << who << " " << n << std::endl;
  for (const std::string& f : child.failures) ADD_FAILURE() << who << " " << f;
  if (child.killed_for_timeout) {
    ADD_FAILURE() << who << " still running after the case limit of " << limit.count()
                  << " s; killed. Last phase: " << child.last_phase;
    return;
  }
  if (child.killed_after_peer) {
    ADD_FAILURE() << who << " still running " << kGraceAfterPeerExit.count()
                  << " s after the other role exited; killed. Last phase: " << child.last_phase;
    return;
  }
  if (WIFSIGNALED(child.status)) {
    int sig = WTERMSIG(child.status);
    if (sig == SIGKILL && child.spec->expect_killed) return;
    ADD_FAILURE() << who << " died of signal " << sig << " (" << strsignal(sig)
                  << "). Last phase: " << child.last_phase;
    return;
  }
  if (WIFEXITED(child.status) && WEXITSTATUS(child.status) != 0 && child.failures.empty()) {
    ADD_FAILURE() << who << " exited with status " << WEXITSTATUS(child.status)
                  << " without reporting a failure. Last phase: " << child.last_phase;
  }
}

}  // namespace

void runRoles(int version, const RoleSpec& receiver, const RoleSpec* sender,
              const RunOptions& options) {
  const char* path = getenv("EPYARD_TEST_PLUGIN");
  if (path == nullptr || *path == '\0') {
    ADD_FAILURE() << "EPYARD_TEST_PLUGIN is not set; set it to the built plugin, e.g. "
                     "EPYARD_TEST_PLUGIN=build/plugin/libnccl-net-epyard.so";
    return;
  }
  if (access(path, R_OK) != 0) {
    ADD_FAILURE() << "EPYARD_TEST_PLUGIN=" << path << " cannot be read: " << strerror(errno);
    return;
  }
  int peer[2];
  int reports[2][2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, peer), 0) << strerror(errno);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, reports[0]), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, reports[1]), 0);

  std::vector<Child> children;
  children.emplace_back(Side::kReceiver, &receiver);
  if (sender) children.emplace_back(Side::kSender, sender);
  std::cout.flush();
  fflush(stdout);
  fflush(stderr);
  for (size_t i = 0; i < children.size(); ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      close(peer[1 - i]);
      close(reports[i][0]);
      close(reports[1 - i][0]);
      close(reports[1 - i][1]);
      roleMain(children[i].side, version, *children[i].spec, options, peer[i], reports[i][1]);
    }
    if (pid < 0) {
      ADD_FAILURE() << "fork failed: " << strerror(errno);
      break;
    }
    children[i].pid = pid;
    children[i].running = true;
  }
  for (int i = 0; i < 2; ++i) {
    close(peer[i]);
    close(reports[i][1]);
  }
  for (size_t i = 0; i < 2; ++i) {
    if (i < children.size() && children[i].running) {
      children[i].report_fd = reports[i][0];
    } else {
      close(reports[i][0]);
    }
  }
  monitor(children, options.limit);
  for (const Child& child : children) {
    if (child.pid > 0) judge(child, version, options.limit);
  }
}

}  // namespace epyard::nettest
