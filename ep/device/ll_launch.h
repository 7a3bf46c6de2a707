// Host-callable launchers of the LL kernels (defined in the .cu files beside this header).
// Each takes one argument struct and a stream and returns the launch's CUDA error.
#pragma once

#include <cuda_runtime.h>

#include <initializer_list>

#include "device/ll_types.h"

namespace epyard::ep {

constexpr int kLlBlockThreads = 512;

// ncclEpUpdateHandle: routing of this rank's tokens (one block; T <= 1024). prepareLlLayout
// (group creation, on the group's device) allows the shared memory the largest update needs.
cudaError_t prepareLlLayout(int max_tokens, int num_experts, int num_ranks);
cudaError_t launchLlLayout(const LlLayoutArgs& args, cudaStream_t stream);

// Dispatch / combine: `grid` blocks, all of which must be resident at once (grid <= SMs).
cudaError_t launchLlDispatch(const LlDispatchArgs& args, int grid, cudaStream_t stream);
cudaError_t launchLlCombine(const LlCombineArgs& args, int grid, cudaStream_t stream);

// Group creation: out[p] = the LSA pointer of rank p's buffer in `window` (an ncclWindow_t),
// for p < num_ranks (device memory).
cudaError_t launchLsaPointers(void* window, int num_ranks, uint64_t* out, cudaStream_t stream);

// Group control: barrier across unmasked ranks, optionally clearing flags and sequence numbers
// first (group creation, ncclEpMaskClean).
cudaError_t launchLlBarrier(const LlControlArgs& args, cudaStream_t stream);

// Loads every LL kernel on the current device now. CUDA loads a kernel on its first launch by
// default (CUDA_MODULE_LOADING=LAZY), and a load may wait for the kernels already running on the
// GPU: with virtual ranks, a rank's first dispatch would wait behind a peer's dispatch that spins
// until this rank's counts arrive (seen on an H100: every first dispatch timed out). Each .cu file
// loads its own kernels (loadKernel, below).
cudaError_t loadLlKernels();
cudaError_t loadLlDispatchKernels();
cudaError_t loadLlCombineKernels();
cudaError_t loadLlControlKernels();
cudaError_t loadLlLayoutKernels();
cudaError_t loadLsaPointerKernels();

template <class Kernel>
cudaError_t loadKernel(Kernel* kernel) {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(kernel));
}

inline cudaError_t loadLlKernels() {
  for (cudaError_t (*load)() : {loadLlDispatchKernels, loadLlCombineKernels, loadLlControlKernels,
                                loadLlLayoutKernels, loadLsaPointerKernels}) {
    const cudaError_t e = load();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace epyard::ep
