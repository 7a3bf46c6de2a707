// An emulated verbs device for tests (libepyard_fakeverbs.so; never part of the plugin). It
// exports the ibv_* entry points the verbs transport loads and fills each context's ops table
// for the inline data-path calls (post_send, post_recv, post_srq_recv, poll_cq), so the
// transport runs unchanged on it with EPYARD_IB_VERBS_LIBRARY pointing here.
//
// The "fabric" is the file system plus UNIX stream sockets: every opened context listens on a
// socket of its own, then claims a LID by linking a file naming it to <dir>/lid.<n>, and
// serves that socket from one thread. RC QPs only. An RDMA write, send or read travels as a frame to the target
// context's thread, which checks the QP state and connection, the rkey, access rights and
// bounds exactly as a NIC would, places the data, takes a receive WQE where the opcode needs
// one (a send or a write with immediate; none posted = the frame waits, like an endless RNR
// retry), completes it on the receive CQ and acknowledges; the acknowledgement completes the
// send WQE (or fails it: remote access error, then the QP enters the error state and flushes).
// As on a NIC, the acknowledgement leaves before the receive completion can be polled: a
// responder that exits right after its last receive completes has acknowledged it.
// A peer process that goes away fails its QPs' outstanding WQEs with a retry-exceeded error.
// Tests raise async events (port down/up) with epyard_fakeverbs_port_event(), or, in a program
// that does not hold the context, epyard_fakeverbs_port_event_all(device). Limit: replies
// are written with blocking sends, so two contexts RDMA-reading more than a socket buffer
// from each other at once could stall; the tests read small amounts.
//
// Environment (tests only): EPYARD_FAKEVERBS_DEVICES, "name[:ib|:roce],..." (default
// "fakeib0:ib,fakeroce0:roce"); EPYARD_FAKEVERBS_DIR, the fabric directory (default
// /tmp/epyard-fakeverbs-<uid>).
#pragma once

#include <infiniband/verbs.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace epyard::fakeverbs {

struct Frame {
  enum Type : uint32_t { kWrite = 1, kSend, kReadReq, kAck, kReadResp };
  uint32_t type = 0;
  uint32_t src_lid = 0, src_qpn = 0, dst_qpn = 0;
  uint64_t seq = 0;  // the initiator's number for the WQE (echoed by kAck/kReadResp)
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;
  uint32_t imm = 0;
  uint32_t has_imm = 0;
  uint32_t status = 0;  // kAck / kReadResp: an ibv_wc_status
  uint64_t len = 0;     // payload bytes that follow (kReadReq: bytes asked for)
};

struct RecvWqe {
  uint64_t wr_id = 0;
  std::vector<ibv_sge> sges;
};

struct Context;

struct Cq {
  ibv_cq cq{};  // first: the verbs object handed out
  struct Entry {
    ibv_wc wc;
    uint64_t hold = 0;  // non-zero: held back until its acknowledgement is written
  };
  std::mutex mu;
  std::condition_variable shown;  // a held entry was released
  std::deque<Entry> entries;      // in completion order: polling stops at a held one
  uint64_t next_hold = 1;
  int held = 0;
};

struct Srq {
  ibv_srq srq{};
  std::deque<RecvWqe> wqes;  // under the context's mu
};

struct Mr {
  ibv_mr mr{};
  int access = 0;
};

struct PendingSend {  // a WQE waiting for its acknowledgement
  uint64_t wr_id = 0;
  ibv_wc_opcode opcode = IBV_WC_SEND;
  bool signaled = false;
  std::vector<ibv_sge> read_into;  // RDMA read: where the response goes
};

struct Inbound {  // a frame that needs a receive WQE and found none yet
  Frame frame;
  std::vector<uint8_t> payload;
  int reply_fd = -1;
};

struct Qp {  // all fields under the context's mu
  ibv_qp qp{};
  Context* ctx = nullptr;
  std::deque<RecvWqe> rq;
  uint32_t dest_lid = 0, dest_qpn = 0;
  uint64_t next_seq = 1;
  std::map<uint64_t, PendingSend> pending;
  std::deque<Inbound> waiting;
};

struct Context {
  ibv_context ctx{};  // first
  std::string dev_name;
  bool roce = false;
  uint32_t lid = 0;
  std::string sock_path, lid_file;
  int listen_fd = -1, wake[2] = {-1, -1}, async_pipe[2] = {-1, -1};
  std::thread service;
  bool stopping = false;

  // One lock for the context's tables and every QP / SRQ state (CQs have their own). Never
  // held while writing to a socket: frames are built under it and written after.
  std::mutex mu;
  std::map<uint32_t, Qp*> qps;
  std::map<uint32_t, Mr*> mrs;  // by rkey (= lkey)
  uint32_t next_qpn = 1, next_key = 0x100;
  std::map<uint32_t, int> out_fds;  // peer lid -> connected socket
  std::vector<int> in_fds;          // accepted sockets
  std::set<int> dead_fds;           // sockets whose peer went away
  std::map<int, std::unique_ptr<std::mutex>> fd_write_mu;
  bool port_active = true;
  std::deque<ibv_async_event> async_events;
};

// A frame to write once the context's lock is released.
struct Outgoing {
  int fd = -1;
  Frame frame;
  std::vector<uint8_t> payload;
  Cq* shows = nullptr;  // an acknowledgement: the receive completion it releases once written
  uint64_t hold = 0;
};

// fabric.cc
bool openFabric(Context* c, std::string* error);  // claims a LID, starts the service thread
void closeFabric(Context* c);
int peerSocketLocked(Context* c, uint32_t lid);        // connected socket to `lid`, or -1
void sendAll(Context* c, std::vector<Outgoing>* out);  // writes (caller does not hold c->mu)
void pushCompletion(Cq* cq, const ibv_wc& wc);
// Queues a completion that polling does not pass until showCompletion(cq, the returned hold).
uint64_t holdCompletion(Cq* cq, const ibv_wc& wc);
void showCompletion(Cq* cq, uint64_t hold);
// The QP fails: the WQE waiting for its acknowledgement complete with `status` (the first)
// and IBV_WC_WR_FLUSH_ERR, later ones are flushed as posted; the QP is in IBV_QPS_ERR.
void failQpLocked(Qp* q, ibv_wc_status status);
// Serves frames waiting on q for a receive WQE while there are WQEs (replies into *out).
void drainWaitingLocked(Qp* q, std::vector<Outgoing>* out);
// The QP leaves service (reset, error, destroyed): frames waiting on it fail at their senders
// as a responder that stopped answering would make them (retry exceeded).
void rejectWaitingLocked(Qp* q, std::vector<Outgoing>* out);

// verbs_api.cc (callers hold c->mu)
Mr* findMrLocked(Context* c, uint32_t key, uint64_t addr, uint64_t len, int need_access);
void queueAsyncEventLocked(Context* c, const ibv_async_event& e);

}  // namespace epyard::fakeverbs
