// The verbs connection manager hands out QPs only to askers that were given the endpoint's
// address (review finding 12): the address carries a random secret, a request without it is
// refused and creates nothing. On the emulated device, in this process.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/params.h"
#include "engine/transport.h"
#include "verbs/verbs.h"

namespace epyard::net::verbs {
namespace {

class VerbsCm : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("EPYARD_IB_VERBS_LIBRARY", EPYARD_FAKEVERBS_PATH, 1);
    setParams(loadParams());  // the transport reads its settings from params(), as after netInit
    std::string why;
    transport_ = epyard::net::openVerbsTransport(&why);
    ASSERT_NE(transport_, nullptr) << why;
    std::string error;
    a_ = transport_->nic(0)->openEndpoint(&error);
    ASSERT_NE(a_, nullptr) << error;
    b_ = transport_->nic(0)->openEndpoint(&error);
    ASSERT_NE(b_, nullptr) << error;
  }
  EndpointAddr addressOf(Endpoint* ep) {
    std::vector<uint8_t> bytes;
    EXPECT_TRUE(ep->localAddress(&bytes));
    EndpointAddr a{};
    EXPECT_EQ(bytes.size(), sizeof(a));
    memcpy(&a, bytes.data(), sizeof(a));
    return a;
  }
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Endpoint> a_, b_;
};

TEST_F(VerbsCm, EveryEndpointHasItsOwnSecret) {
  EndpointAddr a = addressOf(a_.get()), b = addressOf(b_.get());
  EXPECT_NE(a.secret, 0u);
  EXPECT_NE(a.secret, b.secret);
  EXPECT_NE(a.endpoint_id, b.endpoint_id);
}

TEST_F(VerbsCm, ARequestWithoutTheSecretIsRefused) {
  EndpointAddr a = addressOf(a_.get());
  EndpointAddr forged = a;
  forged.secret ^= 1;  // knows the manager's port and the endpoint id, not the secret
  uint64_t peer = 0;
  EXPECT_FALSE(b_->addPeer(reinterpret_cast<const uint8_t*>(&forged), sizeof(forged), &peer))
      << "a QP was connected for an asker without the secret";
  EXPECT_NE(b_->lastError().find("secret"), std::string::npos) << b_->lastError();
  EXPECT_TRUE(b_->addPeer(reinterpret_cast<const uint8_t*>(&a), sizeof(a), &peer)) << b_->lastError();
}

// An asker that connects to the connection manager and sends nothing holds the manager for its
// 5 s read deadline; askers were answered one at a time, so every connection set-up of the
// process waited behind it.
TEST_F(VerbsCm, AnIdleAskerDoesNotStallOthers) {
  EndpointAddr a = addressOf(a_.get());
  std::vector<int> idle;
  for (int i = 0; i < 2; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = a.cm_ipv4;
    sa.sin_port = a.cm_port;
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0) << strerror(errno);
    idle.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the manager has taken them
  const auto start = std::chrono::steady_clock::now();
  uint64_t peer = 0;
  EXPECT_TRUE(b_->addPeer(reinterpret_cast<const uint8_t*>(&a), sizeof(a), &peer)) << b_->lastError();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  // Behind two idle askers served in turn this takes 10 s (two read deadlines); answered
  // alongside them, a round trip on loopback.
  EXPECT_LT(ms.count(), 2500) << "a connect waited behind idle askers";
  for (int fd : idle) ::close(fd);
}

// Reaching a peer goes through its connection manager, a TCP round trip of up to the net
// timeout; the connect and accept state machines must not block on it (NCCL calls them in a
// loop from its own threads), so addPeerStep answers at once and reports the outcome later.
TEST_F(VerbsCm, ReachingAPeerDoesNotBlockTheCaller) {
  Params p = loadParams();
  p.timeout_ms = 600;
  setParams(p);
  // A "connection manager" that takes the connection and never answers.
  const int silent = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sa);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(::listen(silent, 4), 0);
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  EndpointAddr to = addressOf(a_.get());
  to.cm_ipv4 = sa.sin_addr.s_addr;
  to.cm_port = sa.sin_port;
  const auto start = std::chrono::steady_clock::now();
  uint64_t peer = 0;
  const auto* bytes = reinterpret_cast<const uint8_t*>(&to);
  EXPECT_EQ(b_->addPeerStep(bytes, sizeof(to), &peer), Endpoint::AddPeer::kPending);
  const auto first = std::chrono::steady_clock::now() - start;
  // The round trip is bounded by the timeout: the step then reports the failure, naming it.
  Endpoint::AddPeer r = Endpoint::AddPeer::kPending;
  while (r == Endpoint::AddPeer::kPending && std::chrono::steady_clock::now() - start < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    r = b_->addPeerStep(bytes, sizeof(to), &peer);
  }
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(first).count(), 300)
      << "the first step waited for the connection manager";
  EXPECT_EQ(r, Endpoint::AddPeer::kFailed);
  EXPECT_NE(b_->lastError().find("connection manager"), std::string::npos) << b_->lastError();
  // And a peer that answers is reached the same way.
  EndpointAddr a = addressOf(a_.get());
  r = Endpoint::AddPeer::kPending;
  while (r == Endpoint::AddPeer::kPending && std::chrono::steady_clock::now() - start < std::chrono::seconds(20)) {
    r = b_->addPeerStep(reinterpret_cast<const uint8_t*>(&a), sizeof(a), &peer);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(r, Endpoint::AddPeer::kDone) << b_->lastError();
  uint64_t again = ~0ull;
  EXPECT_EQ(b_->addPeerStep(reinterpret_cast<const uint8_t*>(&a), sizeof(a), &again), Endpoint::AddPeer::kDone);
  EXPECT_EQ(again, peer);
  ::close(silent);
  setParams(loadParams());
}

}  // namespace
}  // namespace epyard::net::verbs
