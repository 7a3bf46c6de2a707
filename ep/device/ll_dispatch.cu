// LL dispatch kernel: the sending half, the receiving half, or both in one launch (the usual
// case; send_only launches the first and ncclEpComplete the second). Sequence numbers: a send
// takes the group's next one, a receive-only launch the one its handle's send recorded; the
// last block of the launch advances the group's counter and acknowledges what it received.

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
  loadStart(c, send ? &c.state->disp_seq : c.h.seqs, send ? 1 : 0, &st);
  const uint64_t seq = st.seq;

  if (send) {
    dispatchSend(a, &st);
    if (!recv && lastBlockToArrive(&c.state->arrivals[kArriveDispatchSend]) && threadIdx.x == 0)
      c.state->disp_seq = c.h.seqs[0] = seq;
  }
  if (recv) {
    dispatchRecv(a, seq, st.mask);
    if (lastBlockToArrive(&c.state->arrivals[kArriveDispatchRecv])) {
      traceLastBlock(c, 0);
      if (!st.mask[c.rank]) ackPeers(c, c.buf.disp_acks, seq, st.mask);
      if (send && threadIdx.x == 0) c.state->disp_seq = c.h.seqs[0] = seq;
      if (a.phases == kPhaseBoth) traceCommit(c, 0);
    }
  }
}

}  // namespace

cudaError_t launchLlDispatch(const LlDispatchArgs& args, int grid, cudaStream_t stream) {
  llDispatchKernel<<<grid, kLlBlockThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace epyard::ep
