// Peer memory from NCCL: the LSA pointer of every rank's view of the group's window, written
// to a small device array at group creation (the host turns them into LlPeers). The only
// device code that includes NCCL's device API: the LL kernels take addresses from LlPeers.
#include <nccl.h>
#include <nccl_device.h>

#if defined(EPYARD_NCCL_VERSION_CODE) && NCCL_VERSION_CODE != EPYARD_NCCL_VERSION_CODE
#error "nccl_device.h on the include path is not the NCCL that CMake found (EPYARD_NCCL_INCLUDE)"
#endif

#include "device/ll_launch.h"

namespace epyard::ep {
namespace {

__global__ void lsaPointersKernel(ncclWindow_t window, int num_ranks, uint64_t* out) {
  for (int p = threadIdx.x; p < num_ranks; p += blockDim.x)
    out[p] = reinterpret_cast<uint64_t>(ncclGetLsaPointer(window, 0, p));
}

}  // namespace

cudaError_t launchLsaPointers(void* window, int num_ranks, uint64_t* out, cudaStream_t stream) {
  lsaPointersKernel<<<1, 256, 0, stream>>>(static_cast<ncclWindow_t>(window), num_ranks, out);
  return cudaGetLastError();
}

cudaError_t loadLsaPointerKernels() { return loadKernel(lsaPointersKernel); }

}  // namespace epyard::ep
