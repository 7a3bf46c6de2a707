// ncclEpCreateGroup / ncclEpGroupDestroy and the group-level calls (masks, async errors).
#include <cstdio>
#include <algorithm>
#include <cstring>

#include "device/ll_launch.h"
#include "host/api_impl.h"
#include "host/api_check.h"
#include "host/config_check.h"
#include "host/errors.h"
#include "host/group.h"
#include "host/params.h"
#include "host/virtual_world.h"

namespace epyard::ep {

ncclResult_t Allocator::allocate(void** ptr, size_t bytes) const {
  const cudaError_t e =
      fns.alloc_fn != nullptr ? fns.alloc_fn(ptr, bytes, fns.context) : cudaMalloc(ptr, bytes);
  return e == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}

void Allocator::release(void* ptr) const {
  if (ptr == nullptr) return;
  if (fns.free_fn != nullptr) {
    fns.free_fn(ptr, fns.context);
  } else {
    cudaFree(ptr);
  }
}

namespace {

#if defined(EPYARD_NCCL_VERSION_CODE) && NCCL_VERSION_CODE != EPYARD_NCCL_VERSION_CODE
#error "nccl.h on the include path is not the NCCL that CMake found (EPYARD_NCCL_INCLUDE)"
#endif
#if NCCL_VERSION_CODE < 22807
#error "the EP module needs NCCL 2.28.7 or newer headers (device API, symmetric windows)"
#endif
#ifdef NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER
constexpr bool kVersionedDevComm = true;  // 2.29.2+: NCCL checks the requirements' magic
#else
constexpr bool kVersionedDevComm = false;
#endif

// EPYARD_EP_TRACE builds: the average phase times (see traceMark), printed when the group goes.
void printTrace(ncclEpGroup* g) {
#ifdef EPYARD_EP_TRACE
  LlDeviceState st;
  if (g->state == nullptr || cudaMemcpy(&st, g->state, sizeof(st), cudaMemcpyDeviceToHost) != cudaSuccess)
    return;
  static const char* kNames[2][kLlTraceMarks] = {
      {"start", "credits", "tokens sent (slowest block)", "counts in", "copies done (slowest block)",
       "", "", "", "last block in", "end"},
      {"start", "credits", "rows stored (slowest block)", "rows released (slowest block)",
       "first rows in", "rows in (slowest block)", "sums done (slowest block)", "", "last block in",
       "end"}};
  for (int op = 0; op < 2; ++op) {
    if (st.trace_calls[op] == 0) continue;
    std::fprintf(stderr, "epyard EP trace rank %d %s (%llu calls, us after block 0 started):", g->rank,
                 op == 0 ? "dispatch" : "combine", static_cast<unsigned long long>(st.trace_calls[op]));
    for (int i = 1; i < kLlTraceMarks; ++i)
      if (kNames[op][i][0] != '\0')
        std::fprintf(stderr, " %s %.2f%s", kNames[op][i],
                     static_cast<double>(st.trace_sum[op][i]) / st.trace_calls[op] / 1000.0,
                     i + 1 < kLlTraceMarks ? "," : "\n");
  }
#else
  (void)g;
#endif
}

// Virtual ranks: the world's buffer (one allocation, a slice per rank) is made by the last rank
// to arrive and handed to all; at destruction the last one frees it (cudaFree waits for every
// kernel on the device, and the other ranks wait in the barrier meanwhile).
ncclResult_t shareWorldBuffer(ncclEpGroup* g) {
  epyardEpVirtualWorld* w = g->world;
  const size_t bytes = g->layout.total;
  std::string error;
  ncclResult_t r = w->collective(
      g->rank, "group creation (" + std::to_string(bytes) + "-byte buffers)",
      [w, bytes](std::string* err) {
        void* p = nullptr;
        const size_t all = bytes * static_cast<size_t>(w->num_ranks);
        cudaError_t e = cudaMalloc(&p, all);
        if (e == cudaSuccess) e = cudaMemset(p, 0, all);
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
        if (e != cudaSuccess) {
          if (p != nullptr) cudaFree(p);
          *err = "allocating the virtual ranks' " + std::to_string(all) + "-byte buffer: " +
                 cudaGetErrorString(e);
          return ncclUnhandledCudaError;
        }
        w->shared = p;
        w->shared_bytes = bytes;
        return ncclSuccess;
      },
      &error);
  if (r != ncclSuccess) return fail(g, r, error);
  g->buffer = static_cast<char*>(w->shared) + bytes * static_cast<size_t>(g->rank);
  g->shares_world_buffer = true;
  g->peers.base = static_cast<char*>(w->shared);
  g->peers.stride = bytes;
  return ncclSuccess;
}

void releaseWorldBuffer(ncclEpGroup* g) {
  epyardEpVirtualWorld* w = g->world;
  void* base = g->peers.base;
  std::string error;
  ncclResult_t r = w->collective(g->rank, "group destruction", [base](std::string*) {
    cudaFree(base);
    return ncclSuccess;
  }, &error);
  if (r != ncclSuccess)  // the others may still use it: leave it, and say so
    std::fprintf(stderr, "epyard EP: %s; the virtual ranks' buffer is not freed\n", error.c_str());
}

// Everything a group holds, in reverse order of creation; safe on a half-built group.
void releaseGroup(ncclEpGroup* g) {
  if (g->setup_stream != nullptr) cudaStreamSynchronize(g->setup_stream);
  printTrace(g);
  if (g->dev_comm_made) ncclDevCommDestroy(g->comm, &g->dev_comm);
  if (g->window != nullptr) ncclCommWindowDeregister(g->comm, g->window);
  if (g->shares_world_buffer) {
    releaseWorldBuffer(g);
  } else if (g->buffer != nullptr) {
    if (g->buffer_from_nccl) {
      ncclMemFree(g->buffer);
    } else {
      g->alloc.release(g->buffer);
    }
  }
  g->alloc.release(g->state);
  if (g->error_host != nullptr) cudaFreeHost(g->error_host);
  if (g->setup_stream != nullptr) cudaStreamDestroy(g->setup_stream);
}

ncclResult_t checkNccl(ncclEpGroup* g) {
  int version = 0;
  EP_NCCL(g, ncclGetVersion(&version));
  const std::string bad = checkNcclRuntime(NCCL_VERSION_CODE, kVersionedDevComm, version);
  return bad.empty() ? ncclSuccess : fail(g, ncclInvalidUsage, bad);
}

ncclResult_t allocateBuffer(ncclEpGroup* g) {
  const char* rule =
      "the EP buffer is an NCCL symmetric window: it must come from ncclMemAlloc or cuMem";
  if (g->config.alloc.alloc_fn != nullptr) {
    if (g->alloc.allocate(&g->buffer, g->layout.total) != ncclSuccess || g->buffer == nullptr)
      return fail(g, ncclSystemError,
                  "config.alloc.alloc_fn failed for the " + std::to_string(g->layout.total) +
                      "-byte EP buffer");
  } else {
    EP_NCCL(g, ncclMemAlloc(&g->buffer, g->layout.total));
    g->buffer_from_nccl = true;
  }
  // Cleared and finished before registration: registration is collective, so once it returns
  // on any rank every rank's flags are zero and no peer can write into a dirty buffer.
  EP_CUDA(g, cudaMemsetAsync(g->buffer, 0, g->layout.total, g->setup_stream));
  EP_CUDA(g, cudaStreamSynchronize(g->setup_stream));
  ncclResult_t r = ncclCommWindowRegister(g->comm, g->buffer, g->layout.total, &g->window,
                                          NCCL_WIN_COLL_SYMMETRIC);
  if (r != ncclSuccess) {
    g->window = nullptr;
    return failNccl(g, (std::string("ncclCommWindowRegister (") + rule + ")").c_str(), r);
  }
  // NCCL 2.30 returns success without a window when the communicator has no symmetric memory
  // (e.g. ranks of several LSA teams without a GIN network).
  if (g->window == nullptr)
    return fail(g, ncclInvalidUsage,
                "ncclCommWindowRegister returned no window: this communicator has no symmetric "
                "memory support (all ranks must reach each other over NVLink/P2P, with CUDA VMM; "
                "NCCL_DEBUG=INFO tells why)");
  return ncclSuccess;
}

// Peer memory from NCCL's LSA pointers: evenly spaced by construction (one flat mapping), which
// is checked here so that the kernels may compute them as base + p * stride.
ncclResult_t lsaPeers(ncclEpGroup* g) {
  uint64_t* ptrs = nullptr;
  EP_CUDA(g, cudaHostAlloc(reinterpret_cast<void**>(&ptrs), sizeof(uint64_t) * g->num_ranks,
                           cudaHostAllocMapped));
  uint64_t* dev = nullptr;
  cudaError_t e = cudaHostGetDevicePointer(reinterpret_cast<void**>(&dev), ptrs, 0);
  if (e == cudaSuccess) e = launchLsaPointers(g->window, g->num_ranks, dev, g->setup_stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(g->setup_stream);
  std::string uneven;
  const uint64_t stride = e == cudaSuccess && g->num_ranks > 1 ? ptrs[1] - ptrs[0] : 0;
  if (g->num_ranks > 1 && stride < g->layout.total) uneven = "rank 1";
  for (int p = 0; e == cudaSuccess && p < g->num_ranks && uneven.empty(); ++p)
    if (ptrs[p] != ptrs[0] + stride * static_cast<uint64_t>(p)) uneven = "rank " + std::to_string(p);
  g->peers.base = reinterpret_cast<char*>(ptrs[0]);
  g->peers.stride = stride;
  cudaFreeHost(ptrs);
  if (e != cudaSuccess) return failCuda(g, "reading NCCL's LSA pointers", e);
  if (!uneven.empty())
    return fail(g, ncclInternalError,
                "NCCL's LSA pointers of the EP window are not evenly spaced (at " + uneven +
                    "): this NCCL maps peer memory in a way this version of epyard does not know");
  return ncclSuccess;
}

ncclResult_t checkLsaTeam(ncclEpGroup* g) {
  ncclTeam_t lsa = ncclTeamLsa(g->comm);
  if (lsa.nRanks != g->num_ranks)
    return fail(g, ncclInvalidUsage,
                "rank " + std::to_string(g->rank) + " reaches " + std::to_string(lsa.nRanks) +
                    " of " + std::to_string(g->num_ranks) +
                    " ranks over NVLink (LSA); the network (GIN) path is not available yet, so "
                    "every rank of the communicator must be NVLink-connected");
  return ncclSuccess;
}

// Who this rank is: from the communicator, or (virtual ranks) from the world.
ncclResult_t identify(ncclEpGroup* g, ncclComm_t comm, epyardEpVirtualWorld* world, int rank) {
  if (world != nullptr) {
    if (rank < 0 || rank >= world->num_ranks)
      return fail(g, ncclInvalidArgument,
                  "rank (" + std::to_string(rank) + ") must be in [0, " +
                      std::to_string(world->num_ranks) + ") for this world");
    g->world = world;
    g->num_ranks = world->num_ranks;
    g->rank = rank;
    g->device = world->device;
    return ncclSuccess;
  }
  if (comm == nullptr) return fail(g, ncclInvalidArgument, "comm is NULL");
  g->comm = comm;
  EP_NCCL(g, ncclCommCount(comm, &g->num_ranks));
  EP_NCCL(g, ncclCommUserRank(comm, &g->rank));
  EP_NCCL(g, ncclCommCuDevice(comm, &g->device));
  return ncclSuccess;
}

// Every rank's limits must be this rank's (config_check.h): gathered through the world, or by an
// ncclAllGather on the group's communicator, and compared the same way on every rank.
ncclResult_t checkSameConfig(ncclEpGroup* g) {
  const GroupSignature mine = signatureOf(g->config, g->layout.total, g->num_ranks);
  const int n = g->num_ranks;
  std::string error;
  if (g->world != nullptr) {
    epyardEpVirtualWorld* w = g->world;
    w->signatures[static_cast<size_t>(g->rank)] = mine;  // before the step: its lock orders it
    ncclResult_t r = w->collective(
        g->rank, "group creation (configuration check)",
        [w](std::string* err) {
          *err = compareSignatures(w->signatures.data(), w->num_ranks);
          return err->empty() ? ncclSuccess : ncclInvalidArgument;
        },
        &error);
    return r == ncclSuccess ? ncclSuccess : fail(g, r, error);
  }
  std::vector<GroupSignature> all(static_cast<size_t>(n));
  void* dev = nullptr;
  EP_CUDA(g, cudaMalloc(&dev, sizeof(GroupSignature) * (static_cast<size_t>(n) + 1)));
  auto* gathered = static_cast<GroupSignature*>(dev);
  GroupSignature* own = gathered + n;
  cudaError_t e = cudaMemcpyAsync(own, &mine, sizeof(mine), cudaMemcpyHostToDevice, g->setup_stream);
  ncclResult_t nr = e == cudaSuccess ? ncclAllGather(own, gathered, sizeof(mine) / sizeof(uint64_t),
                                                     ncclUint64, g->comm, g->setup_stream)
                                     : ncclSuccess;
  if (e == cudaSuccess && nr == ncclSuccess)
    e = cudaMemcpyAsync(all.data(), gathered, sizeof(GroupSignature) * static_cast<size_t>(n),
                        cudaMemcpyDeviceToHost, g->setup_stream);
  if (e == cudaSuccess && nr == ncclSuccess) e = cudaStreamSynchronize(g->setup_stream);
  cudaFree(dev);
  if (nr != ncclSuccess) return failNccl(g, "ncclAllGather (group configuration check)", nr);
  if (e != cudaSuccess) return failCuda(g, "gathering the ranks' group configurations", e);
  error = compareSignatures(all.data(), n);
  return error.empty() ? ncclSuccess : fail(g, ncclInvalidArgument, error);
}

// The symmetric buffer and the peer memory: an NCCL window, its device comm and LSA pointers;
// or a slice of the virtual world's buffer.
ncclResult_t connectPeers(ncclEpGroup* g) {
  if (g->world != nullptr) return shareWorldBuffer(g);
  EP_CHECK(checkLsaTeam(g));
  EP_CHECK(allocateBuffer(g));
#ifdef NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER
  ncclDevCommRequirements_t reqs = NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER;
#else
  ncclDevCommRequirements_t reqs;
  std::memset(&reqs, 0, sizeof(reqs));
#endif
  EP_NCCL(g, ncclDevCommCreate(g->comm, &reqs, &g->dev_comm));
  g->dev_comm_made = true;
  if (g->dev_comm.lsaSize != g->num_ranks)
    return fail(g, ncclInternalError, "device comm's LSA team does not hold every rank");
  return lsaPeers(g);
}

ncclResult_t createGroup(ncclEpGroup* g, ncclComm_t comm, epyardEpVirtualWorld* world, int rank,
                         const ncclEpGroupConfig_t* config) {
  EP_CHECK(checkNccl(g));  // first: a wrong libnccl must not be asked about comm
  EP_CHECK(identify(g, comm, world, rank));
  EP_CHECK(checkArg(g, checkGroupConfig(config, g->num_ranks)));
  g->config = *config;
  if (config->algorithm != NCCL_EP_ALGO_LOW_LATENCY)
    return fail(g, ncclInvalidUsage,
                "NCCL_EP_ALGO_HIGH_THROUGHPUT is not available in this version of epyard; use "
                "NCCL_EP_ALGO_LOW_LATENCY (up to 1024 tokens per rank)");
  if (epParams().disable_nvlink)
    return fail(g, ncclInvalidUsage,
                "EPYARD_EP_DISABLE_NVLINK=1 asks for the network (GIN) path, which this version "
                "does not have yet: low-latency mode needs all ranks in one NVLink domain");
  g->alloc.fns = config->alloc;
  g->timeout_ns = config->timeout_ns != NCCL_EP_AUTO
                      ? config->timeout_ns
                      : static_cast<uint64_t>(epParams().timeout_ms) * 1000000ull;

  int current = 0;
  EP_CUDA(g, cudaGetDevice(&current));
  if (current != g->device)
    return fail(g, ncclInvalidUsage,
                "the current CUDA device is " + std::to_string(current) + " but " +
                    (world != nullptr ? "the world" : "comm") + " runs on " +
                    std::to_string(g->device) + ": call cudaSetDevice first");
  int sms = 0;
  EP_CUDA(g, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, g->device));
  // Virtual ranks share the GPU: each takes its share of the SMs, so every grid is resident.
  if (world != nullptr) sms = std::max(1, sms / world->num_ranks);
  g->grid = config->max_num_sms != NCCL_EP_AUTO && static_cast<int>(config->max_num_sms) < sms
                ? static_cast<int>(config->max_num_sms)
                : sms;
  EP_CUDA(g, loadLlKernels());  // before any launch: see ll_launch.h
  EP_CUDA(g, prepareLlLayout(static_cast<int>(config->max_dispatch_tokens_per_rank),
                             static_cast<int>(config->num_experts), g->num_ranks));

  g->layout = llBufferLayout(g->num_ranks, static_cast<int>(config->num_experts),
                             static_cast<int>(config->max_dispatch_tokens_per_rank),
                             config->max_token_bytes);
  if (config->rdma_buffer_size != NCCL_EP_AUTO) {
    if (config->rdma_buffer_size < g->layout.total)
      return fail(g, ncclInvalidArgument,
                  "config.rdma_buffer_size (" + std::to_string(config->rdma_buffer_size) +
                      ") is below the " + std::to_string(g->layout.total) +
                      " bytes these limits need (or pass NCCL_EP_AUTO)");
    g->layout.total = config->rdma_buffer_size;
  }
  EP_CUDA(g, cudaStreamCreateWithFlags(&g->setup_stream, cudaStreamNonBlocking));
  void* state = nullptr;
  if (g->alloc.allocate(&state, sizeof(LlDeviceState)) != ncclSuccess || state == nullptr)
    return fail(g, ncclSystemError, "allocating the EP device state failed");
  g->state = static_cast<LlDeviceState*>(state);
  EP_CUDA(g, cudaMemsetAsync(g->state, 0, sizeof(LlDeviceState), g->setup_stream));
  EP_CUDA(g, cudaHostAlloc(reinterpret_cast<void**>(&g->error_host), sizeof(LlAsyncError),
                           cudaHostAllocMapped));
  std::memset(g->error_host, 0, sizeof(LlAsyncError));
  EP_CUDA(g, cudaHostGetDevicePointer(reinterpret_cast<void**>(&g->error_dev), g->error_host, 0));

  // Collective from here on (virtual ranks: nothing below may wait for the whole device, since
  // other ranks' barrier kernels may already be spinning).
  EP_CHECK(checkSameConfig(g));
  EP_CHECK(connectPeers(g));

  // Every rank reachable: a bounded barrier through the peer memory.
  LlControlArgs barrier{};
  barrier.c = g->common();
  EP_CUDA(g, launchLlBarrier(barrier, g->setup_stream));
  EP_CUDA(g, cudaStreamSynchronize(g->setup_stream));
  if (g->error_host->fault != kFaultNone)
    return fail(g, ncclRemoteError,
                "rank " + std::to_string(g->error_host->peer) +
                    " did not reach the group-creation barrier within timeout_ns");
  return ncclSuccess;
}

ncclResult_t newGroup(ncclEpGroup_t* out, ncclComm_t comm, epyardEpVirtualWorld* world, int rank,
                      const ncclEpGroupConfig_t* config) {
  if (out == nullptr) return fail(nullptr, ncclInvalidArgument, "group (the output pointer) is NULL");
  *out = nullptr;
  auto* g = new ncclEpGroup();
  ncclResult_t r = createGroup(g, comm, world, rank, config);
  if (r != ncclSuccess) {
    releaseGroup(g);
    delete g;
    return r;
  }
  *out = g;
  return ncclSuccess;
}

}  // namespace
}  // namespace epyard::ep

using namespace epyard::ep;

epyard::ep::LlCommon ncclEpGroup::common() const {
  LlCommon c{};
  c.peers = peers;
  c.buf = layout;
  c.state = state;
  c.error = error_dev;
  c.timeout_ns = timeout_ns;
  c.rank = rank;
  c.num_ranks = num_ranks;
  c.num_experts = static_cast<int32_t>(config.num_experts);
  c.local_experts = static_cast<int32_t>(config.num_experts) / num_ranks;
  c.max_tokens = static_cast<int32_t>(config.max_dispatch_tokens_per_rank);
  c.enable_mask = config.enable_mask != 0;
  return c;
}

namespace epyard::ep {

ncclResult_t groupCreate(ncclEpGroup_t* out, ncclComm_t comm, const ncclEpGroupConfig_t* config) {
  return newGroup(out, comm, nullptr, 0, config);
}

ncclResult_t virtualGroupCreate(ncclEpGroup_t* out, epyardEpVirtualWorld* world, int rank,
                                const ncclEpGroupConfig_t* config) {
  if (world == nullptr) return fail(nullptr, ncclInvalidArgument, "world is NULL");
  return newGroup(out, nullptr, world, rank, config);
}

void syncGroupDevice(ncclEpGroup_t g) {
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess) current = -1;
  if (current != g->device) cudaSetDevice(g->device);
  cudaDeviceSynchronize();
  if (current >= 0 && current != g->device) cudaSetDevice(current);
}

ncclResult_t groupDestroy(ncclEpGroup_t g) {
  if (g == nullptr) return fail(nullptr, ncclInvalidArgument, "group is NULL");
  if (g->live_handles > 0)
    return fail(g, ncclInvalidUsage,
                std::to_string(g->live_handles) +
                    " handle(s) of this group are still alive: ncclEpHandleDestroy them first");
  // The caller's streams may still run this group's kernels: they end (bounded by the group's
  // timeout) before their buffers go. (Not on a failed creation: with virtual ranks the device
  // also runs the other ranks' creation barriers, which wait for this one until their timeout.)
  syncGroupDevice(g);
  releaseGroup(g);
  delete g;
  return ncclSuccess;
}

// Fails ops while a timed-out kernel has left the group out of step (until ncclEpErrorClear).
ncclResult_t checkHealthy(ncclEpGroup_t g) {
  if (g->error_host->fault != kFaultTimeout) return ncclSuccess;
  int fault = 0;
  describeAsyncError(g, &fault);
  return fail(g, ncclRemoteError,
              std::string(lastError(g)) +
                  "; the group is out of step: ncclEpErrorClear, then ncclEpMaskClean on every rank");
}

}  // namespace epyard::ep
