// LL combine kernel: sending half, receiving half, or both (see ll_dispatch.cu for the
// sequence-number rule, which combine follows with its own counter).

#include "device/ll_combine_recv.cuh"
#include "device/ll_combine_send.cuh"
#include "device/ll_launch.h"

namespace epyard::ep {
namespace {

__global__ void __launch_bounds__(kLlBlockThreads) llCombineKernel(LlCombineArgs a) {
  const LlCommon& c = a.c;
  traceMark(c, 1, 0);
  __shared__ int s_mask[kLlMaxRanks];
  loadMask(c, s_mask);
  const bool send = a.phases & kPhaseSend, recv = a.phases & kPhaseRecv;
  const uint64_t seq = send ? c.state->comb_seq + 1 : c.h.seqs[1];

  if (send) {
    combineSend(a, seq, s_mask);
    if (!recv && lastBlockToArrive(&c.state->arrivals[kArriveCombineSend]) && threadIdx.x == 0)
      c.state->comb_seq = c.h.seqs[1] = seq;
  }
  if (recv) {
    combineRecv(a, seq, s_mask);
    if (lastBlockToArrive(&c.state->arrivals[kArriveCombineRecv])) {
      if (!s_mask[c.rank]) ackPeers(c, c.buf.comb_acks, seq);
      if (send && threadIdx.x == 0) c.state->comb_seq = c.h.seqs[1] = seq;
    }
  }
  if (a.phases == kPhaseBoth) traceCommit(c, 1);
}

}  // namespace

cudaError_t launchLlCombine(const LlCombineArgs& args, int grid, cudaStream_t stream) {
  llCombineKernel<<<grid, kLlBlockThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace epyard::ep
