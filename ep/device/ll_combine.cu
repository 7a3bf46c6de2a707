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
  const int first_dst = recv && static_cast<int>(threadIdx.x) < c.top_k && static_cast<int>(blockIdx.x) < c.num_tokens
                            ? c.h.dst_rank[blockIdx.x * c.top_k + threadIdx.x]
                            : -1;
  __shared__ KernelStart st;
  loadStart(c, 1, send ? &c.state->comb_seq : c.h.seqs + 1, send ? 1 : 0, &st);
  beginOp(c, 1, send, recv, st);
  if (send) combineSend(a, &st);
  if (recv) combineRecv(a, st.seq, st.mask, first_dst);
#ifdef EPYARD_EP_TRACE
  if (lastBlockToArrive(&c.state->arrivals[kArriveCombineEnd])) {
    traceLastBlock(c, 1);
    if (a.phases == kPhaseBoth) traceCommit(c, 1);
  }
#endif
}

}  // namespace

cudaError_t launchLlCombine(const LlCombineArgs& args, int grid, cudaStream_t stream) {
  llCombineKernel<<<grid, kLlBlockThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t loadLlCombineKernels() { return loadKernel(llCombineKernel); }

}  // namespace epyard::ep
