// A peer that lies during connection set-up or in its clear-to-send entries (the part of review
// item 7 that runs on a CPU): a raw endpoint of the test's own sends the listener messages no
// sender would, plays a listener that answers with the wrong words, and a receiver's CTS
// entries are changed through RecvComm's tamper seam. Each must end in an error or be ignored,
// never in a crash, a hang or a connection to the wrong peer.
#include <cstring>
#include <functional>
#include <vector>

#include "engine/comm.h"
#include "engine/transport.h"
#include "engine/wire.h"
#include "engine_loopback.h"

namespace epyard::net::loopback {
namespace {

class HostilePeer : public EngineLoopback {
 protected:
  void SetUp() override {
    start(1500, 131072);
    if (IsSkipped()) return;
    std::string why;
    transport_ = openOfiTransport("tcp;ofi_rxm", &why);
    ASSERT_NE(transport_, nullptr) << why;
    ep_ = transport_->nic(0)->openEndpoint(&why);
    ASSERT_NE(ep_, nullptr) << why;
  }
  void TearDown() override {
    if (send_ != nullptr) netCloseSend(send_);
    if (recv_ != nullptr) netCloseRecv(recv_);
    if (listen_ != nullptr) netCloseListen(listen_);
    ep_.reset();
    transport_.reset();
    EngineLoopback::TearDown();
  }

  // Waits (at most 5 s) for the raw endpoint's operation posted with `ctx`, calling `pump`
  // meanwhile (the engine's side progresses only inside NCCL's calls); false on an error.
  bool waitFor(OpContext* ctx, const std::function<void()>& pump, size_t* length = nullptr) {
    for (auto start = Clock::now(); Clock::now() - start < std::chrono::seconds(5);) {
      pump();
      Completion c[4];
      const int n = ep_->poll(c, 4);
      if (n < 0) return false;
      for (int i = 0; i < n; ++i) {
        if (c[i].context != ctx) continue;
        if (length != nullptr) *length = c[i].length;
        return c[i].kind == Completion::Kind::kLocal;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return false;
  }
  // One accept call, its first failure kept in accept_result_.
  void acceptOnce() {
    if (recv_ != nullptr || accept_result_ != ncclSuccess) return;
    accept_result_ = netAccept(listen_, &recv_);
  }
  // Sends `len` raw bytes to the endpoint a listen handle names.
  void sendRaw(const char* handle_bytes, const void* bytes, size_t len) {
    ConnectHandle h;
    memcpy(&h, handle_bytes, sizeof(h));
    uint64_t peer = 0;
    ASSERT_TRUE(ep_->addPeer(h.addr, h.addr_len, &peer)) << ep_->lastError();
    OpContext ctx;
    PostResult pr = PostResult::kRetry;
    for (auto start = Clock::now(); pr == PostResult::kRetry && Clock::now() - start < std::chrono::seconds(5);) {
      pr = ep_->postSend(peer, bytes, len, nullptr, &ctx);  // kRetry until the provider has connected
      acceptOnce();
      if (pr != PostResult::kRetry) break;
      Completion c[4];
      ep_->poll(c, 4);  // nothing of ours is in flight yet
    }
    ASSERT_EQ(pr, PostResult::kPosted) << ep_->lastError();
    ASSERT_TRUE(waitFor(&ctx, [this] { acceptOnce(); })) << "the raw send did not complete";
  }
  // Calls accept for `ms` (or until it fails or accepts); returns its first failure.
  ncclResult_t acceptFor(int ms) {
    for (auto start = Clock::now(); Clock::now() - start < std::chrono::milliseconds(ms);) {
      acceptOnce();
      if (accept_result_ != ncclSuccess || recv_ != nullptr) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return accept_result_;
  }
  // An honest sender still gets through the listener.
  void connectHonestly(const char* handle) {
    for (auto start = Clock::now(); (send_ == nullptr || recv_ == nullptr) &&
                                    Clock::now() - start < std::chrono::seconds(10);) {
      if (send_ == nullptr) {
        ASSERT_EQ(netConnect(0, const_cast<char*>(handle), &send_), ncclSuccess);
      }
      if (recv_ == nullptr) {
        ASSERT_EQ(netAccept(listen_, &recv_), ncclSuccess);
      }
    }
    EXPECT_NE(send_, nullptr);
    EXPECT_NE(recv_, nullptr);
  }
  ConnectMsg validLooking(const char* handle_bytes) {
    ConnectHandle h;
    memcpy(&h, handle_bytes, sizeof(h));
    ConnectMsg m{};
    m.magic = kConnectMagic;
    m.version = kWireVersion;
    m.listen_id = h.listen_id;
    m.conn_id = 7;
    m.rails = 1;
    std::vector<uint8_t> mine;
    EXPECT_TRUE(ep_->localAddress(&mine));
    m.rail_addrs[0].len = static_cast<uint32_t>(mine.size());
    memcpy(m.rail_addrs[0].bytes, mine.data(), mine.size());
    return m;
  }

  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Endpoint> ep_;
  void* send_ = nullptr;
  void* recv_ = nullptr;
  void* listen_ = nullptr;
  ncclResult_t accept_result_ = ncclSuccess;
};

TEST_F(HostilePeer, MalformedConnectMessagesAreIgnoredAndTheListenerStillAccepts) {
  char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
  ASSERT_EQ(netListen(0, handle, &listen_), ncclSuccess);
  const ConnectMsg good = validLooking(handle);
  std::vector<ConnectMsg> bad(5, good);
  bad[0].magic ^= 1;
  bad[1].version += 1;
  bad[2].listen_id ^= 1;  // a stale or guessed listen id
  bad[3].rails = 0;
  bad[4].rails = kMaxRails + 1;
  for (const ConnectMsg& m : bad) sendRaw(handle, &m, sizeof(m));
  sendRaw(handle, &good, 12);  // truncated
  EXPECT_EQ(acceptFor(300), ncclSuccess) << "a malformed connect message failed the listener";
  EXPECT_EQ(recv_, nullptr) << "a malformed connect message was accepted";
  connectHonestly(handle);
}

TEST_F(HostilePeer, AConnectMessageWithABadRailAddressFailsThatAcceptOnly) {
  char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
  ASSERT_EQ(netListen(0, handle, &listen_), ncclSuccess);
  ConnectMsg m = validLooking(handle);
  m.rail_addrs[0].len = kMaxAddrBytes + 1000;  // would over-read the message
  sendRaw(handle, &m, sizeof(m));
  EXPECT_EQ(acceptFor(2000), ncclRemoteError);
  EXPECT_EQ(recv_, nullptr);
  accept_result_ = ncclSuccess;
  connectHonestly(handle);  // the listener itself goes on
}

// The test's raw endpoint plays a listener: it takes the engine's connect message and answers
// it with an accept message that is wrong in one way.
class HostileListener : public HostilePeer {
 protected:
  ncclResult_t connectAndAnswer(void (*spoil)(AcceptMsg*)) {
    ConnectHandle h{};
    std::vector<uint8_t> mine;
    EXPECT_TRUE(ep_->localAddress(&mine));
    h.addr_len = static_cast<uint16_t>(mine.size());
    memcpy(h.addr, mine.data(), mine.size());
    h.listen_id = 42;
    h.rails = 1;
    sealHandle(&h);
    char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
    memcpy(handle, &h, sizeof(h));
    std::vector<uint8_t> in(4096);
    OpContext recv_ctx;
    EXPECT_EQ(ep_->postRecv(in.data(), in.size(), nullptr, &recv_ctx), PostResult::kPosted);
    ncclResult_t r = ncclSuccess;
    auto pump = [&] {
      if (r == ncclSuccess && send_ == nullptr) r = netConnect(0, handle, &send_);
    };
    size_t got = 0;
    EXPECT_TRUE(waitFor(&recv_ctx, pump, &got)) << "no connect message came";
    ConnectMsg msg;
    memcpy(&msg, in.data(), sizeof(msg));
    EXPECT_EQ(msg.listen_id, 42u);
    uint64_t peer = 0;
    EXPECT_TRUE(ep_->addPeer(msg.rail_addrs[0].bytes, msg.rail_addrs[0].len, &peer)) << ep_->lastError();
    AcceptMsg answer{};
    answer.magic = kAcceptMagic;
    answer.rails = 1;
    answer.conn_id = msg.conn_id;
    answer.rail_addrs[0].len = static_cast<uint32_t>(mine.size());
    memcpy(answer.rail_addrs[0].bytes, mine.data(), mine.size());
    spoil(&answer);
    OpContext send_ctx;
    EXPECT_EQ(ep_->postSend(peer, &answer, sizeof(answer), nullptr, &send_ctx), PostResult::kPosted);
    EXPECT_TRUE(waitFor(&send_ctx, pump));
    for (auto start = Clock::now(); r == ncclSuccess && send_ == nullptr &&
                                    Clock::now() - start < std::chrono::seconds(5);) {
      pump();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return r;
  }
};

TEST_F(HostileListener, AnAnswerForAnotherConnectIsRefused) {
  EXPECT_EQ(connectAndAnswer([](AcceptMsg* a) { a->conn_id ^= 1; }), ncclRemoteError);
  EXPECT_EQ(send_, nullptr) << "connected on an answer meant for another connect";
}

TEST_F(HostileListener, AnAnswerWithMoreRailsThanAskedIsRefused) {
  EXPECT_EQ(connectAndAnswer([](AcceptMsg* a) { a->rails = kMaxRails + 1; }), ncclRemoteError);
  EXPECT_EQ(send_, nullptr);
}

TEST_F(HostileListener, AnAnswerWithABadRailAddressIsRefused) {
  EXPECT_EQ(connectAndAnswer([](AcceptMsg* a) { a->rail_addrs[0].len = 0; }), ncclRemoteError);
  EXPECT_EQ(send_, nullptr);
}

TEST_F(HostileListener, AnHonestAnswerConnects) {  // the harness itself works
  EXPECT_EQ(connectAndAnswer([](AcceptMsg*) {}), ncclSuccess);
  EXPECT_NE(send_, nullptr);
}

// The receiver's clear-to-send entries, changed before they are written to the sender.
class HostileReceiver : public HostilePeer {
 protected:
  ncclResult_t sendAgainst(CtsTamper tamper) {
    EXPECT_TRUE(connectPair(&send_, &recv_, &listen_));
    recvCommForTesting(recv_)->setTamper(std::move(tamper));
    std::vector<char> in(4096), out(1024, 'x');
    void *rmr = nullptr, *smr = nullptr;
    EXPECT_EQ(netRegMr(recv_, in.data(), in.size(), NCCL_PTR_HOST, -1, 0, &rmr), ncclSuccess);
    EXPECT_EQ(netRegMr(send_, out.data(), out.size(), NCCL_PTR_HOST, -1, 0, &smr), ncclSuccess);
    void* data = in.data();
    size_t size = in.size();
    int tag = 1;
    void *rreq = nullptr, *sreq = nullptr;
    EXPECT_EQ(netIrecv(recv_, 1, &data, &size, &tag, &rmr, &rreq), ncclSuccess);
    for (auto start = Clock::now(); sreq == nullptr && Clock::now() - start < std::chrono::seconds(5);) {
      ncclResult_t r = netIsend(send_, out.data(), out.size(), tag, smr, &sreq);
      if (r != ncclSuccess) return r;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (sreq == nullptr) return ncclInternalError;  // neither sent nor refused: a hang
    int done = 0, bytes = 0;
    return testUntil(sreq, &done, &bytes, std::chrono::seconds(5));
  }
};

TEST_F(HostileReceiver, AnHonestReceiverWorks) {
  EXPECT_EQ(sendAgainst(nullptr), ncclSuccess);
}

TEST_F(HostileReceiver, AnEntryWithTheWrongSequenceFailsTheSend) {
  EXPECT_EQ(sendAgainst([](CtsEntry* e) { e->seq += 5; }), ncclRemoteError);
}

TEST_F(HostileReceiver, AnEntryWithNoBuffersFailsTheSend) {
  EXPECT_EQ(sendAgainst([](CtsEntry* e) { e->count = 0; }), ncclRemoteError);
}

TEST_F(HostileReceiver, AnEntryWithMoreBuffersThanAReceiveTakesFailsTheSend) {
  EXPECT_EQ(sendAgainst([](CtsEntry* e) { e->count = kMaxRecvs + 1; }), ncclRemoteError);
}

}  // namespace
}  // namespace epyard::net::loopback
