/* Virtual ranks (tests and benchmarks only; not part of nccl_ep.h): R EP ranks in one process on
 * one GPU, with no NCCL communicator. Each rank is a group made by epyardEpCreateVirtualGroup,
 * normally driven by its own host thread and its own stream. The groups run the production
 * kernels; what NCCL provides on the real path is provided in process instead:
 *   - peer memory: one device allocation cut into R equal slices, rank p's symmetric buffer
 *     being slice p (LlPeers: base + p * stride), instead of NCCL's window and LSA pointers;
 *   - collective host steps (buffer exchange at creation, release at destruction): a bounded
 *     barrier between the threads of the world, whose failure names the ranks that never came.
 * Each group's grid is capped at SMs / R blocks so that every rank's kernels are resident at
 * once. What one GPU cannot show: NVLink timing and NVLink memory ordering (one GPU's memory
 * is more strongly ordered than stores over NVLink). */
#ifndef EPYARD_EP_VIRTUAL_RANKS_H_
#define EPYARD_EP_VIRTUAL_RANKS_H_

#include <stdint.h>

#include "nccl_ep.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct epyardEpVirtualWorld* epyardEpVirtualWorld_t;

/* A world of `num_ranks` virtual ranks on CUDA device `device`. `timeout_ms` bounds every
 * collective host step (0: EPYARD_EP_TIMEOUT_MS). */
ncclResult_t epyardEpVirtualWorldCreate(epyardEpVirtualWorld_t* world, int num_ranks, int device,
                                        uint64_t timeout_ms);
/* After every group of the world is destroyed. */
ncclResult_t epyardEpVirtualWorldDestroy(epyardEpVirtualWorld_t world);

/* ncclEpCreateGroup for virtual rank `rank` of `world`: collective over the world's ranks (call
 * it from each rank's thread, with that device current). ncclEpGroupDestroy is collective too. */
ncclResult_t epyardEpCreateVirtualGroup(ncclEpGroup_t* group, epyardEpVirtualWorld_t world,
                                        int rank, const ncclEpGroupConfig_t* config);

#ifdef __cplusplus
}
#endif

#endif /* EPYARD_EP_VIRTUAL_RANKS_H_ */
