// The emulated verbs device, driven through the plugin's verbs loader as the transport will
// drive it: RC connection set-up, RDMA write with and without immediate, send/receive, RDMA
// read, the errors a NIC reports (bad rkey, short receive buffer, a peer that is gone), a
// write with immediate that waits for its receive WQE, and port events.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "verbs/loader.h"

namespace epyard::net::verbs {
namespace {

// The fake's test hook, from the copy the loader opened.
int portEvent(ibv_context* ctx, int active) {
  void* lib = dlopen(EPYARD_FAKEVERBS_PATH, RTLD_NOW | RTLD_NOLOAD);
  auto fn =
      lib ? reinterpret_cast<int (*)(ibv_context*, int)>(dlsym(lib, "epyard_fakeverbs_port_event"))
          : nullptr;
  return fn ? fn(ctx, active) : -1;
}

const VerbsApi* api() {
  std::string why;
  const VerbsApi* a = loadVerbs(EPYARD_FAKEVERBS_PATH, &why);
  EXPECT_NE(a, nullptr) << why;
  return a;
}

constexpr int kAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

struct Side {
  const VerbsApi* v = api();
  ibv_context* ctx = nullptr;
  ibv_pd* pd = nullptr;
  ibv_cq* cq = nullptr;
  ibv_srq* srq = nullptr;
  ibv_qp* qp = nullptr;
  ibv_mr* mr = nullptr;
  std::vector<uint8_t> buf = std::vector<uint8_t>(1 << 16);
  uint32_t lid = 0;

  explicit Side(bool with_srq, int device = 0) {
    int n = 0;
    ibv_device** list = v->get_device_list(&n);
    EXPECT_GT(n, device);
    ctx = v->open_device(list[device]);
    v->free_device_list(list);
    EXPECT_NE(ctx, nullptr);
    pd = v->alloc_pd(ctx);
    cq = v->create_cq(ctx, 256, nullptr, nullptr, 0);
    if (with_srq) {
      ibv_srq_init_attr sa{};
      sa.attr.max_wr = 64;
      sa.attr.max_sge = 1;
      srq = v->create_srq(pd, &sa);
    }
    ibv_qp_init_attr qa{};
    qa.send_cq = cq;
    qa.recv_cq = cq;
    qa.srq = srq;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = qa.cap.max_recv_wr = 64;
    qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
    qp = v->create_qp(pd, &qa);
    EXPECT_NE(qp, nullptr);
    mr = v->reg_mr(pd, buf.data(), buf.size(), kAccess);
    ibv_port_attr pa{};
    EXPECT_EQ(v->query_port(ctx, 1, &pa), 0);
    ibv_gid gid{};
    EXPECT_EQ(v->query_gid(ctx, 1, 0, &gid), 0);
    memcpy(&lid, gid.raw + 12, 4);
  }
  ~Side() {
    v->destroy_qp(qp);
    if (srq) v->destroy_srq(srq);
    v->dereg_mr(mr);
    v->destroy_cq(cq);
    v->dealloc_pd(pd);
    v->close_device(ctx);
  }
  int connect(uint32_t peer_lid, uint32_t peer_qpn) {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_INIT;
    a.port_num = 1;
    a.qp_access_flags = kAccess;
    if (int rc = v->modify_qp(qp, &a,
                              IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
      return rc;
    a = {};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = IBV_MTU_4096;
    a.dest_qp_num = peer_qpn;
    a.ah_attr.is_global = 1;  // by GID, as RoCE needs (works on IB too)
    memcpy(a.ah_attr.grh.dgid.raw + 12, &peer_lid, 4);
    a.ah_attr.port_num = 1;
    if (int rc = v->modify_qp(qp, &a,
                              IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
      return rc;
    a = {};
    a.qp_state = IBV_QPS_RTS;
    return v->modify_qp(qp, &a,
                        IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                            IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC);
  }
  int postWrite(uint64_t off, uint32_t len, uint64_t raddr, uint32_t rkey, bool imm, uint64_t id,
                ibv_wr_opcode op = IBV_WR_RDMA_WRITE) {
    ibv_sge sge{reinterpret_cast<uint64_t>(buf.data() + off), len, mr->lkey};
    ibv_send_wr wr{}, *bad = nullptr;
    wr.wr_id = id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = imm && op == IBV_WR_RDMA_WRITE ? IBV_WR_RDMA_WRITE_WITH_IMM : op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = 0x1234abcd;
    wr.wr.rdma.remote_addr = raddr;
    wr.wr.rdma.rkey = rkey;
    return ibv_post_send(qp, &wr, &bad);
  }
  int postRecv(uint64_t off, uint32_t len, uint64_t id) {
    ibv_sge sge{reinterpret_cast<uint64_t>(buf.data() + off), len, mr->lkey};
    ibv_recv_wr wr{}, *bad = nullptr;
    wr.wr_id = id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    return srq ? ibv_post_srq_recv(srq, &wr, &bad) : ibv_post_recv(qp, &wr, &bad);
  }
  bool waitCq(ibv_wc* wc, int seconds = 5) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (ibv_poll_cq(cq, 1, wc) == 1) return true;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return false;
  }
  uint64_t addr(uint64_t off) { return reinterpret_cast<uint64_t>(buf.data() + off); }
};

struct Pair {
  Side a, b;
  explicit Pair(bool srq = true) : a(srq), b(srq, 1) {
    EXPECT_EQ(a.connect(b.lid, b.qp->qp_num), 0);
    EXPECT_EQ(b.connect(a.lid, a.qp->qp_num), 0);
  }
};

TEST(FakeVerbs, WriteWithImmediateLandsAndCompletesBothSides) {
  Pair p;
  for (int i = 0; i < 4096; ++i) p.a.buf[i] = static_cast<uint8_t>(i * 7);
  ASSERT_EQ(p.b.postRecv(0, 0, 77), 0);
  ASSERT_EQ(p.a.postWrite(0, 4096, p.b.addr(8192), p.b.mr->rkey, true, 5), 0);
  ibv_wc wc{};
  ASSERT_TRUE(p.b.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(wc.opcode, IBV_WC_RECV_RDMA_WITH_IMM);
  EXPECT_EQ(wc.imm_data, 0x1234abcdu);
  EXPECT_EQ(wc.byte_len, 4096u);
  EXPECT_EQ(wc.wr_id, 77u);
  EXPECT_EQ(memcmp(p.a.buf.data(), p.b.buf.data() + 8192, 4096), 0);
  ASSERT_TRUE(p.a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(wc.opcode, IBV_WC_RDMA_WRITE);
  EXPECT_EQ(wc.wr_id, 5u);
}

TEST(FakeVerbs, WriteWithImmediateWaitsForAReceiveWqe) {
  Pair p;
  ASSERT_EQ(p.a.postWrite(0, 64, p.b.addr(0), p.b.mr->rkey, true, 1), 0);
  ibv_wc wc{};
  EXPECT_FALSE(p.b.waitCq(&wc, 1));  // no receive WQE yet: nothing completes
  EXPECT_FALSE(p.a.waitCq(&wc, 0));
  ASSERT_EQ(p.b.postRecv(0, 0, 9), 0);
  ASSERT_TRUE(p.b.waitCq(&wc));
  EXPECT_EQ(wc.wr_id, 9u);
  ASSERT_TRUE(p.a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
}

TEST(FakeVerbs, AWriteWaitingOnAQpThatFailsFailsAtItsSender) {
  Pair p;
  ASSERT_EQ(p.a.postWrite(0, 64, p.b.addr(0), p.b.mr->rkey, true, 1), 0);
  ibv_wc wc{};
  EXPECT_FALSE(p.a.waitCq(&wc, 1));  // waiting at b for a receive WQE
  ibv_qp_attr err{};
  err.qp_state = IBV_QPS_ERR;
  ASSERT_EQ(p.b.v->modify_qp(p.b.qp, &err, IBV_QP_STATE), 0);
  ASSERT_TRUE(p.a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_RETRY_EXC_ERR);
  EXPECT_EQ(wc.wr_id, 1u);
}

TEST(FakeVerbs, BadRkeyFailsTheWqeAndFlushesTheQp) {
  Pair p;
  ASSERT_EQ(p.a.postWrite(0, 64, p.b.addr(0), p.b.mr->rkey + 1000, false, 1), 0);
  ibv_wc wc{};
  ASSERT_TRUE(p.a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_REM_ACCESS_ERR);
  EXPECT_EQ(wc.wr_id, 1u);
  ASSERT_EQ(p.a.postWrite(0, 64, p.b.addr(0), p.b.mr->rkey, false, 2), 0);
  ASSERT_TRUE(p.a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_WR_FLUSH_ERR);
  EXPECT_EQ(wc.wr_id, 2u);
  // Out of the region's bounds is an access error too.
  Pair q;
  ASSERT_EQ(q.a.postWrite(0, 64, q.b.addr(q.b.buf.size() - 32), q.b.mr->rkey, false, 3), 0);
  ASSERT_TRUE(q.a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_REM_ACCESS_ERR);
}

TEST(FakeVerbs, SendReceiveAndShortReceiveBuffer) {
  Pair p(/*srq=*/false);
  memcpy(p.a.buf.data(), "hello, fabric", 14);
  ASSERT_EQ(p.b.postRecv(100, 64, 1), 0);
  ASSERT_EQ(p.a.postWrite(0, 14, 0, 0, false, 2, IBV_WR_SEND), 0);
  ibv_wc wc{};
  ASSERT_TRUE(p.b.waitCq(&wc));
  EXPECT_EQ(wc.opcode, IBV_WC_RECV);
  EXPECT_EQ(wc.byte_len, 14u);
  EXPECT_STREQ(reinterpret_cast<char*>(p.b.buf.data() + 100), "hello, fabric");
  ASSERT_TRUE(p.a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(wc.opcode, IBV_WC_SEND);

  ASSERT_EQ(p.b.postRecv(0, 8, 3), 0);
  ASSERT_EQ(p.a.postWrite(0, 14, 0, 0, false, 4, IBV_WR_SEND), 0);
  ASSERT_TRUE(p.b.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_LOC_LEN_ERR);
  ASSERT_TRUE(p.a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_REM_INV_REQ_ERR);
}

TEST(FakeVerbs, RdmaRead) {
  Pair p;
  for (int i = 0; i < 256; ++i) p.b.buf[1024 + i] = static_cast<uint8_t>(255 - i);
  ASSERT_EQ(p.a.postWrite(0, 256, p.b.addr(1024), p.b.mr->rkey, false, 8, IBV_WR_RDMA_READ), 0);
  ibv_wc wc{};
  ASSERT_TRUE(p.a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(wc.opcode, IBV_WC_RDMA_READ);
  EXPECT_EQ(memcmp(p.a.buf.data(), p.b.buf.data() + 1024, 256), 0);
}

// Relaxed ordering is an optional access flag: only ibv_reg_mr_iova2 takes it (the transport
// registers through it when the library has it); iova must be the address here.
TEST(FakeVerbs, OptionalAccessFlagsNeedRegMrIova2) {
  Side s(false);
  ASSERT_NE(s.v->reg_mr_iova2, nullptr);
  std::vector<uint8_t> mem(4096);
  EXPECT_EQ(s.v->reg_mr(s.pd, mem.data(), mem.size(), kAccess | IBV_ACCESS_RELAXED_ORDERING), nullptr);
  const uint64_t iova = reinterpret_cast<uint64_t>(mem.data());
  ibv_mr* mr = s.v->reg_mr_iova2(s.pd, mem.data(), mem.size(), iova, kAccess | IBV_ACCESS_RELAXED_ORDERING);
  ASSERT_NE(mr, nullptr);
  EXPECT_EQ(s.v->dereg_mr(mr), 0);
  EXPECT_EQ(s.v->reg_mr_iova2(s.pd, mem.data(), mem.size(), iova + 64, kAccess), nullptr);
}

// A process that exits without closing its device (as the plugin does) leaves its LID claimed;
// the next context to open finds the owner dead and takes the LID over. A private fabric folder
// keeps other tests' contexts out of the LID numbering.
TEST(FakeVerbs, ALidOfADeadProcessIsReclaimed) {
  char dir[] = "/tmp/epyard-fakeverbs-reclaim-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const char* before = getenv("EPYARD_FAKEVERBS_DIR");
  const std::string saved = before != nullptr ? before : "";
  setenv("EPYARD_FAKEVERBS_DIR", dir, 1);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  if (child == 0) {
    Side s(false);
    const ssize_t w = write(fds[1], &s.lid, sizeof(s.lid));
    _exit(w == sizeof(s.lid) ? 0 : 1);  // no close: the LID file stays behind
  }
  uint32_t child_lid = 0;
  ASSERT_EQ(read(fds[0], &child_lid, sizeof(child_lid)), static_cast<ssize_t>(sizeof(child_lid)));
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(access((std::string(dir) + "/lid." + std::to_string(child_lid)).c_str(), F_OK), 0);
  {
    Side s(false);
    EXPECT_EQ(s.lid, child_lid);  // the lowest LID, freed from the dead owner
  }
  close(fds[0]);
  close(fds[1]);
  if (saved.empty()) unsetenv("EPYARD_FAKEVERBS_DIR"); else setenv("EPYARD_FAKEVERBS_DIR", saved.c_str(), 1);
  std::string cmd = std::string("rm -rf ") + dir;
  EXPECT_EQ(system(cmd.c_str()), 0);
}

TEST(FakeVerbs, QpStateMachineRefusesSkippedSteps) {
  Side s(false);
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTS;
  EXPECT_EQ(s.v->modify_qp(s.qp, &a, IBV_QP_STATE), EINVAL);
  EXPECT_EQ(s.postWrite(0, 8, 0, 0, false, 1), EINVAL);  // not connected: refused at post
}

TEST(FakeVerbs, PortEventsReachTheAsyncQueue) {
  Side s(false);
  ASSERT_EQ(portEvent(s.ctx, 0), 0);
  ibv_async_event e{};
  ASSERT_EQ(s.v->get_async_event(s.ctx, &e), 0);
  EXPECT_EQ(e.event_type, IBV_EVENT_PORT_ERR);
  EXPECT_EQ(e.element.port_num, 1);
  s.v->ack_async_event(&e);
  ibv_port_attr pa{};
  ASSERT_EQ(s.v->query_port(s.ctx, 1, &pa), 0);
  EXPECT_EQ(pa.state, IBV_PORT_DOWN);
  ASSERT_EQ(portEvent(s.ctx, 1), 0);
  ASSERT_EQ(s.v->get_async_event(s.ctx, &e), 0);
  EXPECT_EQ(e.event_type, IBV_EVENT_PORT_ACTIVE);
}

// The forked responder's half: sends its (lid, qpn, rkey) and buffer address, reads the
// parent's (lid, qpn), connects, posts one receive and says "posted".
bool connectToParent(Side& b, int to_parent, int from_parent) {
  uint32_t info[4] = {b.lid, b.qp->qp_num, b.mr->rkey, 0};
  uint64_t addr = b.addr(0);
  uint32_t peer[2];
  if (write(to_parent, info, sizeof info) != sizeof info || write(to_parent, &addr, 8) != 8 ||
      read(from_parent, peer, sizeof peer) != sizeof peer)
    return false;
  b.connect(peer[0], peer[1]);
  b.postRecv(0, 0, 1);
  return write(to_parent, "r", 1) == 1;
}

// The parent's half of the handshake with a forked responder: reads its (lid, qpn, rkey) and
// buffer address, sends our (lid, qpn), waits for "posted", and connects to it.
::testing::AssertionResult connectToChild(Side& a, int from_child, int to_child, uint32_t info[4],
                                          uint64_t* addr) {
  uint32_t me[2] = {a.lid, a.qp->qp_num};
  char ready;
  if (read(from_child, info, 4 * sizeof(uint32_t)) != static_cast<ssize_t>(4 * sizeof(uint32_t)) ||
      read(from_child, addr, 8) != 8 || write(to_child, me, sizeof me) != static_cast<ssize_t>(sizeof me) ||
      read(from_child, &ready, 1) != 1)
    return ::testing::AssertionFailure() << "the handshake with the child broke";
  if (a.connect(info[0], info[1]) != 0) return ::testing::AssertionFailure() << "connect failed";
  return ::testing::AssertionSuccess();
}

TEST(FakeVerbs, APeerProcessThatDiesFailsOutstandingWork) {
  int to_parent[2], to_child[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(to_child), 0);
  pid_t pid = fork();
  if (pid == 0) {  // the peer: a QP and a region, then it dies without closing anything
    Side b(true, 1);
    if (!connectToParent(b, to_parent[1], to_child[0])) _exit(1);
    char go;
    if (read(to_child[0], &go, 1) != 1) _exit(1);
    _exit(0);
  }
  Side a(true);
  uint32_t info[4];
  uint64_t addr;
  ASSERT_TRUE(connectToChild(a, to_parent[0], to_child[1], info, &addr));
  ASSERT_EQ(a.postWrite(0, 64, addr, info[2], true, 1), 0);
  ibv_wc wc{};
  ASSERT_TRUE(a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  ASSERT_EQ(write(to_child[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_EQ(a.postWrite(0, 64, addr, info[2], false, 2), 0);
  ASSERT_TRUE(a.waitCq(&wc));
  EXPECT_EQ(wc.status, IBV_WC_RETRY_EXC_ERR);
  EXPECT_EQ(wc.wr_id, 2u);
}

// A NIC acknowledges a request as it executes it: once the responder's receive completion is
// visible, the acknowledgement is on its way, and the requester's WQE succeeds even if the
// responder exits at once without closing anything (as a plugin process does after its last
// receive). Rounds, since exiting before the acknowledgement left was a narrow race.
TEST(FakeVerbs, AResponderThatExitsAfterItsReceiveCompletesHasAcknowledged) {
  for (int round = 0; round < 40; ++round) {
    int to_parent[2], to_child[2];
    ASSERT_EQ(pipe(to_parent), 0);
    ASSERT_EQ(pipe(to_child), 0);
    pid_t pid = fork();
    if (pid == 0) {  // the responder: exits the moment its receive completes
      Side b(true, 1);
      if (!connectToParent(b, to_parent[1], to_child[0])) _exit(1);
      ibv_wc wc{};
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (ibv_poll_cq(b.cq, 1, &wc) == 0)
        if (std::chrono::steady_clock::now() > give_up) _exit(2);
      _exit(wc.status == IBV_WC_SUCCESS ? 0 : 1);
    }
    {
      Side a(true);
      uint32_t info[4];
      uint64_t addr;
      ASSERT_TRUE(connectToChild(a, to_parent[0], to_child[1], info, &addr));
      ASSERT_EQ(a.postWrite(0, 64, addr, info[2], true, 1), 0);
      ibv_wc wc{};
      ASSERT_TRUE(a.waitCq(&wc));
      EXPECT_EQ(wc.status, IBV_WC_SUCCESS) << "round " << round << ": "
                                           << a.v->wc_status_str(wc.status);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) close(fd);
  }
}

}  // namespace
}  // namespace epyard::net::verbs
