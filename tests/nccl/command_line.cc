// epyard NCCL check: the command line. Options and --help, shared by the launcher and its
// ranks, and the ncclUniqueId as hex, the form in which the launcher hands it to each rank.

#include "nccl_check.h"

#include <errno.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace epyard::nccl_check {
namespace {

// ---------------------------------------------------------------------------------------------
// Options

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
      "  --nranks N        ranks (processes), rank r uses GPU r %% GPUs (default: visible GPUs);\n"
      "                    with more ranks than GPUs each rank is its own host (NCCL_HOSTID)\n"
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

}  // namespace

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

namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

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

}  // namespace epyard::nccl_check
