// EP GPU tests: every rank runs the same cases and checks its outputs against the CPU reference
// (which it runs for all ranks: routings are generated from shared seeds). Ranks are:
//   process     one process per GPU, one NCCL communicator (needs as many GPUs as ranks);
//   virtual     threads of this process on one GPU, groups made by epyardEpCreateVirtualGroup
//               (the production kernels over one allocation cut into per-rank buffers; no NCCL);
//   shared-gpu  processes sharing GPUs in one NCCL communicator (NCCL_MULTI_RANK_GPU_ENABLE=1,
//               NCCL >= 2.30.3; each group on SMs / ranks blocks);
//   auto        process when there are GPUs enough, else virtual.
// Prints SKIPPED without a GPU.
// Usage: epyard_ep_gpu_test [--nranks N] [--mode M] [--cases a,b,...] [--timeout S]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>

#include "ep_gpu_cases.h"
#include "launch/ranks.h"

using namespace epyard::ep::test;

int main(int argc, char** argv) {
  int nranks = 0, timeout_s = 900;
  std::string mode = "auto";
  std::set<std::string> only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--nranks" && i + 1 < argc) {
      nranks = std::atoi(argv[++i]);
    } else if (a == "--mode" && i + 1 < argc) {
      mode = argv[++i];
    } else if (a == "--timeout" && i + 1 < argc) {
      timeout_s = std::atoi(argv[++i]);
    } else if (a == "--cases" && i + 1 < argc) {
      std::string list = argv[++i];
      for (size_t at = 0; at <= list.size();) {
        size_t comma = list.find(',', at);
        if (comma == std::string::npos) comma = list.size();
        only.insert(list.substr(at, comma - at));
        at = comma + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--nranks N] [--mode auto|process|virtual|shared-gpu] [--cases a,b,...] "
                   "[--timeout S]\ncases:", argv[0]);
      for (const TestCase& c : allCases()) std::fprintf(stderr, " %s", c.name);
      std::fprintf(stderr, "\n");
      return 64;
    }
  }
  for (const std::string& name : only) {
    bool known = false;
    for (const TestCase& c : allCases()) known |= name == c.name;
    if (!known) {
      std::fprintf(stderr, "unknown case '%s'\n", name.c_str());
      return 64;
    }
  }
  if (mode != "auto" && mode != "process" && mode != "virtual" && mode != "shared-gpu") {
    std::fprintf(stderr, "unknown --mode '%s' (auto, process, virtual, shared-gpu)\n", mode.c_str());
    return 64;
  }
  const int gpus = epyard::launch::visibleGpus();
  if (nranks == 0) nranks = gpus;
  if (gpus < 1) {
    std::printf("SKIPPED: the EP GPU tests need a GPU (none visible)\n");
    return 0;
  }
  if (nranks < 2) {
    std::fprintf(stderr, "--nranks %d: the EP GPU tests need at least 2 ranks\n", nranks);
    return 64;
  }
  if (mode == "auto") mode = nranks <= gpus ? "process" : "virtual";
  if (mode == "process" && nranks > gpus) {
    std::fprintf(stderr, "--nranks %d is more than the %d visible GPUs (one rank per GPU in mode "
                 "process; --mode virtual or shared-gpu puts several on one)\n", nranks, gpus);
    return 64;
  }
  int rc = 0;
  if (mode == "virtual") {
    std::printf("EP GPU tests: %d virtual ranks (threads) on GPU 0, each on its own stream with "
                "SMs/%d blocks; one allocation holds every rank's buffer (no NCCL)\n", nranks, nranks);
    std::fflush(stdout);
    epyardEpVirtualWorld_t world = nullptr;
    if (epyardEpVirtualWorldCreate(&world, nranks, 0, 0) != ncclSuccess) {
      std::fprintf(stderr, "epyardEpVirtualWorldCreate: %s\n", ncclEpGetLastError(nullptr));
      return 1;
    }
    HostBarrier barrier(nranks);
    rc = epyard::launch::runThreads(nranks, timeout_s, world, [&](const epyard::launch::RankEnv& env) {
      return runCases(env, only, &barrier);
    });
    epyardEpVirtualWorldDestroy(world);
  } else {
    const auto how = mode == "shared-gpu" ? epyard::launch::Sharing::kSharedGpu
                                          : epyard::launch::Sharing::kSeparateHosts;
    std::printf("EP GPU tests: %d ranks (%s)\n", nranks, mode.c_str());
    std::fflush(stdout);
    rc = epyard::launch::runRanks(nranks, timeout_s, [&](const epyard::launch::RankEnv& env) {
      return runCases(env, only);
    }, how);
  }
  std::printf(rc == 0 ? "EP GPU tests: all passed on %d ranks\n" : "EP GPU tests: FAILED on %d ranks\n", nranks);
  return rc;
}
