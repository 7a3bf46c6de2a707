// The EP GPU test cases and the machinery they share: a rank context, a group factory, and a
// "round" (routing -> update -> dispatch -> combine -> compare with the reference).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "ep_test_util.h"
#include "host/virtual_ranks.h"
#include "launch/ranks.h"

namespace epyard::ep::test {

// A bounded barrier between the threads of virtual ranks; dies naming the ranks that did not come.
class HostBarrier {
 public:
  explicit HostBarrier(int n) : n_(n) {}
  void wait(int rank, const char* what);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_, arrived_ = 0;
  uint64_t generation_ = 0;
  std::vector<int> present_;
};

// One rank of a test run: an NCCL rank (its own process) or a virtual rank (a thread; `world`
// set, no comm).
struct Ctx {
  epyard::launch::RankEnv env;
  ncclComm_t comm = nullptr;
  epyardEpVirtualWorld_t world = nullptr;
  HostBarrier* barrier = nullptr;  // virtual ranks
  cudaStream_t stream = nullptr;
  int rank() const { return env.rank; }
  int ranks() const { return env.num_ranks; }
  // Virtual ranks share one device, and calls that wait for the whole device (cudaFree,
  // handle destruction) would wait for peers' kernels spinning on ops this rank has not launched
  // yet: every rank finishes such calls before any launches the next round. No-op with processes.
  void sync(const char* what) const {
    if (barrier != nullptr) barrier->wait(rank(), what);
  }
};

// The rank the calling thread runs (set by runCases; Round::prepare syncs through it).
Ctx* currentCtx();

// ncclEpCreateGroup or, for virtual ranks, epyardEpCreateVirtualGroup.
ncclResult_t createGroup(Ctx& c, const ncclEpGroupConfig_t* cfg, ncclEpGroup_t* out);

struct TestCase {
  const char* name;
  void (*run)(Ctx&);
};

const std::vector<TestCase>& allCases();
// `barrier`: shared by the threads of virtual ranks (env.world set), else null.
int runCases(const epyard::launch::RankEnv& env, const std::set<std::string>& only,
             HostBarrier* barrier = nullptr);

// A group for `s` (hidden up to s.hidden). `tweak` may change the config before creation.
ncclEpGroup_t makeGroup(Ctx& c, const ref::LlShape& s,
                        const std::function<void(ncclEpGroupConfig_t*)>& tweak = {});

// Device buffers of one handle's dispatch and combine, sized for T tokens.
struct Round {
  ref::LlShape s;
  ref::LlOptions o;
  int T = 0;
  bool rm() const { return o.layout == ref::LlLayout::kRankMajor; }
  std::unique_ptr<DevTensor> x, topk, weights, out, scales, out_topk, out_weights;
  std::unique_ptr<DevTensor> expert_counters, src_counters, offsets, total, comb_in, comb_out;
  ncclEpLayoutInfo_t info = NCCL_EP_LAYOUT_INFO_INIT;
  ncclEpDispatchInputs_t din = NCCL_EP_DISPATCH_INPUTS_INIT;
  ncclEpDispatchOutputs_t dout = NCCL_EP_DISPATCH_OUTPUTS_INIT;
  ncclEpCombineInputs_t cin = NCCL_EP_COMBINE_INPUTS_INIT;
  ncclEpCombineOutputs_t cout = NCCL_EP_COMBINE_OUTPUTS_INIT;
  std::vector<ref::RankRouting> routing;
  std::vector<ref::LlDispatchResult> expected;
  std::vector<uint16_t> expected_combine;  // this rank's [T, H]
  ncclEpGroup_t group = nullptr;           // set by makeHandle: check() reads its async error
  cudaStream_t stream = nullptr;           // the stream of the last launch (check() syncs it)

  Round(const ref::LlShape& shape, const ref::LlOptions& options, int tokens);
  // New routing: uploads this rank's inputs and computes the reference (dispatch and the
  // combine of the expert outputs this rank will feed, which it also uploads).
  void prepare(int rank, uint64_t seed, const RoutingSpec& spec);
  // Launches; `send_only` adds ncclEpComplete after each.
  void update(ncclEpHandle_t h, cudaStream_t st);
  void dispatch(ncclEpHandle_t h, cudaStream_t st, bool send_only = false, bool complete = true);
  void combine(ncclEpHandle_t h, cudaStream_t st, bool send_only = false, bool complete = true);
  // Compares everything with the reference; dies naming the case and the first difference.
  void check(int rank, const char* what);
  // prepare + update + dispatch + combine (fused) + check.
  void roundTrip(ncclEpHandle_t h, cudaStream_t st, int rank, uint64_t seed, const RoutingSpec& spec,
                 const char* what);
  uint64_t hashOutputs(int rank) const;
};

ncclEpHandle_t makeHandle(ncclEpGroup_t g, Round& r, const ncclEpTensor_t* mem = nullptr);

// Dies unless `got` is `want` and the group's last error mentions `needle`.
void expectError(ncclResult_t got, ncclResult_t want, ncclEpGroup_t g, const char* needle,
                 const char* what);

// Cases in ep_gpu_robust.cc.
void caseMasks(Ctx& c);
void caseErrors(Ctx& c);
void caseLifecycle(Ctx& c);
void caseTimeout(Ctx& c);

}  // namespace epyard::ep::test
