// A provider whose send queue is full (review finding 15): irecv must not spin inside the
// comm mutex waiting for room (with progress threads nobody else could make it), but return
// no request at once, and post once NCCL calls again after room is made.
#include <utility>
#include <vector>

#include "engine/comm.h"
#include "engine_loopback.h"

namespace epyard::net::loopback {
namespace {

// Forwards to the real endpoint, except that writes report "full" until `full_until`.
class FullEndpoint final : public Endpoint {
 public:
  FullEndpoint(std::unique_ptr<Endpoint> inner, Clock::time_point full_until)
      : inner_(std::move(inner)), full_until_(full_until) {}
  bool localAddress(std::vector<uint8_t>* out) override { return inner_->localAddress(out); }
  bool addPeer(const uint8_t* addr, size_t len, uint64_t* peer) override {
    return inner_->addPeer(addr, len, peer);
  }
  PostResult postRecv(void* buf, size_t len, void* desc, OpContext* ctx) override {
    return inner_->postRecv(buf, len, desc, ctx);
  }
  PostResult postSend(uint64_t peer, const void* buf, size_t len, void* desc, OpContext* ctx) override {
    return inner_->postSend(peer, buf, len, desc, ctx);
  }
  PostResult postWrite(uint64_t peer, const void* buf, size_t len, void* desc, uint64_t remote_addr,
                       uint64_t key, bool with_imm, uint32_t imm, OpContext* ctx) override {
    if (Clock::now() < full_until_) return PostResult::kRetry;
    return inner_->postWrite(peer, buf, len, desc, remote_addr, key, with_imm, imm, ctx);
  }
  PostResult postRead(uint64_t peer, void* buf, size_t len, void* desc, uint64_t remote_addr,
                      uint64_t key, OpContext* ctx) override {
    return inner_->postRead(peer, buf, len, desc, remote_addr, key, ctx);
  }
  int poll(Completion* out, int max) override { return inner_->poll(out, max); }
  std::string peerName(uint64_t peer) override { return inner_->peerName(peer); }
  std::string lastError() override { return inner_->lastError(); }

 private:
  std::unique_ptr<Endpoint> inner_;
  Clock::time_point full_until_;
};

using FullProvider = EngineLoopback;

TEST_F(FullProvider, IrecvReturnsAtOnceAndPostsWhenCalledAgain) {
  void *send = nullptr, *recv = nullptr, *listen = nullptr;
  ASSERT_TRUE(connectPair(&send, &recv, &listen));
  auto* comm = static_cast<Comm*>(recv);
  auto full_until = Clock::now() + std::chrono::milliseconds(300);
  std::unique_ptr<Endpoint> real = comm->swapRailEndpointForTesting(0, nullptr);
  comm->swapRailEndpointForTesting(0, std::make_unique<FullEndpoint>(std::move(real), full_until));

  int in = 0, out = 42;
  void *rmr = nullptr, *smr = nullptr;
  ASSERT_EQ(netRegMr(recv, &in, sizeof(in), NCCL_PTR_HOST, -1, 0, &rmr), ncclSuccess);
  ASSERT_EQ(netRegMr(send, &out, sizeof(out), NCCL_PTR_HOST, -1, 0, &smr), ncclSuccess);
  void* data = &in;
  size_t size = sizeof(in);
  int tag = 1;
  void* rreq = nullptr;
  auto start = Clock::now();
  ASSERT_EQ(netIrecv(recv, 1, &data, &size, &tag, &rmr, &rreq), ncclSuccess);
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(50)) << "irecv waited for room";
  EXPECT_EQ(rreq, nullptr) << "no request while the provider is full";
  while (rreq == nullptr) {
    ASSERT_LT(Clock::now() - start, std::chrono::seconds(5));
    ASSERT_EQ(netIrecv(recv, 1, &data, &size, &tag, &rmr, &rreq), ncclSuccess);
  }
  EXPECT_GE(Clock::now(), full_until);
  void* sreq = nullptr;
  while (sreq == nullptr) {
    ASSERT_LT(Clock::now() - start, std::chrono::seconds(10));
    ASSERT_EQ(netIsend(send, &out, sizeof(out), tag, smr, &sreq), ncclSuccess);
  }
  int done = 0, got = 0;
  EXPECT_EQ(testUntil(rreq, &done, &got, std::chrono::seconds(5)), ncclSuccess);
  EXPECT_EQ(done, 1);
  EXPECT_EQ(in, 42) << "the receive posted after the retry carries the message";
  EXPECT_EQ(testUntil(sreq, &done, &got, std::chrono::seconds(5)), ncclSuccess);
  netDeregMr(recv, rmr);
  netDeregMr(send, smr);
  netCloseSend(send);
  netCloseRecv(recv);
  netCloseListen(listen);
}

}  // namespace
}  // namespace epyard::net::loopback
