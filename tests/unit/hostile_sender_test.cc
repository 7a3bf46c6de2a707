// A sender that lies (review finding 11): through SendComm's tamper seam, the writes a real
// sender makes are changed the way a faulty or hostile peer could: sizes beyond what was
// posted, records naming impossible segment counts, segments that never come. The receive
// must fail with an error, within EPYARD_NET_TIMEOUT_MS, never complete with a size larger
// than it posted and never hang.
#include <cstring>
#include <vector>

#include "engine/comm.h"
#include "engine_loopback.h"

namespace epyard::net::loopback {
namespace {

class HostileSender : public EngineLoopback {
 protected:
  void SetUp() override {
    start(1000, 4096);  // 64 KiB goes as a segment and a record
    if (IsSkipped()) return;
    ASSERT_TRUE(connectPair(&send_, &recv_, &listen_));
  }
  void TearDown() override {
    if (send_ != nullptr) netCloseSend(send_);
    if (recv_ != nullptr) netCloseRecv(recv_);
    if (listen_ != nullptr) netCloseListen(listen_);
    EngineLoopback::TearDown();
  }

  struct Outcome {
    ncclResult_t result;
    int done;
    int size;
    double ms;
  };
  // Posts a `posted`-byte receive, sends `sent` bytes through `tamper`, and tests the receive
  // for up to 5 s.
  Outcome exchange(size_t posted, size_t sent, SendTamper tamper) {
    std::vector<char> in(posted, 0), out(sent, 'x');
    void *rmr = nullptr, *smr = nullptr;
    EXPECT_EQ(netRegMr(recv_, in.data(), in.size(), NCCL_PTR_HOST, -1, 0, &rmr), ncclSuccess);
    EXPECT_EQ(netRegMr(send_, out.data(), out.size(), NCCL_PTR_HOST, -1, 0, &smr), ncclSuccess);
    sendCommForTesting(send_)->setTamper(std::move(tamper));
    void* data = in.data();
    int tag = 3;
    void *rreq = nullptr, *sreq = nullptr;
    EXPECT_EQ(netIrecv(recv_, 1, &data, &posted, &tag, &rmr, &rreq), ncclSuccess);
    for (auto start = Clock::now(); sreq == nullptr && Clock::now() - start < std::chrono::seconds(5);)
      EXPECT_EQ(netIsend(send_, out.data(), sent, tag, smr, &sreq), ncclSuccess);
    EXPECT_NE(sreq, nullptr) << "the send was never accepted";
    Outcome o{};
    auto start = Clock::now();
    o.result = testUntil(rreq, &o.done, &o.size, std::chrono::seconds(5));
    o.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return o;
  }

  void expectRefused(const Outcome& o, size_t posted) {
    EXPECT_NE(o.result, ncclSuccess) << "the receive completed (done " << o.done << ", " << o.size
                                     << " bytes of " << posted << " posted) or hung";
    if (o.done) {
      EXPECT_LE(static_cast<size_t>(o.size), posted);
    }
    EXPECT_LT(o.ms, 4000) << "the error came after " << o.ms << " ms (timeout 1000 ms)";
  }

  void* send_ = nullptr;
  void* recv_ = nullptr;
  void* listen_ = nullptr;
};

TEST_F(HostileSender, AnHonestSenderStillWorks) {
  Outcome small = exchange(4096, 100, [](Request*, Record*) {});
  EXPECT_EQ(small.result, ncclSuccess);
  EXPECT_EQ(small.done, 1);
  EXPECT_EQ(small.size, 100);
  Outcome striped = exchange(65536, 65536, [](Request*, Record* rec) { EXPECT_NE(rec, nullptr); });
  EXPECT_EQ(striped.result, ncclSuccess);
  EXPECT_EQ(striped.size, 65536);
}

TEST_F(HostileSender, ASizedWriteClaimingMoreThanWasPostedIsAnError) {
  Outcome o = exchange(4096, 100, [](Request* req, Record*) {
    ASSERT_EQ(req->num_writes, 1);
    Imm d = decodeImm(req->writes[0].imm);
    req->writes[0].len = 0;
    req->writes[0].imm = encodeImm(ImmKind::kSized, d.slot, d.buffer, 2u << 20);
  });
  expectRefused(o, 4096);
}

TEST_F(HostileSender, ARecordClaimingMoreThanWasPostedIsAnError) {
  Outcome o = exchange(65536, 65536, [](Request*, Record* rec) { rec->size = uint64_t{1} << 32; });
  expectRefused(o, 65536);
}

TEST_F(HostileSender, ARecordNamingMoreSegmentsThanRailsIsAnError) {
  Outcome o = exchange(65536, 65536, [](Request*, Record* rec) { rec->segments = 3; });
  expectRefused(o, 65536);
}

TEST_F(HostileSender, ARecordOfDataWithoutSegmentsIsAnError) {
  // The record alone, marking the buffer done before any data landed.
  Outcome o = exchange(65536, 65536, [](Request* req, Record* rec) {
    rec->segments = 0;
    req->writes[0] = req->writes[req->num_writes - 1];
    req->num_writes = 1;
  });
  expectRefused(o, 65536);
}

TEST_F(HostileSender, SegmentsThatNeverComeFailWithinTheTimeout) {
  Outcome o = exchange(65536, 65536, [](Request* req, Record*) {
    req->writes[0] = req->writes[req->num_writes - 1];  // keep the record, drop the segment
    req->num_writes = 1;
  });
  expectRefused(o, 65536);
}

TEST_F(HostileSender, ASegmentForASizedMessageIsAnError) {
  Outcome o = exchange(4096, 100, [](Request* req, Record*) {
    Imm d = decodeImm(req->writes[0].imm);
    req->writes[1] = req->writes[0];
    req->writes[1].imm = encodeImm(ImmKind::kSegment, d.slot, d.buffer, 0);
    req->writes[0].imm = encodeImm(ImmKind::kSegment, d.slot, d.buffer, 0);
    req->num_writes = 2;  // two segments and no record: more segments than the one rail
  });
  expectRefused(o, 4096);
}

}  // namespace
}  // namespace epyard::net::loopback
