// epyard_ep_perf: nccl-tests-style latency and bandwidth of LL dispatch and combine, beside an
// NCCL all-to-all of the same bytes measured in the same run.
//
// Method (as in DESIGN.md): per rank, the average over --iters calls after --warmup calls; each
// call timed with CUDA events on its stream, ranks aligned by a barrier (a one-element NCCL
// all-reduce) before every timed call. By default the barrier is stream-ordered: the events and
// the op are queued behind it, so every rank starts the op within the barrier's skew and host
// launch jitter is not counted. --host-barrier synchronises the host after the barrier instead
// (launch latency and host skew between ranks then count, as a host-driven loop sees them).
// --loop times --iters back-to-back calls between two events instead (no barrier between
// calls; each call still waits for its peers): the per-call time a pipelined loop sees.
// --pair alternates dispatch and combine back to back after one barrier, as a decode loop
// does, with an event between every two ops; each op's time is the gap between its events
// (launch gaps included; DeepEP's benchmark reports the kernels' own durations instead).
// The table shows the mean over ranks of the per-rank averages, and the smallest and largest.
// Bytes (DeepEP's accounting): valid (token, expert) pairs sent by a rank x bytes per token:
// FP8 dispatch H + 4 H/128 (scales), BF16 2H; combine 2H. GB/s = those bytes / latency.
// The all-to-all baseline moves the same number of bytes per rank, spread evenly over ranks.
// `floor`: a 4-byte cudaMemsetAsync timed the same way — what the method itself costs.
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "launch/ranks.h"
#include "perf_common.h"
#include "nccl_ep.h"

namespace {

struct Options {
  int nranks = 0;
  std::vector<int> tokens{128}, hidden{7168}, topk{8}, experts{256};
  int iters = 50, warmup = 10;
  bool fp8 = true;
  bool rank_major = false;
  bool host_barrier = false;
  int sms = 0;  // config.max_num_sms (0: all)
  bool loop = false;
  bool pair = false;
};


#define CHECK_CUDA(x)                                                                         \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "[rank %d] %s: %s\n", rank, #x, cudaGetErrorString(e_));          \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)
#define CHECK_NCCL(x, g)                                                                      \
  do {                                                                                        \
    ncclResult_t r_ = (x);                                                                    \
    if (r_ != ncclSuccess) {                                                                  \
      std::fprintf(stderr, "[rank %d] %s: %s %s\n", rank, #x, ncclGetErrorString(r_),         \
                   ncclEpGetLastError(g));                                                    \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)

struct Tensor {
  ncclEpTensor_t t = NCCL_EP_TENSOR_INIT;
  size_t sizes[3] = {0, 0, 0};
  void* data = nullptr;
  bool make(ncclDataType_t type, std::vector<size_t> dims, size_t element) {
    size_t bytes = element;
    for (size_t i = 0; i < dims.size(); ++i) bytes *= (sizes[i] = dims[i]);
    t.ndim = static_cast<unsigned int>(dims.size());
    t.datatype = type;
    t.sizes = sizes;
    if (cudaMalloc(&data, bytes) != cudaSuccess) return false;
    cudaMemset(data, 0, bytes);
    t.data = data;
    return true;
  }
  ~Tensor() { if (data) cudaFree(data); }
};

struct Stats {
  float avg = 0, lo = 0, hi = 0;
};

// This rank's mean (us) -> the mean over ranks, the smallest and the largest.
int gatherStats(int rank, int nranks, ncclComm_t comm, cudaStream_t st, float* gathered, float mine,
                Stats* out) {
  CHECK_CUDA(cudaMemcpy(gathered + rank, &mine, sizeof(float), cudaMemcpyHostToDevice));
  CHECK_NCCL(ncclAllGather(gathered + rank, gathered, 1, ncclFloat32, comm, st), nullptr);
  std::vector<float> all(nranks);
  CHECK_CUDA(cudaMemcpyAsync(all.data(), gathered, sizeof(float) * nranks, cudaMemcpyDeviceToHost, st));
  CHECK_CUDA(cudaStreamSynchronize(st));
  out->lo = *std::min_element(all.begin(), all.end());
  out->hi = *std::max_element(all.begin(), all.end());
  double s = 0;
  for (float v : all) s += v;
  out->avg = static_cast<float>(s / nranks);
  return 0;
}

// Times `op` (already aligned) --iters times after --warmup; returns the stats over ranks (us).
template <typename Op>
int timeOp(int rank, int nranks, ncclComm_t comm, cudaStream_t st, const Options& o, float* barrier,
           float* gathered, Op op, Stats* out) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  double sum = 0;
  if (o.loop || o.pair) {
    for (int i = 0; i < o.warmup; ++i)
      if (op() != 0) return 1;
    CHECK_NCCL(ncclAllReduce(barrier, barrier, 1, ncclFloat32, ncclSum, comm, st), nullptr);
    CHECK_CUDA(cudaEventRecord(a, st));
    for (int i = 0; i < o.iters; ++i)
      if (op() != 0) return 1;
    CHECK_CUDA(cudaEventRecord(b, st));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    sum = ms * 1000.0;
  }
  for (int i = 0; !(o.loop || o.pair) && i < o.warmup + o.iters; ++i) {
    CHECK_NCCL(ncclAllReduce(barrier, barrier, 1, ncclFloat32, ncclSum, comm, st), nullptr);
    if (o.host_barrier) CHECK_CUDA(cudaStreamSynchronize(st));
    CHECK_CUDA(cudaEventRecord(a, st));
    if (op() != 0) return 1;
    CHECK_CUDA(cudaEventRecord(b, st));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    if (i >= o.warmup) sum += ms * 1000.0;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return gatherStats(rank, nranks, comm, st, gathered, static_cast<float>(sum / o.iters), out);
}

// --pair: a decode loop's pattern, dispatch then combine, --iters pairs back to back after one
// barrier, an event between every two ops; each op's time is the gap between its events.
template <typename Disp, typename Comb>
int timePairs(int rank, int nranks, ncclComm_t comm, cudaStream_t st, const Options& o,
              float* barrier, float* gathered, Disp disp, Comb comb, Stats* d_out, Stats* c_out) {
  for (int i = 0; i < o.warmup; ++i)
    if (disp() != 0 || comb() != 0) return 1;
  std::vector<cudaEvent_t> ev(2 * o.iters + 1);
  for (cudaEvent_t& e : ev) CHECK_CUDA(cudaEventCreate(&e));
  CHECK_NCCL(ncclAllReduce(barrier, barrier, 1, ncclFloat32, ncclSum, comm, st), nullptr);
  CHECK_CUDA(cudaEventRecord(ev[0], st));
  for (int i = 0; i < o.iters; ++i) {
    if (disp() != 0) return 1;
    CHECK_CUDA(cudaEventRecord(ev[2 * i + 1], st));
    if (comb() != 0) return 1;
    CHECK_CUDA(cudaEventRecord(ev[2 * i + 2], st));
  }
  CHECK_CUDA(cudaEventSynchronize(ev.back()));
  double sum[2] = {0, 0};
  for (int i = 0; i < 2 * o.iters; ++i) {
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, ev[i], ev[i + 1]));
    sum[i % 2] += ms * 1000.0;
  }
  for (cudaEvent_t e : ev) cudaEventDestroy(e);
  if (gatherStats(rank, nranks, comm, st, gathered, static_cast<float>(sum[0] / o.iters), d_out)) return 1;
  return gatherStats(rank, nranks, comm, st, gathered, static_cast<float>(sum[1] / o.iters), c_out);
}

int runConfig(int rank, int nranks, ncclComm_t comm, cudaStream_t st, const Options& o, int T, int H,
              int K, int E, float* barrier, float* gathered) {
  ncclEpGroupConfig_t cfg = NCCL_EP_GROUP_CONFIG_INIT;
  cfg.num_experts = E;
  cfg.max_dispatch_tokens_per_rank = T;
  cfg.max_token_bytes = 2 * H;
  cfg.max_num_sms = o.sms;
  ncclEpGroup_t g = nullptr;
  CHECK_NCCL(ncclEpCreateGroup(&g, comm, &cfg), nullptr);
  const size_t R = nranks, L = E / nranks, B = T;
  const size_t d0 = o.rank_major ? R : L, d1 = o.rank_major ? B : R * B;
  Tensor x, idx, w, out, scales, cin, cout, ridx, rw;
  bool ok = x.make(ncclBfloat16, {B, size_t(H)}, 2) && idx.make(ncclInt64, {B, size_t(K)}, 8) &&
            w.make(ncclFloat32, {B, size_t(K)}, 4) &&
            out.make(o.fp8 ? ncclFloat8e4m3 : ncclBfloat16, {d0, d1, size_t(H)}, o.fp8 ? 1 : 2) &&
            (!o.fp8 || scales.make(ncclFloat32, {d0, d1, size_t(H / 128)}, 4)) &&
            cin.make(ncclBfloat16, {d0, d1, size_t(H)}, 2) && cout.make(ncclBfloat16, {B, size_t(H)}, 2) &&
            (!o.rank_major || (ridx.make(ncclInt64, {d0, d1, size_t(K)}, 8) &&
                               rw.make(ncclFloat32, {d0, d1, size_t(K)}, 4)));
  if (!ok) {
    std::fprintf(stderr, "[rank %d] out of device memory for T=%d H=%d\n", rank, T, H);
    return 1;
  }
  // Uniform routing: K distinct experts per token; random BF16 tokens.
  std::mt19937_64 rng(1234 + rank);
  std::vector<int64_t> ids(B * K);
  std::vector<int> perm(E);
  for (size_t t = 0; t < B; ++t) {
    for (int e = 0; e < E; ++e) perm[e] = e;
    for (int k = 0; k < K; ++k) {
      std::swap(perm[k], perm[k + rng() % (E - k)]);
      ids[t * K + k] = perm[k];
    }
  }
  std::vector<uint16_t> tokens(B * H);
  for (auto& v : tokens) v = static_cast<uint16_t>(0x3c00 + (rng() % 0x200));  // ~[0.0078, 0.03]
  std::vector<float> weights(B * K, 1.0f / K);
  CHECK_CUDA(cudaMemcpy(idx.data, ids.data(), ids.size() * 8, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(x.data, tokens.data(), tokens.size() * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(w.data, weights.data(), weights.size() * 4, cudaMemcpyHostToDevice));

  ncclEpHandle_t h = nullptr;
  CHECK_NCCL(ncclEpInitHandle(&h, g, o.rank_major ? NCCL_EP_LAYOUT_RANK_MAJOR : NCCL_EP_LAYOUT_EXPERT_MAJOR,
                              nullptr, K, nullptr), g);
  ncclEpDispatchInputs_t din = NCCL_EP_DISPATCH_INPUTS_INIT;
  din.tokens = &x.t;
  din.topk_weights = &w.t;
  ncclEpDispatchOutputs_t dout = NCCL_EP_DISPATCH_OUTPUTS_INIT;
  dout.tokens = &out.t;
  dout.scales = o.fp8 ? &scales.t : nullptr;
  dout.topk_idx = o.rank_major ? &ridx.t : nullptr;
  dout.topk_weights = o.rank_major ? &rw.t : nullptr;
  ncclEpDispatchConfig_t dcfg = NCCL_EP_DISPATCH_CONFIG_INIT;
  dcfg.round_scales = 1;
  ncclEpCombineInputs_t cinp = NCCL_EP_COMBINE_INPUTS_INIT;
  cinp.tokens = &cin.t;
  cinp.topk_weights = o.rank_major ? nullptr : &w.t;
  ncclEpCombineOutputs_t coutp = NCCL_EP_COMBINE_OUTPUTS_INIT;
  coutp.tokens = &cout.t;

  Stats update, disp, comb, a2a_disp, a2a_comb, floor;
  if (timeOp(rank, nranks, comm, st, o, barrier, gathered, [&] {
        return ncclEpUpdateHandle(h, &idx.t, nullptr, st) == ncclSuccess ? 0 : 1;
      }, &update)) return 1;
  auto dispatch = [&] { return ncclEpDispatch(h, &din, &dout, nullptr, &dcfg, st) == ncclSuccess ? 0 : 1; };
  auto combine = [&] { return ncclEpCombine(h, &cinp, &coutp, nullptr, st) == ncclSuccess ? 0 : 1; };
  if (o.pair) {
    if (timePairs(rank, nranks, comm, st, o, barrier, gathered, dispatch, combine, &disp, &comb)) return 1;
  } else {  // combine needs a dispatch before it: one, then its timed runs
    CHECK_NCCL(ncclEpDispatch(h, &din, &dout, nullptr, &dcfg, st), g);
    if (timeOp(rank, nranks, comm, st, o, barrier, gathered, dispatch, &disp)) return 1;
    if (timeOp(rank, nranks, comm, st, o, barrier, gathered, combine, &comb)) return 1;
  }
  int async = 0;
  CHECK_NCCL(ncclEpGetAsyncError(g, &async), g);
  if (async != ncclSuccess) {
    std::fprintf(stderr, "[rank %d] async error: %s\n", rank, ncclEpGetLastError(g));
    return 1;
  }

  const double pairs = static_cast<double>(B) * K;
  const double disp_bytes = pairs * (o.fp8 ? H + 4.0 * H / 128 : 2.0 * H), comb_bytes = pairs * 2.0 * H;
  // Baseline: NCCL all-to-all of the same bytes per rank.
  void *a2a_in = nullptr, *a2a_out = nullptr;
  const size_t per_peer_disp = static_cast<size_t>(disp_bytes / R), per_peer_comb = static_cast<size_t>(comb_bytes / R);
  CHECK_CUDA(cudaMalloc(&a2a_in, std::max(per_peer_disp, per_peer_comb) * R));
  CHECK_CUDA(cudaMalloc(&a2a_out, std::max(per_peer_disp, per_peer_comb) * R));
  if (timeOp(rank, nranks, comm, st, o, barrier, gathered, [&] {
        return ncclAlltoAll(a2a_in, a2a_out, per_peer_disp, ncclUint8, comm, st) == ncclSuccess ? 0 : 1;
      }, &a2a_disp)) return 1;
  if (timeOp(rank, nranks, comm, st, o, barrier, gathered, [&] {
        return ncclAlltoAll(a2a_in, a2a_out, per_peer_comb, ncclUint8, comm, st) == ncclSuccess ? 0 : 1;
      }, &a2a_comb)) return 1;
  // The method's floor: the smallest GPU op (a 4-byte memset) timed the same way.
  if (timeOp(rank, nranks, comm, st, o, barrier, gathered, [&] {
        return cudaMemsetAsync(a2a_in, 0, 4, st) == cudaSuccess ? 0 : 1;
      }, &floor)) return 1;
  cudaFree(a2a_in);
  cudaFree(a2a_out);
  if (rank == 0) {
    std::printf("%6d %6d %4d %7d | %7.1f %7.1f %7.1f %7.1f | %7.1f %7.1f %7.1f %7.1f | %8.1f %8.1f | %6.1f %5.1f\n",
                T, H, K, E, disp.avg, disp.lo, disp.hi, disp_bytes / disp.avg / 1e3, comb.avg, comb.lo,
                comb.hi, comb_bytes / comb.avg / 1e3, a2a_disp.avg, a2a_comb.avg, update.avg, floor.avg);
    std::fflush(stdout);
  }
  CHECK_NCCL(ncclEpHandleDestroy(h), g);
  CHECK_NCCL(ncclEpGroupDestroy(g), nullptr);
  return 0;
}

int rankMain(const epyard::launch::RankEnv& env, const Options& o) {
  const int rank = env.rank;
  ncclComm_t comm;
  CHECK_NCCL(ncclCommInitRank(&comm, env.num_ranks, env.id, rank), nullptr);
  cudaStream_t st;
  CHECK_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  float *barrier = nullptr, *gathered = nullptr;
  CHECK_CUDA(cudaMalloc(&barrier, sizeof(float)));
  CHECK_CUDA(cudaMalloc(&gathered, sizeof(float) * env.num_ranks));
  if (rank == 0) {
    std::printf("# epyard_ep_perf: low-latency, %d ranks, %s dispatch / BF16 combine, %s, %d iters after %d warm-ups, %s\n",
                env.num_ranks, o.fp8 ? "FP8" : "BF16", o.rank_major ? "rank-major" : "expert-major",
                o.iters, o.warmup,
                o.pair   ? "dispatch + combine pairs back to back (events between ops; a2a/update/floor back to back)"
                : o.loop ? "back-to-back calls (no barrier)"
                : o.host_barrier ? "host barrier before each call"
                                 : "stream-ordered barrier before each call");
    if (o.sms > 0) std::printf("# max_num_sms = %d\n", o.sms);
    std::printf("# latency in us per rank (avg over ranks, min and max per-rank average); GB/s: pairs x bytes/token\n");
    std::printf("# %4s %6s %4s %7s | %7s %7s %7s %7s | %7s %7s %7s %7s | %8s %8s | %6s %5s\n", "tokens",
                "hidden", "topk", "experts", "disp", "min", "max", "GB/s", "comb", "min", "max", "GB/s",
                "a2a-disp", "a2a-comb", "update", "floor");
  }
  for (int T : o.tokens)
    for (int H : o.hidden)
      for (int K : o.topk)
        for (int E : o.experts)
          if (runConfig(rank, env.num_ranks, comm, st, o, T, H, K, E, barrier, gathered) != 0) return 1;
  cudaFree(barrier);
  cudaFree(gathered);
  ncclCommDestroy(comm);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--nranks") o.nranks = std::atoi(v), ++i;
    else if (a == "--tokens") o.tokens = epyard::perf::parseIntList(v), ++i;
    else if (a == "--hidden") o.hidden = epyard::perf::parseIntList(v), ++i;
    else if (a == "--topk") o.topk = epyard::perf::parseIntList(v), ++i;
    else if (a == "--experts") o.experts = epyard::perf::parseIntList(v), ++i;
    else if (a == "--iters") o.iters = std::atoi(v), ++i;
    else if (a == "--warmup") o.warmup = std::atoi(v), ++i;
    else if (a == "--bf16") o.fp8 = false;
    else if (a == "--rank-major") o.rank_major = true;
    else if (a == "--host-barrier") o.host_barrier = true;
    else if (a == "--sms") o.sms = std::atoi(v), ++i;
    else if (a == "--loop") o.loop = true;
    else if (a == "--pair") o.pair = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--nranks N] [--tokens 128,...] [--hidden 7168,...] [--topk 8,...]\n"
                   "          [--experts 256,...] [--iters 50] [--warmup 10] [--bf16] [--rank-major]\n"
                   "          [--host-barrier] [--loop] [--pair] [--sms N]\n",
                   argv[0]);
      return 64;
    }
  }
  const int gpus = epyard::launch::visibleGpus();
  if (o.nranks == 0) o.nranks = gpus;
  if (gpus < 2 || o.nranks < 2 || o.nranks > gpus) {
    std::printf("SKIPPED: epyard_ep_perf needs 2 or more GPUs, one per rank (%d visible, %d asked)\n", gpus, o.nranks);
    return gpus < 2 ? 0 : 64;
  }
  return epyard::launch::runRanks(o.nranks, 1200, [&](const epyard::launch::RankEnv& env) { return rankMain(env, o); });
}
