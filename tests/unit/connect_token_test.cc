// The token a connect in progress writes into NCCL's handle (the engine's connect table), in
// one process over tcp;ofi_rxm on loopback: a handle of another listener carrying that token
// must not take over the connection (review finding 10), and tokens are not small counters.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>

#include "engine/wire.h"
#include "engine_loopback.h"

namespace epyard::net {
namespace {

using loopback::Clock;
using ConnectToken = loopback::EngineLoopback;

ConnectHandle* asHandle(char* bytes) { return reinterpret_cast<ConnectHandle*>(bytes); }

// Sends `value` on `send` and receives it on `recv`; true when it arrived there, within 10 s.
bool arrives(void* send, void* recv, int value) {
  int in = -1, out = value;
  void *rmr = nullptr, *smr = nullptr;
  if (netRegMr(recv, &in, sizeof(in), NCCL_PTR_HOST, -1, 0, &rmr) != ncclSuccess) return false;
  if (netRegMr(send, &out, sizeof(out), NCCL_PTR_HOST, -1, 0, &smr) != ncclSuccess) return false;
  void *rreq = nullptr, *sreq = nullptr;
  void* data = &in;
  size_t size = sizeof(in);
  int tag = 7;
  bool ok = true;
  int rdone = 0, sdone = 0;
  for (auto start = Clock::now(); ok && (!rdone || !sdone);) {
    if (Clock::now() - start > std::chrono::seconds(10)) ok = false;
    if (rreq == nullptr && netIrecv(recv, 1, &data, &size, &tag, &rmr, &rreq) != ncclSuccess) ok = false;
    if (sreq == nullptr && netIsend(send, &out, sizeof(out), tag, smr, &sreq) != ncclSuccess) ok = false;
    int sizes = 0;
    if (rreq != nullptr && !rdone && netTest(rreq, &rdone, &sizes) != ncclSuccess) ok = false;
    if (sreq != nullptr && !sdone && netTest(sreq, &sdone, &sizes) != ncclSuccess) ok = false;
  }
  netDeregMr(recv, rmr);
  netDeregMr(send, smr);
  return ok && in == value;
}

TEST_F(ConnectToken, AnotherListenersHandleWithTheTokenConnectsToItsOwnListener) {
  char h1[NCCL_NET_HANDLE_MAXSIZE] = {}, h2[NCCL_NET_HANDLE_MAXSIZE] = {};
  void *l1 = nullptr, *l2 = nullptr;
  ASSERT_EQ(netListen(0, h1, &l1), ncclSuccess);
  ASSERT_EQ(netListen(0, h2, &l2), ncclSuccess);
  void *s1 = nullptr, *s2 = nullptr, *r1 = nullptr, *r2 = nullptr;
  ASSERT_EQ(netConnect(0, h1, &s1), ncclSuccess);
  if (s1 == nullptr) {
    ASSERT_NE(asHandle(h1)->pending_token, 0u) << "a connect in progress names itself";
    EXPECT_GT(asHandle(h1)->pending_token, uint64_t{1} << 20) << "tokens are random, not counters";
  }
  char forged[NCCL_NET_HANDLE_MAXSIZE];
  memcpy(forged, h2, sizeof(forged));
  asHandle(forged)->pending_token = asHandle(h1)->pending_token;  // outside the checksum
  for (auto start = Clock::now(); !(s1 && s2 && r1 && r2);) {
    ASSERT_LT(Clock::now() - start, std::chrono::seconds(10))
        << "connections not made: s1 " << s1 << " s2 " << s2 << " r1 " << r1 << " r2 " << r2;
    // The forged handle is stepped first, so it would be the one to finish a shared connect.
    ASSERT_EQ(s2 ? ncclSuccess : netConnect(0, forged, &s2), ncclSuccess);
    ASSERT_EQ(s1 ? ncclSuccess : netConnect(0, h1, &s1), ncclSuccess);
    ASSERT_EQ(r1 ? ncclSuccess : netAccept(l1, &r1), ncclSuccess);
    ASSERT_EQ(r2 ? ncclSuccess : netAccept(l2, &r2), ncclSuccess);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ASSERT_NE(s1, s2) << "the forged handle was handed the other connection";
  EXPECT_TRUE(arrives(s2, r2, 22)) << "what is sent on the second handle's comm reaches listener 2";
  EXPECT_TRUE(arrives(s1, r1, 11));
  for (void* c : {s1, s2}) netCloseSend(c);
  for (void* c : {r1, r2}) netCloseRecv(c);
  netCloseListen(l1);
  netCloseListen(l2);
}

TEST(RandomId, IsNonZeroAndDoesNotRepeat) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    uint64_t v = randomId();
    EXPECT_NE(v, 0u);
    EXPECT_TRUE(seen.insert(v).second) << "repeated id " << v;
  }
}

}  // namespace
}  // namespace epyard::net
