// epyard NCCL check: bandwidth of all-reduce and all-to-all, timed with CUDA events and
// reported as in nccl-tests (time is the mean over ranks).

#include "nccl_check.h"

#include <cinttypes>
#include <cstdint>
#include <cstdio>

namespace epyard::nccl_check {

void PrintRow(const char* op, const Measurement& m) {
  std::printf("%12s %14" PRIu64 " %12.1f %12.2f %12.2f\n", op, m.bytes, m.time_us, m.algbw,
              m.busbw);
}

namespace {

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

}  // namespace

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

}  // namespace epyard::nccl_check
