// Group control kernel: a barrier across the unmasked ranks (bounded like every wait), with an
// optional reset first: flags, tagged words, sequence numbers and the mask go back to zero,
// as after group creation (ncclEpMaskClean). One block.

#include "device/ll_buffers.cuh"
#include "device/ll_launch.h"

namespace epyard::ep {
namespace {

__device__ inline void barrier(const LlCommon& c, uint64_t seq) {
  for (int d = threadIdx.x; d < c.num_ranks; d += blockDim.x)
    if (!isMasked(c, d)) storeRelease(perRankFlag(peerBuffer(c, d), c.buf.barrier_flags, c.rank), seq);
  for (int d = threadIdx.x; d < c.num_ranks; d += blockDim.x)
    if (!isMasked(c, d)) waitFlag(c, perRankFlag(myBuffer(c), c.buf.barrier_flags, d), seq, kWaitBarrier, d, seq);
  __syncthreads();
}

__global__ void llControlKernel(LlControlArgs a) {
  const LlCommon& c = a.c;
  __shared__ uint64_t s_seq;
  if (threadIdx.x == 0) s_seq = c.state->barrier_seq + 1;
  __syncthreads();
  if (a.zero_buffer) {
    barrier(c, s_seq);  // nobody is still writing into anybody's flags
    // Everything before the barrier flags in the layout is flags and tagged words.
    uint64_t* flags = reinterpret_cast<uint64_t*>(myBuffer(c));
    const uint64_t n = c.buf.barrier_flags / sizeof(uint64_t);
    for (uint64_t i = threadIdx.x; i < n; i += blockDim.x) flags[i] = 0;
    for (int d = threadIdx.x; d < c.num_ranks; d += blockDim.x) c.state->mask[d] = 0;
    if (threadIdx.x < 4) c.state->pending_ack[threadIdx.x / 2][threadIdx.x % 2] = 0;
    if (threadIdx.x == 0) {
      c.state->disp_seq = 0;
      c.state->comb_seq = 0;
      c.state->abort = 0;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence_system();
      s_seq = s_seq + 1;
    }
    __syncthreads();
  }
  barrier(c, s_seq);
  if (threadIdx.x == 0) c.state->barrier_seq = s_seq;
}

}  // namespace

cudaError_t launchLlBarrier(const LlControlArgs& args, cudaStream_t stream) {
  llControlKernel<<<1, 256, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t loadLlControlKernels() { return loadKernel(llControlKernel); }

}  // namespace epyard::ep
