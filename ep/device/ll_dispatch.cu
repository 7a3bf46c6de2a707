// LL dispatch kernel: the sending half, the receiving half, or both in one launch (the usual
// case; send_only launches the first and ncclEpComplete the second). Sequence numbers: a send
// takes the group's next one, a receive-only launch the one its handle's send recorded; the
// counter and the acknowledgements are handled at the start (beginOp), so a block is done as
// soon as its own work is.

#include "device/ll_dispatch_recv.cuh"
#include "device/ll_dispatch_send.cuh"
#include "device/ll_launch.h"

namespace epyard::ep {
namespace {

__global__ void __launch_bounds__(kLlBlockThreads) llDispatchKernel(LlDispatchArgs a) {
  const LlCommon& c = a.c;
  traceMark(c, 0, 0);
  const bool send = a.phases & kPhaseSend, recv = a.phases & kPhaseRecv;
  __shared__ KernelStart st;
  loadStart(c, 0, send ? &c.state->disp_seq : c.h.seqs, send ? 1 : 0, &st);
  beginOp(c, 0, send, recv, st);
  if (send) dispatchSend(a, &st);
  if (recv) dispatchRecv(a, st.seq, st.mask);
#ifdef EPYARD_EP_TRACE
  if (lastBlockToArrive(&c.state->arrivals[kArriveDispatchEnd])) {
    traceLastBlock(c, 0);
    if (a.phases == kPhaseBoth) traceCommit(c, 0);
  }
#endif
}

}  // namespace

cudaError_t launchLlDispatch(const LlDispatchArgs& args, int grid, cudaStream_t stream) {
  llDispatchKernel<<<grid, kLlBlockThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t loadLlDispatchKernels() { return loadKernel(llDispatchKernel); }

}  // namespace epyard::ep
