// epyard NCCL check: the launcher. Takes the ncclUniqueId, forks and execs one rank per GPU,
// waits for them with a deadline, and kills the rest when one fails, the deadline passes or the
// launcher is interrupted.

#include "nccl_check.h"

#include "launch/placement.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace epyard::nccl_check {
namespace {

// =============================================================================================
// Launcher side

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

volatile sig_atomic_t g_signal = 0;

void OnSignal(int sig) { g_signal = sig; }

struct Child {
  pid_t pid = -1;
  bool done = false;
  int status = 0;
  bool killed_by_us = false;
};

void LauncherMsg(const char* fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "[launcher] %s\n", msg);
  std::fflush(stderr);
}

std::string DescribeStatus(const Child& c) {
  char buf[128];
  if (WIFEXITED(c.status)) {
    std::snprintf(buf, sizeof(buf), "exit code %d", WEXITSTATUS(c.status));
  } else if (WIFSIGNALED(c.status)) {
    std::snprintf(buf, sizeof(buf), "killed by signal %d (%s)%s", WTERMSIG(c.status),
                  strsignal(WTERMSIG(c.status)), c.killed_by_us ? " from the launcher" : "");
  } else {
    std::snprintf(buf, sizeof(buf), "status 0x%x", c.status);
  }
  return buf;
}

bool ChildOk(const Child& c) { return c.done && WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0; }

// Reaps what has ended; returns ranks that ended with a failure this call.
std::vector<int> Reap(std::vector<Child>& kids, bool block_one) {
  std::vector<int> failed;
  for (;;) {
    int st = 0;
    pid_t pid = waitpid(-1, &st, block_one ? 0 : WNOHANG);
    block_one = false;
    if (pid <= 0) {
      if (pid < 0 && errno == EINTR) continue;
      break;
    }
    for (size_t i = 0; i < kids.size(); ++i) {
      if (kids[i].pid == pid && !kids[i].done) {
        kids[i].done = true;
        kids[i].status = st;
        if (!ChildOk(kids[i])) failed.push_back(static_cast<int>(i));
      }
    }
  }
  return failed;
}

std::string RunningRanks(const std::vector<Child>& kids) {
  std::string s;
  for (size_t i = 0; i < kids.size(); ++i) {
    if (kids[i].pid > 0 && !kids[i].done) s += (s.empty() ? "" : " ") + std::to_string(i);
  }
  return s;
}

void KillAll(std::vector<Child>& kids) {
  for (Child& c : kids) {
    if (c.pid > 0 && !c.done) {
      c.killed_by_us = true;
      kill(c.pid, SIGTERM);
    }
  }
  const double until = NowSeconds() + 3.0;
  while (!RunningRanks(kids).empty() && NowSeconds() < until) {
    Reap(kids, false);
    usleep(20000);
  }
  for (Child& c : kids) {
    if (c.pid <= 0 || c.done) continue;
    kill(c.pid, SIGKILL);
    int st = 0;
    pid_t got;
    do {
      got = waitpid(c.pid, &st, 0);
    } while (got < 0 && errno == EINTR);
    c.done = true;
    c.status = (got == c.pid) ? st : 0;
  }
}

std::string SelfExe(const char* argv0) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return argv0;
  buf[n] = '\0';
  return buf;
}

}  // namespace

int LauncherMain(const Options& o, const char* argv0) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  ncclUniqueId id;
  int nranks = o.nranks;
  if (!o.selftest.empty()) {
    FillSelftestId(&id);
    if (nranks == 0) nranks = 2;
  } else {
    // The id comes first: no CUDA call may precede it in this process.
    ncclResult_t nr = ncclGetUniqueId(&id);
    if (nr != ncclSuccess) {
      const char* last = ncclGetLastError(nullptr);
      LauncherMsg("error: ncclGetUniqueId returned %d (%s); NCCL last error: %s",
                  static_cast<int>(nr), ncclGetErrorString(nr), (last && *last) ? last : "(none)");
      return kExitApi;
    }
    int ndev = 0;
    cudaError_t ce = cudaGetDeviceCount(&ndev);
    if (ce != cudaSuccess) {
      LauncherMsg("error: no usable CUDA device: cudaGetDeviceCount returned %s (%s)",
                  cudaGetErrorName(ce), cudaGetErrorString(ce));
      return kExitApi;
    }
    if (ndev == 0) {
      LauncherMsg("error: no CUDA device is visible");
      return kExitApi;
    }
    if (nranks == 0) nranks = ndev;
    LauncherMsg("%s", epyard::launch::describePlacement(nranks, ndev,
                                                        epyard::launch::Sharing::kSeparateHosts).c_str());
  }
  if (o.a2a_bytes < static_cast<uint64_t>(nranks)) {
    LauncherMsg("error: --a2a-bytes must be at least --nranks (%d)", nranks);
    return kExitUsage;
  }

  // NVLink multicast (NVLS) stays off unless asked for: on shared hosts it can take GPUs down.
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  if (o.force_net) {
    setenv("NCCL_P2P_DISABLE", "1", 1);
    setenv("NCCL_SHM_DISABLE", "1", 1);
    setenv("NCCL_NVLS_ENABLE", "0", 1);
  }

  const std::string exe = SelfExe(argv0);
  const std::string hex = ToHex(&id, sizeof(id));
  std::vector<std::vector<std::string>> args(nranks);
  for (int rk = 0; rk < nranks; ++rk) {
    std::vector<std::string>& a = args[rk];
    a = {exe,
         "--child-rank",
         std::to_string(rk),
         "--child-id",
         hex,
         "--nranks",
         std::to_string(nranks),
         "--bytes",
         std::to_string(o.bytes),
         "--a2a-bytes",
         std::to_string(o.a2a_bytes),
         "--iters",
         std::to_string(o.iters),
         "--warmup",
         std::to_string(o.warmup),
         "--label",
         o.label};
    if (o.skip_perf) a.push_back("--skip-perf");
    if (!o.selftest.empty()) {
      a.push_back("--launcher-selftest");
      a.push_back(o.selftest);
    }
  }

  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);

  LauncherMsg("starting %d ranks (label %s, timeout %d s)%s", nranks, o.label.c_str(), o.timeout_s,
              o.selftest.empty() ? "" : (" self-test " + o.selftest).c_str());
  std::fflush(stdout);
  std::vector<Child> kids(nranks);
  const pid_t launcher_pid = getpid();
  for (int rk = 0; rk < nranks; ++rk) {
    std::vector<char*> argv;
    for (std::string& s : args[rk]) argv.push_back(&s[0]);
    argv.push_back(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      // Only async-signal-safe calls from here to exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != launcher_pid) _exit(kExitApi);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      signal(SIGHUP, SIG_DFL);
#ifdef SYS_close_range
      syscall(SYS_close_range, 3u, ~0u, 0u);  // the launcher's NCCL sockets stay behind
#endif
      execv(argv[0], argv.data());
      const char msg[] = "[launcher] error: execv of the rank program failed\n";
      ssize_t ignored = write(2, msg, sizeof(msg) - 1);
      (void)ignored;
      _exit(127);
    }
    if (pid < 0) {
      LauncherMsg("error: fork for rank %d failed: %s", rk, std::strerror(errno));
      KillAll(kids);
      return kExitApi;
    }
    kids[rk].pid = pid;
  }

  const double deadline = NowSeconds() + o.timeout_s;
  double kill_at = -1;  // set once a rank fails
  int exit_code = kExitOk;
  while (!RunningRanks(kids).empty()) {
    for (int rk : Reap(kids, false)) {
      LauncherMsg("rank %d failed: %s", rk, DescribeStatus(kids[rk]).c_str());
      if (kill_at < 0) kill_at = NowSeconds() + o.grace_s;
    }
    if (RunningRanks(kids).empty()) break;
    if (g_signal != 0) {
      LauncherMsg("interrupted by signal %d: killing ranks %s", static_cast<int>(g_signal),
                  RunningRanks(kids).c_str());
      KillAll(kids);
      exit_code = kExitInterrupted;
      break;
    }
    if (NowSeconds() >= deadline) {
      LauncherMsg("TIMEOUT: ranks %s still running after %d s; killing them",
                  RunningRanks(kids).c_str(), o.timeout_s);
      KillAll(kids);
      exit_code = kExitTimeout;
      break;
    }
    if (kill_at >= 0 && NowSeconds() >= kill_at) {
      LauncherMsg("a rank failed; killing ranks %s still running %d s later",
                  RunningRanks(kids).c_str(), o.grace_s);
      KillAll(kids);
      break;
    }
    usleep(20000);
  }

  int failed = 0;
  std::string summary;
  for (int rk = 0; rk < nranks; ++rk) {
    if (!ChildOk(kids[rk])) {
      ++failed;
      summary += " rank " + std::to_string(rk) + ": " + DescribeStatus(kids[rk]) + ";";
    }
  }
  if (failed == 0 && exit_code == kExitOk) {
    LauncherMsg("all %d ranks passed", nranks);
    return kExitOk;
  }
  LauncherMsg("FAILED: %d of %d ranks did not pass:%s", failed, nranks, summary.c_str());
  return exit_code != kExitOk ? exit_code : kExitWrong;
}

}  // namespace epyard::nccl_check
