// epyard NCCL check: the rank (child) side. One process per GPU: failure reporting, waits that
// watch for NCCL asynchronous errors, and ChildMain, which joins the communicator and runs the
// correctness checks (checks.cc) and the bandwidth runs (bench.cc).

#include "nccl_check.h"

#include "launch/placement.h"

#include <unistd.h>

#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace epyard::nccl_check {

// =============================================================================================
// Rank (child) side

std::string FormatBytes(uint64_t b) {
  char buf[64];
  if (b >= (1ull << 30) && b % (1ull << 30) == 0) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 " GiB", b >> 30);
  } else if (b >= (1ull << 20) && b % (1ull << 20) == 0) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 " MiB", b >> 20);
  } else if (b >= (1ull << 10) && b % (1ull << 10) == 0) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 " KiB", b >> 10);
  } else {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 " B", b);
  }
  return buf;
}

int g_rank = -1;
std::string g_check = "startup";  // names the check under way in failure messages
ncclComm_t g_comm = nullptr;

[[noreturn]] void Die(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);
}

void RankFailf(const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "[rank %d] FAIL %s: %s\n", g_rank, g_check.c_str(), msg);
  std::fflush(stderr);
}

[[noreturn]] void FailCuda(const char* call, cudaError_t e, const char* file, int line) {
  RankFailf("%s returned %s (%s) at %s:%d", call, cudaGetErrorName(e), cudaGetErrorString(e), file,
            line);
  Die(kExitApi);
}

[[noreturn]] void FailNccl(const char* call, ncclResult_t r, const char* file, int line) {
  const char* last = ncclGetLastError(g_comm);
  RankFailf("%s returned %d (%s) at %s:%d; NCCL last error: %s", call, static_cast<int>(r),
            ncclGetErrorString(r), file, line, (last && *last) ? last : "(none)");
  Die(kExitApi);
}

// Fails if the communicator reports an asynchronous error (a broken connection in the network
// plugin shows up here while the kernels wait forever).
void CheckAsyncError() {
  if (g_comm == nullptr) return;
  ncclResult_t async = ncclSuccess;
  NCCL_OK(ncclCommGetAsyncError(g_comm, &async));
  if (async == ncclSuccess || async == ncclInProgress) return;
  const char* last = ncclGetLastError(g_comm);
  RankFailf("NCCL asynchronous error %d (%s); NCCL last error: %s", static_cast<int>(async),
            ncclGetErrorString(async), (last && *last) ? last : "(none)");
  ncclCommAbort(g_comm);
  g_comm = nullptr;
  Die(kExitAsync);
}

// Waits for the stream (event) while watching for NCCL asynchronous errors.
void WaitStream(cudaStream_t stream) {
  for (;;) {
    cudaError_t e = cudaStreamQuery(stream);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) FailCuda("cudaStreamQuery(stream)", e, __FILE__, __LINE__);
    CheckAsyncError();
    usleep(20);
  }
}

void WaitEvent(cudaEvent_t ev) {
  for (;;) {
    cudaError_t e = cudaEventQuery(ev);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) FailCuda("cudaEventQuery(stop)", e, __FILE__, __LINE__);
    CheckAsyncError();
    usleep(20);
  }
}

// Mean over ranks of a per-rank number, through NCCL.
double MeanOverRanks(Rank& r, double x) {
  DevBuf buf(sizeof(double));
  CUDA_OK(cudaMemcpy(buf.p, &x, sizeof(double), cudaMemcpyHostToDevice));
  NCCL_OK(ncclAllReduce(buf.p, buf.p, 1, ncclFloat64, ncclSum, r.comm, r.stream));
  WaitStream(r.stream);
  double sum = 0;
  CUDA_OK(cudaMemcpy(&sum, buf.p, sizeof(double), cudaMemcpyDeviceToHost));
  return sum / r.nranks;
}

int SumOverRanks(Rank& r, int x) {
  DevBuf buf(sizeof(int));
  CUDA_OK(cudaMemcpy(buf.p, &x, sizeof(int), cudaMemcpyHostToDevice));
  NCCL_OK(ncclAllReduce(buf.p, buf.p, 1, ncclInt32, ncclSum, r.comm, r.stream));
  WaitStream(r.stream);
  int sum = 0;
  CUDA_OK(cudaMemcpy(&sum, buf.p, sizeof(int), cudaMemcpyDeviceToHost));
  return sum;
}

namespace {

void PrintVersions(int ndev) {
  int nccl_runtime = 0;
  NCCL_OK(ncclGetVersion(&nccl_runtime));
  int cuda_runtime = 0, cuda_driver = 0;
  CUDA_OK(cudaRuntimeGetVersion(&cuda_runtime));
  CUDA_OK(cudaDriverGetVersion(&cuda_driver));
  std::printf("[rank 0] NCCL loaded at run time: %d.%d.%d (code %d); built against %d.%d.%d\n",
              nccl_runtime / 10000, (nccl_runtime % 10000) / 100, nccl_runtime % 100, nccl_runtime,
              NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
  std::printf("[rank 0] CUDA runtime %d.%d, driver %d.%d, %d visible GPUs\n", cuda_runtime / 1000,
              (cuda_runtime % 1000) / 10, cuda_driver / 1000, (cuda_driver % 1000) / 10, ndev);
  const char* vars[] = {"NCCL_NET_PLUGIN",  "NCCL_NET",  "NCCL_P2P_DISABLE", "NCCL_SHM_DISABLE",
                        "NCCL_NVLS_ENABLE", "NCCL_ALGO", "NCCL_PROTO"};
  std::string env;
  for (const char* v : vars) {
    const char* val = std::getenv(v);
    env += std::string(" ") + v + "=" + (val ? val : "(unset)");
  }
  std::printf("[rank 0] env:%s\n", env.c_str());
  const char* p2p = std::getenv("NCCL_P2P_DISABLE");
  const char* shm = std::getenv("NCCL_SHM_DISABLE");
  if (std::getenv("NCCL_NET_PLUGIN") != nullptr &&
      !(p2p && std::strcmp(p2p, "1") == 0 && shm && std::strcmp(shm, "1") == 0)) {
    std::printf(
        "[rank 0] note: P2P/SHM are on, so GPUs of this host talk without the net plugin;"
        " use --force-net to route through it\n");
  }
}

int SelftestChild(const Options& o) {
  g_check = "selftest";
  ncclUniqueId want, got;
  FillSelftestId(&want);
  if (!FromHex(o.child_id, &got, sizeof(got)) || std::memcmp(&want, &got, sizeof(got)) != 0) {
    RankFailf("the id passed by the launcher did not arrive intact");
    return kExitWrong;
  }
  const int last = o.nranks - 1;
  if (o.selftest == "ok") {
    std::printf("[rank %d] selftest ok (pid %d)\n", g_rank, static_cast<int>(getpid()));
    return kExitOk;
  }
  if (o.selftest == "fail" && g_rank == last) {
    RankFailf("simulated failure");
    return kExitWrong;
  }
  if (o.selftest == "crash" && g_rank == 0) {
    std::fprintf(stderr, "[rank 0] selftest: aborting on purpose\n");
    std::fflush(stderr);
    std::abort();
  }
  for (;;) pause();  // a rank stuck in a collective
}

}  // namespace

int ChildMain(const Options& o) {
  g_rank = o.child_rank;
  g_check = "init";
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (!o.selftest.empty()) return SelftestChild(o);

  Rank r;
  r.rank = o.child_rank;
  r.nranks = o.nranks;
  ncclUniqueId id;
  if (!FromHex(o.child_id, &id, sizeof(id))) {
    RankFailf("--child-id is not %zu bytes of hex", sizeof(id));
    return kExitUsage;
  }

  int ndev = 0;
  CUDA_OK(cudaGetDeviceCount(&ndev));
  // More ranks than GPUs: each rank is its own host to NCCL (NCCL_HOSTID), set before NCCL runs.
  const epyard::launch::Placement place = epyard::launch::placeRank(r.rank, r.nranks, ndev);
  epyard::launch::applyPlacement(place, r.rank, epyard::launch::Sharing::kSeparateHosts);
  CUDA_OK(cudaSetDevice(place.device));
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDeviceProperties(&prop, place.device));
  std::printf("[rank %d] pid %d GPU %d %s (PCI %04x:%02x:%02x)%s\n", r.rank,
              static_cast<int>(getpid()), place.device, prop.name, prop.pciDomainID, prop.pciBusID,
              prop.pciDeviceID, place.shares_gpu ? " shared, NCCL_HOSTID set" : "");
  if (r.rank == 0) PrintVersions(ndev);
  CUDA_OK(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking));

  NCCL_OK(ncclCommInitRank(&r.comm, r.nranks, id, r.rank));
  g_comm = r.comm;
  int count = -1, user_rank = -1, device = -1;
  NCCL_OK(ncclCommCount(r.comm, &count));
  NCCL_OK(ncclCommUserRank(r.comm, &user_rank));
  NCCL_OK(ncclCommCuDevice(r.comm, &device));
  if (count != r.nranks || user_rank != r.rank || device != place.device) {
    RankFailf("communicator says %d ranks, rank %d, device %d", count, user_rank, device);
    Die(kExitApi);
  }
  if (r.rank == 0) std::printf("[rank 0] communicator of %d ranks ready\n", r.nranks);

  RunChecks(r);
  g_check = "agreeing on the correctness result";
  const int failures_everywhere = SumOverRanks(r, r.failures);
  const bool correct = failures_everywhere == 0;
  if (r.rank == 0) {
    std::printf("[rank 0] correctness: %s (%d failed checks over all ranks)\n",
                correct ? "PASS" : "FAIL", failures_everywhere);
  }

  Measurement ar, a2a;
  if (correct && !o.skip_perf) {
    if (r.rank == 0) {
      std::printf("# %10s %14s %12s %12s %12s   (%d ranks, %d warm-up + %d timed iterations)\n",
                  "op", "bytes", "time_us", "algbw_GBps", "busbw_GBps", r.nranks, o.warmup,
                  o.iters);
    }
    ar = PerfAllReduce(r, o);
    if (r.rank == 0) PrintRow("allreduce", ar);
    a2a = PerfAllToAll(r, o);
    if (r.rank == 0) PrintRow("alltoall", a2a);
  } else if (r.rank == 0 && !correct) {
    std::printf("[rank 0] skipping the bandwidth runs: results were wrong\n");
  }
  if (r.rank == 0) {
    std::printf("RESULT %s allreduce_busbw=%.2f alltoall_busbw=%.2f correct=%d\n", o.label.c_str(),
                ar.busbw, a2a.busbw, correct ? 1 : 0);
  }

  g_check = "teardown";
  NCCL_OK(ncclCommFinalize(r.comm));
  NCCL_OK(ncclCommDestroy(r.comm));
  g_comm = nullptr;
  CUDA_OK(cudaStreamDestroy(r.stream));
  std::fflush(stdout);
  if (r.failures != 0) return kExitWrong;
  if (!correct && r.rank == 0) return kExitWrong;  // rank 0 also fails for the others' failures
  return kExitOk;
}

}  // namespace epyard::nccl_check
