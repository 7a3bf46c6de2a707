// epyard NCCL check: what the parts of the program share. The program and its files are
// described at the top of nccl_net_check.cc.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace epyard::nccl_check {

// Exit codes of the launcher and of a rank: see nccl_net_check.cc for which means what.
constexpr int kExitOk = 0;
constexpr int kExitWrong = 1;
constexpr int kExitApi = 2;
constexpr int kExitAsync = 3;
constexpr int kExitUsage = 64;
constexpr int kExitTimeout = 124;
constexpr int kExitInterrupted = 130;

// ---------------------------------------------------------------------------------------------
// Options (command_line.cc)

struct Options {
  int nranks = 0;  // 0: one rank per visible GPU
  uint64_t bytes = 1ull << 30;
  uint64_t a2a_bytes = 256ull << 20;
  int iters = 20;
  int warmup = 5;
  std::string label = "run";
  int timeout_s = 300;
  int grace_s = 15;
  bool force_net = false;
  bool skip_perf = false;
  std::string selftest;  // launcher self-test mode (no GPU, no NCCL): ok, fail, hang, crash
  // Set by the launcher for its children only.
  int child_rank = -1;
  std::string child_id;
};

// Returns -1 to go on, otherwise the exit code.
int ParseArgs(int argc, char** argv, Options* o);

// ncclUniqueId <-> hex, as the launcher passes the id to its ranks on the command line.
std::string ToHex(const void* p, size_t n);
bool FromHex(const std::string& s, void* p, size_t n);

// The id the self-test passes in place of a real one.
void FillSelftestId(ncclUniqueId* id);

// =============================================================================================
// Launcher side (launcher.cc)

int LauncherMain(const Options& o, const char* argv0);

// =============================================================================================
// Rank (child) side (rank.cc)

extern int g_rank;
extern std::string g_check;  // names the check under way in failure messages
extern ncclComm_t g_comm;

int ChildMain(const Options& o);

std::string FormatBytes(uint64_t b);

[[noreturn]] void Die(int code);
void RankFailf(const char* fmt, ...);
[[noreturn]] void FailCuda(const char* call, cudaError_t e, const char* file, int line);
[[noreturn]] void FailNccl(const char* call, ncclResult_t r, const char* file, int line);

#define CUDA_OK(call)                                               \
  do {                                                              \
    cudaError_t e_ = (call);                                        \
    if (e_ != cudaSuccess) FailCuda(#call, e_, __FILE__, __LINE__); \
  } while (0)

#define NCCL_OK(call)                                               \
  do {                                                              \
    ncclResult_t r_ = (call);                                       \
    if (r_ != ncclSuccess) FailNccl(#call, r_, __FILE__, __LINE__); \
  } while (0)

// Fails if the communicator reports an asynchronous error (a broken connection in the network
// plugin shows up here while the kernels wait forever).
void CheckAsyncError();

// Waits for the stream (event) while watching for NCCL asynchronous errors.
void WaitStream(cudaStream_t stream);
void WaitEvent(cudaEvent_t ev);

struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t n) : bytes(n) {
    cudaError_t e = cudaMalloc(&p, std::max<size_t>(n, 1));
    if (e != cudaSuccess) {
      RankFailf("cudaMalloc(%s) returned %s (%s)", FormatBytes(n).c_str(), cudaGetErrorName(e),
                cudaGetErrorString(e));
      Die(kExitApi);
    }
  }
  ~DevBuf() {
    if (p != nullptr) cudaFree(p);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

struct Rank {
  int rank = 0;
  int nranks = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int failures = 0;  // checks that gave wrong results on this rank
};

// Mean over ranks of a per-rank number, through NCCL.
double MeanOverRanks(Rank& r, double x);
int SumOverRanks(Rank& r, int x);

// ---------------------------------------------------------------------------------------------
// Correctness checks (checks.cc)

// All-reduce and all-to-all checks of several sizes and types; a wrong result counts in
// r.failures, a failed call ends the process.
void RunChecks(Rank& r);

// ---------------------------------------------------------------------------------------------
// Bandwidth (bench.cc)

struct Measurement {
  uint64_t bytes = 0;
  double time_us = 0;
  double algbw = 0;
  double busbw = 0;
};

void PrintRow(const char* op, const Measurement& m);
Measurement PerfAllReduce(Rank& r, const Options& o);
Measurement PerfAllToAll(Rank& r, const Options& o);

}  // namespace epyard::nccl_check
