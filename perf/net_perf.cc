// epyard_net_perf: nccl-tests-style table of send/recv through the plugin between two
// processes, beside the same pattern run straight on the transport (--raw) in the same run.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mover.h"
#include "perf_common.h"

#ifndef EPYARD_DEFAULT_PLUGIN
#define EPYARD_DEFAULT_PLUGIN "libnccl-net-epyard.so"
#endif

namespace epyard::perf {
namespace {

struct Options {
  const char* plugin = EPYARD_DEFAULT_PLUGIN;
  const char* provider = nullptr;
  size_t min_bytes = 8, max_bytes = 64ull << 20, latency_max = 64 << 10;
  int iters = 0, window = 16;
  bool raw = false;
};

struct Row {
  double bw_us = 0, gbps = 0, lat_us = 0;
};

int itersFor(const Options& o, size_t size) {
  if (o.iters > 0) return o.iters;
  size_t budget = 512ull << 20;  // about 512 MiB moved per size, between 20 and 2000 messages
  size_t n = size == 0 ? 2000 : budget / size;
  return static_cast<int>(n < 20 ? 20 : (n > 2000 ? 2000 : n));
}

bool waitSlot(Mover* m, int slot, std::string* error) {
  double deadline = nowUs() + 60e6;
  for (bool done = false; !done;) {
    if (!m->test(slot, &done, error)) return false;
    if (nowUs() > deadline) {
      *error = "operation did not finish within 60 s";
      return false;
    }
  }
  return true;
}

bool postRetrying(Mover* m, bool send, size_t size, int* slot, std::string* error) {
  double deadline = nowUs() + 60e6;
  do {
    if (!(send ? m->postSend(size, slot, error) : m->postRecv(size, slot, error))) return false;
    if (nowUs() > deadline) {
      *error = "could not post within 60 s";
      return false;
    }
  } while (*slot < 0);
  return true;
}

// Rank 1 streams `iters` messages to rank 0 with `window` in flight; returns µs per message as
// seen by the sender from start until rank 0 acknowledged the last one.
bool bandwidth(Mover* m, int rank, Channel& ch, size_t size, int iters, int window, double* us,
               std::string* error) {
  std::vector<int> inflight;
  char token = 'g';
  if (rank == 0) {
    int posted = 0, completed = 0;
    while (posted < iters && static_cast<int>(inflight.size()) < window) {
      int slot;
      if (!postRetrying(m, false, size, &slot, error)) return false;
      inflight.push_back(slot), ++posted;
    }
    if (!ch.sendAll(&token, 1)) return false;
    while (completed < iters) {
      if (!waitSlot(m, inflight.front(), error)) return false;
      inflight.erase(inflight.begin()), ++completed;
      if (posted < iters) {
        int slot;
        if (!postRetrying(m, false, size, &slot, error)) return false;
        inflight.push_back(slot), ++posted;
      }
    }
    return ch.sendAll(&token, 1) && ch.recvAll(us, sizeof(*us));
  }
  if (!ch.recvAll(&token, 1)) return false;
  double start = nowUs();
  int posted = 0;
  while (posted < iters || !inflight.empty()) {
    if (posted < iters && static_cast<int>(inflight.size()) < window) {
      int slot;
      if (!postRetrying(m, true, size, &slot, error)) return false;
      inflight.push_back(slot), ++posted;
      continue;
    }
    if (!waitSlot(m, inflight.front(), error)) return false;
    inflight.erase(inflight.begin());
  }
  if (!ch.recvAll(&token, 1)) return false;
  *us = (nowUs() - start) / iters;
  return ch.sendAll(us, sizeof(*us));
}

// Ping-pong: half the round trip, measured on rank 1.
bool latency(Mover* m, int rank, Channel& ch, size_t size, int iters, double* us,
             std::string* error) {
  char token = 'l';
  if (rank == 0 && !ch.sendAll(&token, 1)) return false;
  if (rank == 1 && !ch.recvAll(&token, 1)) return false;
  double start = nowUs();
  for (int i = 0; i < iters; ++i) {
    int rslot, sslot;
    if (!postRetrying(m, false, size, &rslot, error)) return false;
    if (rank == 0 && !waitSlot(m, rslot, error)) return false;
    if (!postRetrying(m, true, size, &sslot, error) || !waitSlot(m, sslot, error)) return false;
    if (rank == 1 && !waitSlot(m, rslot, error)) return false;
  }
  *us = (nowUs() - start) / iters / 2;
  if (rank == 1) return ch.sendAll(us, sizeof(*us));
  return ch.recvAll(us, sizeof(*us));
}

int body(int rank, Channel& ch, void* arg) {
  const Options& o = *static_cast<Options*>(arg);
  std::vector<std::unique_ptr<Mover>> movers;
  movers.emplace_back(makePluginMover(o.plugin));
  if (o.raw) movers.emplace_back(makeRawOfiMover(o.provider));
  std::string error;
  for (auto& m : movers) {
    if (!m->setup(rank, ch, o.max_bytes < 8 ? 8 : o.max_bytes, &error)) {
      fprintf(stderr, "rank %d: %s setup: %s\n", rank, m->name(), error.c_str());
      return 1;
    }
  }
  // Warm up every path (connections are set up lazily by some providers) before timing.
  for (auto& m : movers) {
    double ignored = 0;
    size_t warm = o.max_bytes < (64u << 10) ? o.max_bytes : (64u << 10);
    if (!bandwidth(m.get(), rank, ch, warm, 32, o.window, &ignored, &error) ||
        !latency(m.get(), rank, ch, 8 < o.max_bytes ? 8 : o.max_bytes, 16, &ignored, &error)) {
      fprintf(stderr, "rank %d: %s warm-up: %s\n", rank, m->name(), error.c_str());
      return 1;
    }
  }
  if (rank == 0) {
    printf("# epyard_net_perf: rank 1 -> rank 0, window %d, plugin %s%s\n", o.window, o.plugin,
           o.raw ? ", raw = same pattern straight on the transport" : "");
    printf("# %12s %7s %11s %11s %10s", "size(B)", "iters", "time(us)", "busbw(GB/s)", "lat(us)");
    if (o.raw) printf(" %11s %11s %10s %8s", "raw_time", "raw_GB/s", "raw_lat", "vs_raw");
    printf("\n");
  }
  for (size_t size = o.min_bytes; size <= o.max_bytes; size = size ? size * 2 : 1) {
    int iters = itersFor(o, size);
    std::vector<Row> rows(movers.size());
    for (size_t i = 0; i < movers.size(); ++i) {
      Mover* m = movers[i].get();
      if (!bandwidth(m, rank, ch, size, iters, o.window, &rows[i].bw_us, &error) ||
          (size <= o.latency_max &&
           !latency(m, rank, ch, size, iters > 200 ? 200 : iters, &rows[i].lat_us, &error))) {
        fprintf(stderr, "rank %d: %s at %zu bytes: %s\n", rank, m->name(), size, error.c_str());
        return 1;
      }
      rows[i].gbps = rows[i].bw_us > 0 ? size / rows[i].bw_us / 1e3 : 0;
    }
    if (rank == 0) {
      printf("  %12zu %7d %11.2f %11.3f", size, iters, rows[0].bw_us, rows[0].gbps);
      if (size <= o.latency_max)
        printf(" %10.2f", rows[0].lat_us);
      else
        printf(" %10s", "-");
      if (o.raw) {
        printf(" %11.2f %11.3f", rows[1].bw_us, rows[1].gbps);
        if (size <= o.latency_max)
          printf(" %10.2f", rows[1].lat_us);
        else
          printf(" %10s", "-");
        printf(" %7.0f%%", rows[1].gbps > 0 ? 100.0 * rows[0].gbps / rows[1].gbps : 0.0);
      }
      printf("\n");
      fflush(stdout);
    }
    if (size == 0 && o.max_bytes == 0) break;
  }
  for (auto& m : movers) m->teardown();
  return 0;
}

void usage() {
  printf(
      "usage: epyard_net_perf [options]\n"
      "  --plugin PATH     plugin to load (default %s)\n"
      "  --raw             also run the same pattern straight on libfabric, same provider\n"
      "  --provider NAME   libfabric provider for --raw (default: as the plugin chooses)\n"
      "  -b, --min BYTES   smallest size (default 8; K/M/G suffixes)\n"
      "  -e, --max BYTES   largest size (default 64M)\n"
      "  -n, --iters N     messages per size (default: ~512 MiB worth, 20..2000)\n"
      "  -w, --window N    messages in flight (default 16, at most 32)\n"
      "  --latency-max B   ping-pong latency for sizes up to B (default 64K)\n",
      EPYARD_DEFAULT_PLUGIN);
}

}  // namespace
}  // namespace epyard::perf

int main(int argc, char** argv) {
  using namespace epyard::perf;
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "epyard_net_perf: %s needs a value\n", a.c_str());
        exit(2);
      }
      return argv[++i];
    };
    auto bytes = [&](size_t* out) {
      const char* v = value();
      if (!parseBytes(v, out)) {
        fprintf(stderr, "epyard_net_perf: %s: '%s' is not a size\n", a.c_str(), v);
        exit(2);
      }
    };
    if (a == "--plugin")
      o.plugin = value();
    else if (a == "--provider")
      o.provider = value();
    else if (a == "--raw")
      o.raw = true;
    else if (a == "-b" || a == "--min")
      bytes(&o.min_bytes);
    else if (a == "-e" || a == "--max")
      bytes(&o.max_bytes);
    else if (a == "--latency-max")
      bytes(&o.latency_max);
    else if (a == "-n" || a == "--iters")
      o.iters = atoi(value());
    else if (a == "-w" || a == "--window")
      o.window = atoi(value());
    else if (a == "-h" || a == "--help")
      return usage(), 0;
    else {
      fprintf(stderr, "epyard_net_perf: unknown option %s\n", a.c_str());
      usage();
      return 2;
    }
  }
  if (o.window < 1 || o.window > 32 || o.min_bytes > o.max_bytes || o.iters < 0) {
    fprintf(stderr, "epyard_net_perf: need 1 <= window <= 32, min <= max, iters >= 0\n");
    return 2;
  }
  return runTwoProcesses(body, &o, 600);
}
