// The virtual-rank world (tests only, see virtual_ranks.h): its bounded barrier and the C entry
// points that make and destroy one. epyardEpCreateVirtualGroup lives with the group (group.cc).
#include "host/virtual_world.h"

#include <algorithm>
#include <chrono>

#include "device/ll_types.h"
#include "host/errors.h"
#include "host/params.h"

namespace {

std::string rankList(const std::vector<int>& ranks) {
  std::string text;
  for (int r : ranks) text += (text.empty() ? "" : ", ") + std::to_string(r);
  return text;
}

}  // namespace

ncclResult_t epyardEpVirtualWorld::collective(int rank, const std::string& what, const Step& last,
                                              std::string* error) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::string me = "virtual rank " + std::to_string(rank) + " of " + std::to_string(num_ranks);
  if (!arrived_.empty() && step_ != what) {
    *error = me + " entered \"" + what + "\" while rank(s) " + rankList(arrived_) + " wait in \"" +
             step_ + "\": the ranks of a world must make the same collective calls in the same order";
    return ncclInvalidUsage;
  }
  if (std::find(arrived_.begin(), arrived_.end(), rank) != arrived_.end()) {
    *error = me + " entered \"" + what + "\" twice: one thread per virtual rank";
    return ncclInvalidUsage;
  }
  step_ = what;
  arrived_.push_back(rank);
  const uint64_t generation = generation_;
  if (static_cast<int>(arrived_.size()) == num_ranks) {
    result_error_.clear();
    result_ = last ? last(&result_error_) : ncclSuccess;
    arrived_.clear();
    ++generation_;
    cv_.notify_all();
  } else {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    if (!cv_.wait_until(lock, deadline, [&] { return generation_ != generation; })) {
      std::vector<int> missing;
      for (int r = 0; r < num_ranks; ++r)
        if (std::find(arrived_.begin(), arrived_.end(), r) == arrived_.end()) missing.push_back(r);
      arrived_.erase(std::find(arrived_.begin(), arrived_.end(), rank));
      *error = me + ": rank(s) " + rankList(missing) + " did not reach \"" + what + "\" within " +
               std::to_string(timeout_ms) + " ms";
      return ncclRemoteError;
    }
  }
  if (result_ != ncclSuccess) *error = result_error_;
  return result_;
}

#define EPYARD_API extern "C" __attribute__((visibility("default")))

EPYARD_API ncclResult_t epyardEpVirtualWorldCreate(epyardEpVirtualWorld_t* world, int num_ranks,
                                                   int device, uint64_t timeout_ms) {
  using epyard::ep::fail;
  if (world == nullptr) return fail(nullptr, ncclInvalidArgument, "world (the output pointer) is NULL");
  *world = nullptr;
  if (num_ranks < 1 || num_ranks > epyard::ep::kLlMaxRanks)
    return fail(nullptr, ncclInvalidArgument,
                "num_ranks (" + std::to_string(num_ranks) + ") must be in [1, " +
                    std::to_string(epyard::ep::kLlMaxRanks) + "]");
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || device < 0 || device >= devices)
    return fail(nullptr, ncclInvalidArgument,
                "device (" + std::to_string(device) + ") is not one of the " +
                    std::to_string(devices) + " visible CUDA devices");
  try {
    auto* w = new epyardEpVirtualWorld();
    w->num_ranks = num_ranks;
    w->device = device;
    w->signatures.resize(static_cast<size_t>(num_ranks));
    w->timeout_ms = timeout_ms != 0 ? timeout_ms : epyard::ep::epParams().timeout_ms;
    *world = w;
  } catch (...) {
    return fail(nullptr, ncclSystemError, "out of host memory");
  }
  return ncclSuccess;
}

EPYARD_API ncclResult_t epyardEpVirtualWorldDestroy(epyardEpVirtualWorld_t world) {
  if (world == nullptr) return epyard::ep::fail(nullptr, ncclInvalidArgument, "world is NULL");
  delete world;
  return ncclSuccess;
}
