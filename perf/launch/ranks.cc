#include "launch/ranks.h"

#include <cuda_runtime.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace epyard::launch {
namespace {

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string describe(int status) {
  char text[96];
  if (WIFEXITED(status)) {
    std::snprintf(text, sizeof(text), "exit code %d", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    std::snprintf(text, sizeof(text), "signal %d", WTERMSIG(status));
  } else {
    std::snprintf(text, sizeof(text), "status %d", status);
  }
  return text;
}

}  // namespace

int visibleGpus() {
  pid_t pid = fork();
  if (pid == 0) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    _exit(n > 100 ? 100 : n);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) return 0;
  return WEXITSTATUS(status);
}

int runRanks(int num_ranks, int timeout_s, const std::function<int(const RankEnv&)>& body,
             Sharing how) {
  const int gpus = visibleGpus();
  if (gpus < 1) {
    std::fprintf(stderr, "[launch] no GPU visible\n");
    return 2;
  }
  RankEnv env;
  env.num_ranks = num_ranks;
  std::printf("[launch] %s\n", describePlacement(num_ranks, gpus, how).c_str());
  // Rank 0 takes the unique id (its process then serves NCCL's bootstrap) and leaves it here.
  struct Shared {
    volatile int ready;  // 1: id valid, -1: rank 0 failed to get one
    ncclUniqueId id;
  };
  auto* shared = static_cast<Shared*>(mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                                           MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (shared == MAP_FAILED) {
    std::perror("[launch] mmap");
    return 2;
  }
  shared->ready = 0;
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids(num_ranks, -1);
  const pid_t parent = getpid();
  for (int i = 0; i < num_ranks; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // the launcher died: so do its ranks
      if (getppid() != parent) _exit(3);
      env.rank = i;
      const Placement place = placeRank(i, num_ranks, gpus);
      applyPlacement(place, i, how);  // before this process initialises NCCL
      env.device = place.device;
      env.shares_gpu = place.shares_gpu;
      if (i == 0) {
        ncclResult_t r = ncclGetUniqueId(&shared->id);
        if (r != ncclSuccess) std::fprintf(stderr, "[launch] ncclGetUniqueId: %s\n", ncclGetErrorString(r));
        __sync_synchronize();
        shared->ready = r == ncclSuccess ? 1 : -1;
      }
      while (shared->ready == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (shared->ready < 0) _exit(2);
      __sync_synchronize();
      env.id = shared->id;
      int code = 1;
      if (cudaSetDevice(env.device) == cudaSuccess) code = body(env);
      std::fflush(stdout);
      std::fflush(stderr);
      _exit(code);
    }
    pids[i] = pid;
  }
  int result = 0, running = num_ranks;
  const double deadline = seconds() + timeout_s;
  auto killAll = [&] {
    for (pid_t p : pids)
      if (p > 0) kill(p, SIGKILL);
  };
  while (running > 0) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      int rank = -1;
      for (int i = 0; i < num_ranks; ++i)
        if (pids[i] == pid) rank = i, pids[i] = -1;
      --running;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && result == 0) {
        std::fprintf(stderr, "[launch] rank %d failed (%s); stopping the others\n", rank,
                     describe(status).c_str());
        result = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        killAll();
      }
      continue;
    }
    if (seconds() > deadline) {
      std::fprintf(stderr, "[launch] deadline of %d s passed with %d rank(s) running; killing them\n",
                   timeout_s, running);
      killAll();
      if (result == 0) result = 124;
      while (waitpid(-1, &status, 0) > 0) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  munmap(shared, sizeof(Shared));
  return result;
}

int runThreads(int num_ranks, int timeout_s, void* world,
               const std::function<int(const RankEnv&)>& body) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> codes(num_ranks, -1);  // -1: still running
  int running = num_ranks, first_failure = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < num_ranks; ++i) {
    threads.emplace_back([&, i] {
      RankEnv env;
      env.rank = i;
      env.num_ranks = num_ranks;
      env.device = 0;
      env.shares_gpu = num_ranks > 1;
      env.world = world;
      int code = 1;
      if (cudaSetDevice(0) == cudaSuccess) code = body(env);
      std::lock_guard<std::mutex> lock(mu);
      codes[i] = code;
      if (code != 0 && first_failure == 0) {
        std::fprintf(stderr, "[launch] virtual rank %d failed (code %d)\n", i, code);
        first_failure = code;
      }
      --running;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(timeout_s), [&] { return running == 0; })) {
      std::string left;
      for (int i = 0; i < num_ranks; ++i)
        if (codes[i] < 0) left += " " + std::to_string(i);
      std::fprintf(stderr, "[launch] deadline of %d s passed with virtual rank(s)%s running; exiting\n",
                   timeout_s, left.c_str());
      std::fflush(stdout);
      std::fflush(stderr);
      _exit(124);
    }
  }
  for (std::thread& t : threads) t.join();
  return first_failure;
}

}  // namespace epyard::launch
