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
  const bool send = a.phases & kPhaseSend, recv = a.phases & kPhaseRecv;
  __shared__ KernelStart st;
  loadStart(c, send ? &c.state->comb_seq : c.h.seqs + 1, send ? 1 : 0, &st);
  const uint64_t seq = st.seq;

  if (send) {
    combineSend(a, &st);
    if (!recv && lastBlockToArrive(&c.state->arrivals[kArriveCombineSend]) && threadIdx.x == 0)
      c.state->comb_seq = c.h.seqs[1] = seq;
  }
  if (recv) {
    combineRecv(a, seq, st.mask);
    if (lastBlockToArrive(&c.state->arrivals[kArriveCombineRecv])) {
      traceLastBlock(c, 1);
      if (!st.mask[c.rank]) ackPeers(c, c.buf.comb_acks, seq, st.mask);
      if (send && threadIdx.x == 0) c.state->comb_seq = c.h.seqs[1] = seq;
      if (a.phases == kPhaseBoth) traceCommit(c, 1);
    }
  }
}

}  // namespace

cudaError_t launchLlCombine(const LlCombineArgs& args, int grid, cudaStream_t stream) {
  llCombineKernel<<<grid, kLlBlockThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace epyard::ep
