// LL routing layout (ncclEpUpdateHandle): from topk_idx [T][K], for every token the ranks it goes
// to and its slot there, and for every (token, expert) the row of this token among this rank's
// tokens for that expert — ascending token order, as the reference places rows. One block; a
// thread per token. Per chunk of 32 tokens (a warp) and per expert (and per rank) a 32-bit mask
// of the lanes that name it gives both the counts and each token's rank within its chunk.

#include <mutex>

#include "device/ll_launch.h"
#include "device/ll_sync.cuh"

namespace epyard::ep {
namespace {

constexpr int kLayoutThreads = 1024;  // max tokens per rank in LL

struct LayoutSmem {
  uint32_t* expert_lanes;    // [chunks][E]
  uint32_t* rank_lanes;      // [chunks][R]
  uint16_t* expert_prefix;   // [chunks][E]: tokens for e in earlier chunks
  uint16_t* rank_prefix;     // [chunks][R]
};

__host__ __device__ size_t layoutSmemBytes(int chunks, int experts, int ranks) {
  return static_cast<size_t>(chunks) * (experts + ranks) * (sizeof(uint32_t) + sizeof(uint16_t));
}

__global__ void __launch_bounds__(kLayoutThreads) llLayoutKernel(LlLayoutArgs a) {
  extern __shared__ uint32_t smem[];
  const LlCommon& c = a.c;
  const int T = c.num_tokens, K = c.top_k, E = c.num_experts, R = c.num_ranks;
  const int L = c.local_experts;
  const int chunks = T > 0 ? (T + 31) / 32 : 1;
  LayoutSmem s;
  s.expert_lanes = smem;
  s.rank_lanes = s.expert_lanes + chunks * E;
  s.expert_prefix = reinterpret_cast<uint16_t*>(s.rank_lanes + chunks * R);
  s.rank_prefix = s.expert_prefix + chunks * E;
  for (int i = threadIdx.x; i < chunks * (E + R); i += blockDim.x) smem[i] = 0;
  __syncthreads();

  const int t = threadIdx.x, lane = t & 31, chunk = t >> 5;
  int ids[kLlMaxTopK];
  uint32_t first_expert = 0, first_rank = 0;  // bit k: slot k names a new expert / new rank
  if (t < T) {
    for (int k = 0; k < K; ++k) {
      int64_t v = a.topk_idx[static_cast<size_t>(t) * K + k];
      int e = -1;
      if (v >= 0 && v < E) {
        e = static_cast<int>(v);
      } else if (v != -1) {
        recordFault(c, kFaultBadExpert, k, t, 0, 0, v);  // dropped, reported to the host
      }
      ids[k] = e;
      c.h.topk[t * K + k] = e;
    }
    for (int k = 0; k < K; ++k) {
      const int e = ids[k];
      if (e < 0) continue;
      bool new_expert = true, new_rank = true;
      for (int j = 0; j < k; ++j) {
        if (ids[j] == e) new_expert = false;
        if (ids[j] >= 0 && ids[j] / L == e / L) new_rank = false;
      }
      if (new_expert) {
        first_expert |= 1u << k;
        atomicOr(&s.expert_lanes[chunk * E + e], 1u << lane);
      }
      if (new_rank) {
        first_rank |= 1u << k;
        atomicOr(&s.rank_lanes[chunk * R + e / L], 1u << lane);
      }
    }
  }
  __syncthreads();

  // Per expert and per rank: exclusive prefix over chunks, and the totals.
  for (int i = threadIdx.x; i < E + R; i += blockDim.x) {
    const bool is_expert = i < E;
    const int n = is_expert ? E : R, col = is_expert ? i : i - E;
    const uint32_t* lanes = is_expert ? s.expert_lanes : s.rank_lanes;
    uint16_t* prefix = is_expert ? s.expert_prefix : s.rank_prefix;
    int run = 0;
    for (int w = 0; w < chunks; ++w) {
      prefix[w * n + col] = static_cast<uint16_t>(run);
      run += __popc(lanes[w * n + col]);
    }
    (is_expert ? c.h.expert_send_cnt : c.h.rank_send_cnt)[col] = run;
  }
  __syncthreads();

  if (t < T) {
    const uint32_t below = (1u << lane) - 1;
    int j = 0;
    for (int k = 0; k < K; ++k) {
      const int e = ids[k];
      int pos = -1;
      if (first_expert & (1u << k)) {
        const int i = chunk * E + e;
        pos = s.expert_prefix[i] + __popc(s.expert_lanes[i] & below);
      }
      if (first_rank & (1u << k)) {
        const int i = chunk * R + e / L;
        c.h.dst_rank[t * K + j] = e / L;
        c.h.dst_slot[t * K + j] = s.rank_prefix[i] + __popc(s.rank_lanes[i] & below);
        ++j;
      }
      c.h.send_pos[t * K + k] = pos;
    }
    for (; j < K; ++j) c.h.dst_rank[t * K + j] = -1;
  }
}

}  // namespace

cudaError_t prepareLlLayout(int max_tokens, int num_experts, int num_ranks) {
  const size_t need = layoutSmemBytes((max_tokens + 31) / 32, num_experts, num_ranks);
  // The limit belongs to the current device's context: raised there, never lowered (another
  // group on this device may need more). Group creation only, so a lock is cheap.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  cudaFuncAttributes attr{};
  cudaError_t e = cudaFuncGetAttributes(&attr, llLayoutKernel);
  if (e != cudaSuccess || need <= static_cast<size_t>(attr.maxDynamicSharedSizeBytes)) return e;
  return cudaFuncSetAttribute(llLayoutKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(need));
}

cudaError_t launchLlLayout(const LlLayoutArgs& args, cudaStream_t stream) {
  const LlCommon& c = args.c;
  const int chunks = c.num_tokens > 0 ? (c.num_tokens + 31) / 32 : 1;
  const size_t smem = layoutSmemBytes(chunks, c.num_experts, c.num_ranks);
  const int threads = c.num_tokens > 32 ? ((c.num_tokens + 31) / 32) * 32 : 32;
  llLayoutKernel<<<1, threads < 256 ? 256 : threads, smem, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t loadLlLayoutKernels() { return loadKernel(llLayoutKernel); }

}  // namespace epyard::ep
