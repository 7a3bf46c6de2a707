// The c10d backend's communicator life (c10d_backend/csrc/comm_state.hpp): an abort marks the
// communicator at once and frees it only when no call uses it (review finding 8: the watchdog
// freed it under a running launch). Built twice, once under ThreadSanitizer.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "comm_state.hpp"

namespace epyard::c10d_backend {
namespace {

// Stands in for an NCCL communicator: counts how it was freed and says whether it still lives.
struct FakeComm {
  std::atomic<int> aborts{0}, destroys{0};
  bool alive() const { return aborts.load() + destroys.load() == 0; }
  ncclComm_t handle() { return reinterpret_cast<ncclComm_t>(this); }
};

CommState::Free freer() {
  return [](ncclComm_t c, bool aborted) {
    auto* f = reinterpret_cast<FakeComm*>(c);
    (aborted ? f->aborts : f->destroys).fetch_add(1);
  };
}

TEST(CommState, AnAbortWithNoCallInProgressFreesAtOnceAndLaterCallsGetTheReason) {
  FakeComm comm;
  CommState state(comm.handle(), freer());
  EXPECT_EQ(state.abort("rank 3 is gone"), 0);
  EXPECT_EQ(comm.aborts, 1);
  std::string why;
  EXPECT_FALSE(state.enter(&why));
  EXPECT_EQ(why, "rank 3 is gone");
}

TEST(CommState, AnAbortDuringACallFreesWhenTheCallEnds) {
  FakeComm comm;
  CommState state(comm.handle(), freer());
  {
    std::optional<CommState::Use> use = state.enter(nullptr);
    ASSERT_TRUE(use);
    EXPECT_EQ(state.abort("timeout"), 1);
    EXPECT_TRUE(state.aborted());
    EXPECT_TRUE(comm.alive()) << "freed under a call in progress";
    EXPECT_FALSE(state.enter(nullptr)) << "a new call was let in after the abort";
  }
  EXPECT_EQ(comm.aborts, 1);
  EXPECT_EQ(comm.destroys, 0);
}

TEST(CommState, TheFirstReasonStaysAndTheCommunicatorIsFreedOnce) {
  FakeComm comm;
  {
    CommState state(comm.handle(), freer());
    EXPECT_EQ(state.abort("first"), 0);
    EXPECT_EQ(state.abort("second"), -1);
    EXPECT_EQ(state.reason(), "first");
  }
  EXPECT_EQ(comm.aborts, 1);
  EXPECT_EQ(comm.destroys, 0);
}

TEST(CommState, AHealthyCommunicatorIsDestroyedNotAborted) {
  FakeComm comm;
  { CommState state(comm.handle(), freer()); }
  EXPECT_EQ(comm.destroys, 1);
  EXPECT_EQ(comm.aborts, 0);
}

// Callers loop on calls while another thread aborts, as the watchdog does: no call may see the
// communicator freed, it is freed exactly once, and (in the TSan build) nothing races.
TEST(CommState, CallsOnManyThreadsNeverSeeTheCommunicatorFreedByAnAbort) {
  for (int round = 0; round < 50; ++round) {
    FakeComm comm;
    CommState state(comm.handle(), freer());
    std::atomic<int> freed_under_a_call{0}, started{0};
    std::vector<std::thread> callers;
    for (int t = 0; t < 3; ++t)
      callers.emplace_back([&] {
        started.fetch_add(1);
        for (;;) {
          std::string why;
          std::optional<CommState::Use> use = state.enter(&why);
          if (!use) {
            if (why != "watchdog") freed_under_a_call.fetch_add(1000);
            return;
          }
          if (!reinterpret_cast<FakeComm*>(use->comm())->alive()) freed_under_a_call.fetch_add(1);
          std::this_thread::yield();
          if (!reinterpret_cast<FakeComm*>(use->comm())->alive()) freed_under_a_call.fetch_add(1);
        }
      });
    while (started.load() < 3) std::this_thread::yield();
    std::thread watchdog([&] { state.abort("watchdog"); });
    watchdog.join();
    for (auto& c : callers) c.join();
    EXPECT_EQ(freed_under_a_call.load(), 0) << "round " << round;
    EXPECT_EQ(comm.aborts.load(), 1) << "round " << round;
    EXPECT_EQ(state.uses(), 0);
  }
}

}  // namespace
}  // namespace epyard::c10d_backend
