// epyard_nvlink_probe: how fast SM stores move data to the other GPUs when every GPU sends to
// every other at the same time — the pattern of the LL send phases — and so what floor the
// bytes of a dispatch or combine put under its latency on this machine.
//
// One process drives all visible GPUs (peer access between every pair). Per run, every GPU
// sends `bytes` in total, split evenly over the other GPUs, in chunks of --chunk bytes that the
// blocks of its grid take in turn (chunk i goes to peer i mod (G-1)). The kernels of all GPUs
// first meet at a barrier over peer memory, so they overlap whatever the launch skew; a GPU's
// time runs from its first block leaving the barrier to its last block's system-scope fence
// (its stores have then reached the peers). Printed: the largest of the GPUs' times, median
// over --iters runs, and egress GB/s per GPU.
// Modes: `store` (16-byte stores of register values: the store path alone), `copy` (16-byte
// loads of local memory, then stores: what the LL kernels do), `bulk` (one TMA bulk copy per
// chunk from shared memory, cp.async.bulk; chunks up to 32 KiB).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "perf_common.h"

namespace {

constexpr int kMaxGpus = 8;
constexpr int kThreads = 512;
constexpr int kMaxBulkChunk = 32 * 1024;

enum Mode { kStore, kCopy, kBulk };

struct ProbeArgs {
  char* dst[kMaxGpus];        // per peer: where this GPU's bytes go in that peer's buffer
  uint64_t* flags[kMaxGpus];  // per GPU: its barrier words, one per sender
  const char* src;            // local source (copy mode)
  uint64_t* times;            // [0] first start, [1] last end (ns, this GPU's clock)
  uint32_t* done;             // blocks finished (the last one resets it)
  uint64_t round;
  int me, gpus, mode;
  uint32_t bytes_per_peer, chunk;
};

__device__ uint64_t globalNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void __launch_bounds__(kThreads) probeKernel(ProbeArgs a) {
  extern __shared__ __align__(128) char smem[];
  // Barrier: thread p of block 0 tells GPU p that this GPU arrived; thread 0 of every block
  // waits until every GPU arrived.
  if (blockIdx.x == 0 && threadIdx.x < a.gpus)
    asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(a.flags[threadIdx.x] + a.me),
                 "l"(a.round) : "memory");
  if (threadIdx.x == 0) {
    for (int p = 0; p < a.gpus; ++p) {
      uint64_t v;
      do {
        asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(a.flags[a.me] + p) : "memory");
      } while (v < a.round);
    }
    atomicMin(reinterpret_cast<unsigned long long*>(&a.times[0]), globalNs());
  }
  if (a.mode == kBulk) {  // the chunk's bytes, staged once (their value does not matter)
    for (uint32_t i = threadIdx.x * 16; i < a.chunk; i += blockDim.x * 16)
      *reinterpret_cast<int4*>(smem + i) = make_int4(a.me, i, 1, 2);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  const int peers = a.gpus - 1;
  const uint32_t chunks_per_peer = a.bytes_per_peer / a.chunk;
  const uint32_t chunks = chunks_per_peer * peers;
  for (uint32_t i = blockIdx.x; i < chunks; i += gridDim.x) {
    const int p = (a.me + 1 + static_cast<int>(i % peers)) % a.gpus;
    const size_t off = static_cast<size_t>(i / peers) * a.chunk;
    char* dst = a.dst[p] + off;
    if (a.mode == kBulk) {
      if (threadIdx.x == 0)
        asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst),
                     "r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem))), "r"(a.chunk)
                     : "memory");
    } else if (a.mode == kCopy) {
      const int4* s = reinterpret_cast<const int4*>(a.src + off);
      int4* d = reinterpret_cast<int4*>(dst);
      for (uint32_t k = threadIdx.x; k < a.chunk / 16; k += blockDim.x) d[k] = s[k];
    } else {
      int4* d = reinterpret_cast<int4*>(dst);
      for (uint32_t k = threadIdx.x; k < a.chunk / 16; k += blockDim.x)
        d[k] = make_int4(static_cast<int>(k), static_cast<int>(i), a.me, 7);
    }
  }
  if (a.mode == kBulk && threadIdx.x == 0) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence_system();
    atomicMax(reinterpret_cast<unsigned long long*>(&a.times[1]), globalNs());
    __threadfence();
    if (atomicAdd(a.done, 1u) == gridDim.x - 1) *a.done = 0;
  }
}

#define CHECK(x)                                                                   \
  do {                                                                             \
    cudaError_t e_ = (x);                                                          \
    if (e_ != cudaSuccess) {                                                       \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                \
    }                                                                              \
  } while (0)

struct Gpu {
  char* recv = nullptr;  // gpus x max_bytes_per_peer
  char* src = nullptr;
  uint64_t* flags = nullptr;
  uint64_t* times = nullptr;  // device
  uint32_t* done = nullptr;
  cudaStream_t stream = nullptr;
};

void usage() {
  std::printf(
      "usage: epyard_nvlink_probe [--kb 2600,4900,49152] [--grids 132,66,33] [--chunk 7168]\n"
      "                           [--modes store,copy,bulk] [--iters 20]\n"
      "  --kb     bytes each GPU sends in total (KiB), split evenly over the other GPUs\n"
      "  --grids  blocks per GPU (each 512 threads)\n"
      "  --chunk  bytes per chunk (multiple of 16; bulk: at most 32768)\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> kbs{2600, 4900, 49152}, grids{132, 66, 33};
  std::vector<std::string> modes{"store", "copy", "bulk"};
  int chunk = 7168, iters = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string o = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (o == "--help" || o == "-h") { usage(); return 0; }
    if (!v) { std::fprintf(stderr, "%s needs a value\n", o.c_str()); return 2; }
    if (o == "--kb") kbs = epyard::perf::parseIntList(v);
    else if (o == "--grids") grids = epyard::perf::parseIntList(v);
    else if (o == "--chunk") chunk = std::atoi(v);
    else if (o == "--iters") iters = std::atoi(v);
    else if (o == "--modes") modes = epyard::perf::parseWordList(v);
    else { std::fprintf(stderr, "unknown option %s\n", o.c_str()); usage(); return 2; }
    ++i;
  }
  if (chunk <= 0 || chunk % 16 != 0 || iters <= 0) {
    std::fprintf(stderr, "--chunk must be a positive multiple of 16 and --iters positive\n");
    return 2;
  }
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess) gpus = 0;
  gpus = std::min(gpus, kMaxGpus);
  if (gpus < 2) {
    std::printf("epyard_nvlink_probe: needs at least 2 GPUs, found %d; nothing to measure\n", gpus);
    return 0;
  }
  size_t max_per_peer = 0;
  for (int kb : kbs) max_per_peer = std::max(max_per_peer, static_cast<size_t>(kb) * 1024 / (gpus - 1) + chunk);
  std::vector<Gpu> g(gpus);
  for (int i = 0; i < gpus; ++i) {
    CHECK(cudaSetDevice(i));
    for (int j = 0; j < gpus; ++j) {
      int ok = 0;
      if (j == i) continue;
      CHECK(cudaDeviceCanAccessPeer(&ok, i, j));
      if (!ok) { std::printf("GPU %d cannot reach GPU %d by peer access\n", i, j); return 1; }
      CHECK(cudaDeviceEnablePeerAccess(j, 0));
    }
    CHECK(cudaMalloc(&g[i].recv, gpus * max_per_peer));
    CHECK(cudaMalloc(&g[i].src, max_per_peer));
    CHECK(cudaMemset(g[i].src, 1, max_per_peer));
    CHECK(cudaMalloc(&g[i].flags, gpus * sizeof(uint64_t)));
    CHECK(cudaMemset(g[i].flags, 0, gpus * sizeof(uint64_t)));
    CHECK(cudaMalloc(&g[i].times, 2 * sizeof(uint64_t)));
    CHECK(cudaMalloc(&g[i].done, sizeof(uint32_t)));
    CHECK(cudaMemset(g[i].done, 0, sizeof(uint32_t)));
    CHECK(cudaStreamCreateWithFlags(&g[i].stream, cudaStreamNonBlocking));
    CHECK(cudaFuncSetAttribute(probeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxBulkChunk));
  }
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("# epyard_nvlink_probe: %d x %s, all GPUs sending to all others at once, chunk %d B\n",
              gpus, prop.name, chunk);
  std::printf("# %-6s %6s %10s %10s %10s %10s\n", "mode", "grid", "KiB/GPU", "us(med)", "us(min)", "GB/s");
  uint64_t round = 0;
  for (const std::string& mode_name : modes) {
    const int mode = mode_name == "store" ? kStore : mode_name == "copy" ? kCopy : mode_name == "bulk" ? kBulk : -1;
    if (mode < 0) { std::fprintf(stderr, "unknown mode %s\n", mode_name.c_str()); return 2; }
    if (mode == kBulk && chunk > kMaxBulkChunk) { std::printf("# bulk: chunk over 32 KiB, skipped\n"); continue; }
    for (int grid : grids) {
      if (grid <= 0 || grid > prop.multiProcessorCount) continue;  // all blocks must be resident
      for (int kb : kbs) {
        const uint32_t per_peer = static_cast<uint32_t>(static_cast<size_t>(kb) * 1024 / (gpus - 1) / chunk * chunk);
        std::vector<double> worst;
        for (int it = 0; it < iters + 3; ++it) {
          ++round;
          for (int i = 0; i < gpus; ++i) {
            CHECK(cudaSetDevice(i));
            const uint64_t init[2] = {~0ull, 0};
            CHECK(cudaMemcpyAsync(g[i].times, init, sizeof(init), cudaMemcpyHostToDevice, g[i].stream));
          }
          for (int i = 0; i < gpus; ++i) {
            CHECK(cudaSetDevice(i));
            ProbeArgs a{};
            for (int p = 0; p < gpus; ++p) {
              a.dst[p] = g[p].recv + static_cast<size_t>(i) * max_per_peer;
              a.flags[p] = g[p].flags;
            }
            a.src = g[i].src;
            a.times = g[i].times;
            a.done = g[i].done;
            a.round = round;
            a.me = i;
            a.gpus = gpus;
            a.mode = mode;
            a.bytes_per_peer = per_peer;
            a.chunk = static_cast<uint32_t>(chunk);
            probeKernel<<<grid, kThreads, mode == kBulk ? chunk : 0, g[i].stream>>>(a);
            CHECK(cudaGetLastError());
          }
          double w = 0;
          for (int i = 0; i < gpus; ++i) {
            CHECK(cudaSetDevice(i));
            uint64_t t[2];
            CHECK(cudaMemcpyAsync(t, g[i].times, sizeof(t), cudaMemcpyDeviceToHost, g[i].stream));
            CHECK(cudaStreamSynchronize(g[i].stream));
            w = std::max(w, (t[1] - t[0]) / 1e3);
          }
          if (it >= 3) worst.push_back(w);
        }
        std::sort(worst.begin(), worst.end());
        const double med = worst[worst.size() / 2];
        const double sent = static_cast<double>(per_peer) * (gpus - 1);
        std::printf("  %-6s %6d %10.0f %10.2f %10.2f %10.1f\n", mode_name.c_str(), grid, sent / 1024, med,
                    worst.front(), sent / med / 1e3);
      }
    }
  }
  return 0;
}
