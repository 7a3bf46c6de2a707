// epyard NCCL check: correctness and bandwidth of NCCL collectives, one process per GPU.
//
// The program is its own launcher. Run without --child-rank it is the launcher: it takes an
// ncclUniqueId (before any CUDA call), counts the visible GPUs, then forks and execs itself once
// per rank, passing the id as hex on the command line. Each child binds GPU <rank>, joins the
// communicator with ncclCommInitRank, checks all-reduce and all-to-all results on the host, times
// both, and rank 0 prints an nccl-tests style table plus one RESULT line. The launcher waits for
// every child with a deadline and kills the rest when one fails or the deadline passes.
//
// Exit codes (launcher): 0 all ranks passed, 1 a rank failed, 2 setup failed (no GPU, NCCL),
// 64 bad arguments, 124 timeout, 130 interrupted.
// Exit codes (rank): 0 ok, 1 wrong results, 2 CUDA/NCCL call failed, 3 NCCL async error.

#include <cuda_runtime.h>
#include <nccl.h>

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kExitOk = 0;
constexpr int kExitWrong = 1;
constexpr int kExitApi = 2;
constexpr int kExitAsync = 3;
constexpr int kExitUsage = 64;
constexpr int kExitTimeout = 124;
constexpr int kExitInterrupted = 130;

// ---------------------------------------------------------------------------------------------
// Options

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

void PrintUsage(const char* argv0) {
  std::printf(
      "usage: %s [options]\n"
      "\n"
      "Checks NCCL all-reduce and all-to-all results and measures their bandwidth, with one\n"
      "process per GPU on this host. Load the epyard net plugin with NCCL_NET_PLUGIN=epyard\n"
      "(libnccl-net-epyard.so on LD_LIBRARY_PATH); on one host NCCL only uses a net plugin\n"
      "between GPUs when P2P and SHM are off: see --force-net.\n"
      "\n"
      "options:\n"
      "  --nranks N        ranks (processes), rank r uses GPU r (default: visible GPUs)\n"
      "  --bytes SIZE      all-reduce float32 size to time (default 1G)\n"
      "  --a2a-bytes SIZE  all-to-all bytes sent per rank, all peers together (default 256M)\n"
      "  --iters N         timed iterations (default 20)\n"
      "  --warmup N        untimed iterations before them (default 5)\n"
      "  --label TEXT      label of the RESULT line, e.g. socket or epyard (default run)\n"
      "  --timeout-s S     kill all ranks after S seconds (default 300)\n"
      "  --grace-s S       once a rank fails, kill the others after S seconds (default 15)\n"
      "  --force-net       set NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 NCCL_NVLS_ENABLE=0 for the\n"
      "                    ranks, so that traffic between GPUs goes through the net transport\n"
      "  --skip-perf       run the correctness checks only\n"
      "  --launcher-selftest MODE\n"
      "                    test the launcher without GPU or NCCL: MODE is ok, fail (the last\n"
      "                    rank fails, the others hang), hang (all hang) or crash (rank 0 aborts)\n"
      "  -h, --help        this text\n"
      "\n"
      "SIZE is a byte count with an optional K, M, G or T suffix (powers of 1024), e.g. 64M.\n"
      "The launcher sets NCCL_NVLS_ENABLE=0 for the ranks unless it is already set.\n"
      "Rank 0 prints 'op bytes time_us algbw_GBps busbw_GBps' lines (GB = 1e9 bytes; busbw as in\n"
      "nccl-tests: all-reduce algbw*2(n-1)/n, all-to-all algbw*(n-1)/n; time is the mean over\n"
      "ranks) and 'RESULT <label> allreduce_busbw=<x> alltoall_busbw=<y> correct=<0|1>'.\n",
      argv0);
}

bool ParseInt(const char* s, long lo, long hi, int* out) {
  if (s == nullptr || *s == '\0') return false;
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  *out = static_cast<int>(v);
  return true;
}

// "4096", "64M", "1G", "256MiB", "2KB": binary multiples.
bool ParseSize(const char* s, uint64_t* out) {
  if (s == nullptr || *s < '0' || *s > '9') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0) return false;
  int shift = 0;
  switch (*end) {
    case '\0':
      break;
    case 'k':
    case 'K':
      shift = 10;
      ++end;
      break;
    case 'm':
    case 'M':
      shift = 20;
      ++end;
      break;
    case 'g':
    case 'G':
      shift = 30;
      ++end;
      break;
    case 't':
    case 'T':
      shift = 40;
      ++end;
      break;
    default:
      return false;
  }
  if (shift != 0) {
    if (std::strcmp(end, "i") == 0 || std::strcmp(end, "iB") == 0 || std::strcmp(end, "B") == 0) {
      end += std::strlen(end);
    }
  } else if (std::strcmp(end, "B") == 0) {
    ++end;
  }
  if (*end != '\0') return false;
  if (v > (UINT64_MAX >> shift)) return false;
  *out = static_cast<uint64_t>(v) << shift;
  return true;
}

// Returns -1 to go on, otherwise the exit code.
int ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char** v) -> bool {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "error: %s needs a value (see --help)\n", a.c_str());
        return false;
      }
      *v = argv[++i];
      return true;
    };
    auto bad = [&](const char* v) {
      std::fprintf(stderr, "error: bad value '%s' for %s (see --help)\n", v, a.c_str());
      return kExitUsage;
    };
    const char* v = nullptr;
    if (a == "-h" || a == "--help") {
      PrintUsage(argv[0]);
      return kExitOk;
    } else if (a == "--force-net") {
      o->force_net = true;
    } else if (a == "--skip-perf") {
      o->skip_perf = true;
    } else if (a == "--nranks") {
      if (!value(&v)) return kExitUsage;
      if (!ParseInt(v, 1, 4096, &o->nranks)) return bad(v);
    } else if (a == "--bytes") {
      if (!value(&v)) return kExitUsage;
      if (!ParseSize(v, &o->bytes) || o->bytes < 4) return bad(v);
    } else if (a == "--a2a-bytes") {
      if (!value(&v)) return kExitUsage;
      if (!ParseSize(v, &o->a2a_bytes) || o->a2a_bytes < 1) return bad(v);
    } else if (a == "--iters") {
      if (!value(&v)) return kExitUsage;
      if (!ParseInt(v, 1, 1000000, &o->iters)) return bad(v);
    } else if (a == "--warmup") {
      if (!value(&v)) return kExitUsage;
      if (!ParseInt(v, 0, 1000000, &o->warmup)) return bad(v);
    } else if (a == "--label") {
      if (!value(&v)) return kExitUsage;
      o->label = v;
      if (o->label.empty() || o->label.find_first_of(" \t\n=") != std::string::npos) return bad(v);
    } else if (a == "--timeout-s") {
      if (!value(&v)) return kExitUsage;
      if (!ParseInt(v, 1, 7 * 24 * 3600, &o->timeout_s)) return bad(v);
    } else if (a == "--grace-s") {
      if (!value(&v)) return kExitUsage;
      if (!ParseInt(v, 0, 3600, &o->grace_s)) return bad(v);
    } else if (a == "--launcher-selftest") {
      if (!value(&v)) return kExitUsage;
      o->selftest = v;
      if (o->selftest != "ok" && o->selftest != "fail" && o->selftest != "hang" &&
          o->selftest != "crash") {
        return bad(v);
      }
    } else if (a == "--child-rank") {  // internal: set by the launcher
      if (!value(&v)) return kExitUsage;
      if (!ParseInt(v, 0, 4095, &o->child_rank)) return bad(v);
    } else if (a == "--child-id") {  // internal: set by the launcher
      if (!value(&v)) return kExitUsage;
      o->child_id = v;
    } else {
      std::fprintf(stderr, "error: unknown argument '%s' (see --help)\n", a.c_str());
      return kExitUsage;
    }
  }
  if (o->child_rank >= 0) {
    if (o->nranks < 1 || o->child_rank >= o->nranks || o->child_id.empty()) {
      std::fprintf(stderr, "error: --child-rank needs --nranks above it and --child-id\n");
      return kExitUsage;
    }
  } else if (!o->child_id.empty()) {
    std::fprintf(stderr, "error: --child-id is internal to the launcher\n");
    return kExitUsage;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// ncclUniqueId <-> hex

std::string ToHex(const void* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  const unsigned char* b = static_cast<const unsigned char*>(p);
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kDigits[b[i] >> 4];
    s[2 * i + 1] = kDigits[b[i] & 15];
  }
  return s;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool FromHex(const std::string& s, void* p, size_t n) {
  if (s.size() != 2 * n) return false;
  unsigned char* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    int hi = HexDigit(s[2 * i]);
    int lo = HexDigit(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    b[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}

// The id the self-test passes in place of a real one.
void FillSelftestId(ncclUniqueId* id) {
  for (size_t i = 0; i < sizeof(id->internal); ++i) {
    id->internal[i] = static_cast<char>((i * 37 + 11) & 0xff);
  }
}

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

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// =============================================================================================
// Rank (child) side

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

// --- all-reduce values ------------------------------------------------------------------------

// Small integers, so that every partial sum is exact in float32 and bfloat16 whatever the order
// of the reduction: |value| <= mod/2, and the sums stay within 2^24 (float32) or 2^8 (bfloat16).
inline int AllReduceValue(int rank, uint64_t i, int seed, int mod) {
  uint64_t x = i * 7u + static_cast<uint64_t>(rank) * 13u + static_cast<uint64_t>(seed) * 29u;
  return static_cast<int>(x % static_cast<uint64_t>(mod)) - mod / 2;
}

inline uint16_t FloatToBf16Exact(float f) {  // exact for the small integers used here
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}

inline float Bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

const char* TypeName(ncclDataType_t t) {
  switch (t) {
    case ncclFloat32:
      return "float32";
    case ncclBfloat16:
      return "bfloat16";
    case ncclUint32:
      return "uint32";
    case ncclInt8:
      return "int8";
    default:
      return "?";
  }
}

// One all-reduce (sum) correctness check, `rounds` times on the same buffers with new data.
void CheckAllReduce(Rank& r, size_t count, ncclDataType_t type, bool in_place, int rounds) {
  const size_t esize = (type == ncclBfloat16) ? 2 : 4;
  const size_t bytes = count * esize;
  // bfloat16 holds integers exactly up to 256: keep n * mod/2 within that.
  int mod = 17;
  if (type == ncclBfloat16) mod = (r.nranks <= 32) ? 17 : (r.nranks <= 128 ? 5 : 1);
  char name[160];
  std::snprintf(name, sizeof(name), "allreduce %s count=%zu (%s) %s", TypeName(type), count,
                FormatBytes(bytes).c_str(), in_place ? "in-place" : "out-of-place");

  DevBuf send(bytes);
  DevBuf recv_buf(in_place ? 0 : bytes);
  void* recv = in_place ? send.p : recv_buf.p;
  std::vector<unsigned char> host(bytes);
  std::vector<unsigned char> got(bytes);
  int bad_rounds = 0;

  for (int round = 0; round < rounds; ++round) {
    const int seed = static_cast<int>(count % 1000) + 100 * round + (in_place ? 50 : 0);
    g_check = std::string(name) + " round " + std::to_string(round + 1);
    for (size_t i = 0; i < count; ++i) {
      float v = static_cast<float>(AllReduceValue(r.rank, i, seed, mod));
      if (type == ncclBfloat16) {
        uint16_t h = FloatToBf16Exact(v);
        std::memcpy(&host[i * 2], &h, 2);
      } else {
        std::memcpy(&host[i * 4], &v, 4);
      }
    }
    CUDA_OK(cudaMemcpy(send.p, host.data(), bytes, cudaMemcpyHostToDevice));
    if (!in_place) CUDA_OK(cudaMemset(recv, 0xff, bytes));  // NaN: catches untouched output
    CUDA_OK(cudaDeviceSynchronize());
    NCCL_OK(ncclAllReduce(send.p, recv, count, type, ncclSum, r.comm, r.stream));
    WaitStream(r.stream);
    CUDA_OK(cudaMemcpy(got.data(), recv, bytes, cudaMemcpyDeviceToHost));

    size_t wrong = 0;
    for (size_t i = 0; i < count; ++i) {
      int expect = 0;
      for (int q = 0; q < r.nranks; ++q) expect += AllReduceValue(q, i, seed, mod);
      float g;
      if (type == ncclBfloat16) {
        uint16_t h;
        std::memcpy(&h, &got[i * 2], 2);
        g = Bf16ToFloat(h);
      } else {
        std::memcpy(&g, &got[i * 4], 4);
      }
      if (!(g == static_cast<float>(expect))) {
        if (wrong < 3) {
          RankFailf("element %zu is %g, expected %d", i, static_cast<double>(g), expect);
        }
        ++wrong;
      }
    }
    if (wrong != 0) {
      RankFailf("%zu of %zu elements wrong", wrong, count);
      ++bad_rounds;
    }
  }
  if (bad_rounds != 0) {
    ++r.failures;
  } else if (r.rank == 0) {
    std::printf("[rank 0] ok   %s x%d\n", name, rounds);
  }
}

// --- all-to-all values ------------------------------------------------------------------------

inline uint32_t Mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h;
}

// Element j of the block that rank src sends to rank dst.
inline uint32_t AllToAllValue(int src, int dst, uint64_t j, int seed) {
  uint32_t h = Mix32(static_cast<uint32_t>(src) * 0x9e3779b1u + static_cast<uint32_t>(seed));
  h = Mix32(h ^ (static_cast<uint32_t>(dst) * 0x85ebca77u));
  return Mix32(h ^ static_cast<uint32_t>(j) ^ static_cast<uint32_t>(j >> 32) * 0xc2b2ae3du);
}

// All-to-all from grouped ncclSend/ncclRecv; counts[s * n + d] elements (uint32) go from s to d.
void CheckAllToAll(Rank& r, const std::vector<size_t>& counts, const char* what, int rounds) {
  const int n = r.nranks;
  std::vector<size_t> send_off(n + 1, 0), recv_off(n + 1, 0);
  for (int p = 0; p < n; ++p) {
    send_off[p + 1] = send_off[p] + counts[static_cast<size_t>(r.rank) * n + p];
    recv_off[p + 1] = recv_off[p] + counts[static_cast<size_t>(p) * n + r.rank];
  }
  const size_t send_n = send_off[n], recv_n = recv_off[n];
  size_t all_n = 0;
  for (size_t c : counts) all_n += c;
  char name[160];
  std::snprintf(name, sizeof(name), "alltoall uint32 %s (%s sent by rank %d)", what,
                FormatBytes(send_n * 4).c_str(), r.rank);

  DevBuf send(send_n * 4);
  DevBuf recv(recv_n * 4);
  std::vector<uint32_t> host(send_n);
  std::vector<uint32_t> got(recv_n);
  int bad_rounds = 0;

  for (int round = 0; round < rounds; ++round) {
    // The same on every rank: senders and receivers must agree on the data.
    const int seed = 7 + 1000 * round + static_cast<int>(all_n % 997);
    g_check = std::string(name) + " round " + std::to_string(round + 1);
    for (int d = 0; d < n; ++d) {
      for (size_t j = 0; j < send_off[d + 1] - send_off[d]; ++j) {
        host[send_off[d] + j] = AllToAllValue(r.rank, d, j, seed);
      }
    }
    CUDA_OK(cudaMemcpy(send.p, host.data(), send_n * 4, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(recv.p, 0xa5, recv_n * 4));
    CUDA_OK(cudaDeviceSynchronize());
    uint32_t* sp = static_cast<uint32_t*>(send.p);
    uint32_t* rp = static_cast<uint32_t*>(recv.p);
    NCCL_OK(ncclGroupStart());
    for (int p = 0; p < n; ++p) {
      NCCL_OK(ncclSend(sp + send_off[p], send_off[p + 1] - send_off[p], ncclUint32, p, r.comm,
                       r.stream));
      NCCL_OK(ncclRecv(rp + recv_off[p], recv_off[p + 1] - recv_off[p], ncclUint32, p, r.comm,
                       r.stream));
    }
    NCCL_OK(ncclGroupEnd());
    WaitStream(r.stream);
    CUDA_OK(cudaMemcpy(got.data(), recv.p, recv_n * 4, cudaMemcpyDeviceToHost));

    size_t wrong = 0;
    for (int s = 0; s < n; ++s) {
      for (size_t j = 0; j < recv_off[s + 1] - recv_off[s]; ++j) {
        uint32_t expect = AllToAllValue(s, r.rank, j, seed);
        uint32_t g = got[recv_off[s] + j];
        if (g != expect) {
          if (wrong < 3) {
            RankFailf("from rank %d element %zu is 0x%08x, expected 0x%08x", s, j, g, expect);
          }
          ++wrong;
        }
      }
    }
    if (wrong != 0) {
      RankFailf("%zu of %zu received elements wrong", wrong, recv_n);
      ++bad_rounds;
    }
  }
  if (bad_rounds != 0) {
    ++r.failures;
  } else if (r.rank == 0) {
    std::printf("[rank 0] ok   %s x%d\n", name, rounds);
  }
}

void RunChecks(Rank& r) {
  const int kRounds = 2;
  // float32: 4 B, 1 KiB, an odd count, 1 MiB (out-of-place and in-place), 64 MiB.
  CheckAllReduce(r, 1, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 256, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 12345, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 262144, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 262144, ncclFloat32, true, kRounds);
  CheckAllReduce(r, 16777216, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 524288, ncclBfloat16, false, kRounds);  // 1 MiB

  const int n = r.nranks;
  const size_t nn = static_cast<size_t>(n) * n;
  CheckAllToAll(r, std::vector<size_t>(nn, 1), "4 B per peer", kRounds);
  CheckAllToAll(r, std::vector<size_t>(nn, 1000), "4000 B per peer", kRounds);
  CheckAllToAll(r, std::vector<size_t>(nn, 262144), "1 MiB per peer", kRounds);
  CheckAllToAll(r, std::vector<size_t>(nn, 1048576), "4 MiB per peer", kRounds);
  std::vector<size_t> uneven(nn);
  for (int s = 0; s < n; ++s) {
    for (int d = 0; d < n; ++d) {
      const size_t step = static_cast<size_t>((s * 5 + d * 3 + 1) % 7);
      uneven[static_cast<size_t>(s) * n + d] = 1 + step * 40009;
    }
  }
  CheckAllToAll(r, uneven, "uneven 4 B..0.9 MiB per peer", kRounds);
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

struct Measurement {
  uint64_t bytes = 0;
  double time_us = 0;
  double algbw = 0;
  double busbw = 0;
};

void PrintRow(const char* op, const Measurement& m) {
  std::printf("%12s %14" PRIu64 " %12.1f %12.2f %12.2f\n", op, m.bytes, m.time_us, m.algbw,
              m.busbw);
}

// Times `iters` launches of `op` between two events, after `warmup` untimed ones.
template <typename Op>
double TimeIterationsUs(Rank& r, const Options& o, Op op) {
  for (int i = 0; i < o.warmup; ++i) op();
  WaitStream(r.stream);
  cudaEvent_t start, stop;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  CUDA_OK(cudaEventRecord(start, r.stream));
  for (int i = 0; i < o.iters; ++i) op();
  CUDA_OK(cudaEventRecord(stop, r.stream));
  WaitEvent(stop);
  float ms = 0;
  CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
  CUDA_OK(cudaEventDestroy(start));
  CUDA_OK(cudaEventDestroy(stop));
  return MeanOverRanks(r, 1000.0 * static_cast<double>(ms) / o.iters);
}

Measurement PerfAllReduce(Rank& r, const Options& o) {
  const size_t count = o.bytes / 4;
  const size_t bytes = count * 4;
  g_check = "perf allreduce float32 " + FormatBytes(bytes);
  DevBuf send(bytes), recv(bytes);
  CUDA_OK(cudaMemset(send.p, 0, bytes));
  CUDA_OK(cudaMemset(recv.p, 0, bytes));
  CUDA_OK(cudaDeviceSynchronize());
  double us = TimeIterationsUs(r, o, [&] {
    NCCL_OK(ncclAllReduce(send.p, recv.p, count, ncclFloat32, ncclSum, r.comm, r.stream));
  });
  Measurement m;
  m.bytes = bytes;
  m.time_us = us;
  m.algbw = static_cast<double>(bytes) / (us * 1e-6) / 1e9;
  m.busbw = m.algbw * 2.0 * (r.nranks - 1) / r.nranks;
  return m;
}

Measurement PerfAllToAll(Rank& r, const Options& o) {
  const int n = r.nranks;
  const size_t per_peer = o.a2a_bytes / static_cast<uint64_t>(n);
  const size_t bytes = per_peer * n;
  g_check = "perf alltoall " + FormatBytes(bytes);
  DevBuf send(bytes), recv(bytes);
  CUDA_OK(cudaMemset(send.p, 0, bytes));
  CUDA_OK(cudaMemset(recv.p, 0, bytes));
  CUDA_OK(cudaDeviceSynchronize());
  char* sp = static_cast<char*>(send.p);
  char* rp = static_cast<char*>(recv.p);
  double us = TimeIterationsUs(r, o, [&] {
    NCCL_OK(ncclGroupStart());
    for (int p = 0; p < n; ++p) {
      NCCL_OK(ncclSend(sp + p * per_peer, per_peer, ncclInt8, p, r.comm, r.stream));
      NCCL_OK(ncclRecv(rp + p * per_peer, per_peer, ncclInt8, p, r.comm, r.stream));
    }
    NCCL_OK(ncclGroupEnd());
  });
  Measurement m;
  m.bytes = bytes;
  m.time_us = us;
  m.algbw = static_cast<double>(bytes) / (us * 1e-6) / 1e9;
  m.busbw = m.algbw * static_cast<double>(n - 1) / n;
  return m;
}

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
  if (r.rank >= ndev) {
    RankFailf("rank %d needs GPU %d but only %d are visible", r.rank, r.rank, ndev);
    return kExitApi;
  }
  CUDA_OK(cudaSetDevice(r.rank));
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDeviceProperties(&prop, r.rank));
  std::printf("[rank %d] pid %d GPU %d %s (PCI %04x:%02x:%02x)\n", r.rank,
              static_cast<int>(getpid()), r.rank, prop.name, prop.pciDomainID, prop.pciBusID,
              prop.pciDeviceID);
  if (r.rank == 0) PrintVersions(ndev);
  CUDA_OK(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking));

  NCCL_OK(ncclCommInitRank(&r.comm, r.nranks, id, r.rank));
  g_comm = r.comm;
  int count = -1, user_rank = -1, device = -1;
  NCCL_OK(ncclCommCount(r.comm, &count));
  NCCL_OK(ncclCommUserRank(r.comm, &user_rank));
  NCCL_OK(ncclCommCuDevice(r.comm, &device));
  if (count != r.nranks || user_rank != r.rank || device != r.rank) {
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

// =============================================================================================
// Launcher side

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
    if (nranks > ndev) {
      LauncherMsg("error: --nranks %d needs %d GPUs, only %d are visible", nranks, nranks, ndev);
      return kExitApi;
    }
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

}  // namespace

int main(int argc, char** argv) {
  Options o;
  int rc = ParseArgs(argc, argv, &o);
  if (rc >= 0) return rc;
  if (o.child_rank >= 0) return ChildMain(o);
  return LauncherMain(o, argv[0]);
}
