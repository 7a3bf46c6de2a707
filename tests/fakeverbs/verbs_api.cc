// The ibv_* entry points of the emulated device, and its data-path ops (see fake_verbs.h).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>

#include "fake_verbs.h"

// verbs.h turns these into macros over other names; the fake exports the real names.
#undef ibv_get_device_list
#undef ibv_reg_mr
#undef ibv_query_port

namespace epyard::fakeverbs {

Mr* findMrLocked(Context* c, uint32_t key, uint64_t addr, uint64_t len, int need_access) {
  auto it = c->mrs.find(key);
  if (it == c->mrs.end()) return nullptr;
  Mr* m = it->second;
  const uint64_t base = reinterpret_cast<uint64_t>(m->mr.addr);
  if (addr < base || addr + len > base + m->mr.length || addr + len < addr) return nullptr;
  if (need_access != IBV_ACCESS_LOCAL_WRITE && (m->access & need_access) != need_access)
    return nullptr;
  return m;
}

void queueAsyncEventLocked(Context* c, const ibv_async_event& e) {
  c->async_events.push_back(e);
  if (write(c->async_pipe[1], "e", 1) < 0) {
  }
}

namespace {

struct DeviceList {
  std::vector<ibv_device> devices;
  std::vector<bool> roce;
  DeviceList() {
    const char* env = getenv("EPYARD_FAKEVERBS_DEVICES");
    std::stringstream in(env != nullptr && *env != '\0' ? env : "fakeib0:ib,fakeroce0:roce");
    std::string item;
    while (std::getline(in, item, ',')) {
      if (item.empty()) continue;
      const size_t colon = item.find(':');
      ibv_device d{};
      const std::string name = item.substr(0, colon);
      strncpy(d.name, name.c_str(), sizeof(d.name) - 1);
      strncpy(d.dev_name, ("uverbs_" + name).c_str(), sizeof(d.dev_name) - 1);
      strncpy(d.ibdev_path, ("/sys/class/infiniband/" + name).c_str(), sizeof(d.ibdev_path) - 1);
      d.node_type = IBV_NODE_CA;
      d.transport_type = IBV_TRANSPORT_IB;
      devices.push_back(d);
      roce.push_back(colon != std::string::npos && item.substr(colon + 1) == "roce");
    }
  }
};

DeviceList& deviceList() {
  static DeviceList list;
  return list;
}

Context* ctxOf(ibv_context* c) { return reinterpret_cast<Context*>(c); }
Qp* qpOf(ibv_qp* q) { return reinterpret_cast<Qp*>(q); }

// The LID a destination address names: the DLID, or (RoCE, global) the GID's last 4 bytes.
uint32_t destLid(const ibv_ah_attr& ah) {
  if (!ah.is_global) return ah.dlid;
  uint32_t lid = 0;
  memcpy(&lid, ah.grh.dgid.raw + 12, 4);
  return lid;
}

bool gatherLocked(Context* c, const ibv_send_wr* wr, std::vector<uint8_t>* out) {
  for (int i = 0; i < wr->num_sge; ++i) {
    const ibv_sge& s = wr->sg_list[i];
    if (!(wr->send_flags & IBV_SEND_INLINE) &&
        findMrLocked(c, s.lkey, s.addr, s.length, IBV_ACCESS_LOCAL_WRITE) == nullptr)
      return false;
    const uint8_t* p = reinterpret_cast<const uint8_t*>(s.addr);
    out->insert(out->end(), p, p + s.length);
  }
  return true;
}

void completeNow(Qp* q, uint64_t wr_id, ibv_wc_opcode op, ibv_wc_status status) {
  ibv_wc wc{};
  wc.wr_id = wr_id;
  wc.qp_num = q->qp.qp_num;
  wc.opcode = op;
  wc.status = status;
  pushCompletion(reinterpret_cast<Cq*>(q->qp.send_cq), wc);
}

// Runs `each` on the work requests of a chain under the context's lock, stopping at the first
// it refuses (an errno; that WR goes to *bad), then `after`; the frames they produced are
// written once the lock is released.
template <class Wr, class Each, class After>
int postChain(Context* c, Wr* wr, Wr** bad, Each each, After after) {
  std::vector<Outgoing> out;
  int rc = 0;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    for (; wr != nullptr; wr = wr->next)
      if ((rc = each(wr, &out)) != 0) break;
    after(&out);
  }
  if (rc != 0 && bad != nullptr) *bad = wr;
  sendAll(c, &out);
  return rc;
}

int postSend(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad) {
  Qp* q = qpOf(qp);
  Context* c = q->ctx;
  auto each = [&](ibv_send_wr* wr, std::vector<Outgoing>* out) -> int {
    if (q->qp.state != IBV_QPS_RTS && q->qp.state != IBV_QPS_ERR) return EINVAL;
    Outgoing o;
    ibv_wc_opcode wc_op = IBV_WC_SEND;
    PendingSend p;
    p.wr_id = wr->wr_id;
    p.signaled = (wr->send_flags & IBV_SEND_SIGNALED) != 0;
    switch (wr->opcode) {
      case IBV_WR_RDMA_WRITE:
      case IBV_WR_RDMA_WRITE_WITH_IMM:
        o.frame.type = Frame::kWrite;
        wc_op = IBV_WC_RDMA_WRITE;
        break;
      case IBV_WR_SEND:
      case IBV_WR_SEND_WITH_IMM:
        o.frame.type = Frame::kSend;
        wc_op = IBV_WC_SEND;
        break;
      case IBV_WR_RDMA_READ:
        o.frame.type = Frame::kReadReq;
        wc_op = IBV_WC_RDMA_READ;
        break;
      default:
        return EINVAL;
    }
    if (q->qp.state == IBV_QPS_ERR) {  // posted to a failed QP: flushed
      completeNow(q, wr->wr_id, wc_op, IBV_WC_WR_FLUSH_ERR);
      return 0;
    }
    p.opcode = wc_op;
    o.frame.has_imm =
        wr->opcode == IBV_WR_RDMA_WRITE_WITH_IMM || wr->opcode == IBV_WR_SEND_WITH_IMM;
    o.frame.imm = wr->imm_data;
    if (o.frame.type != Frame::kSend) {
      o.frame.remote_addr = wr->wr.rdma.remote_addr;
      o.frame.rkey = wr->wr.rdma.rkey;
    }
    bool local_ok = true;
    if (o.frame.type == Frame::kReadReq) {
      for (int i = 0; i < wr->num_sge; ++i) {
        p.read_into.push_back(wr->sg_list[i]);
        o.frame.len += wr->sg_list[i].length;
      }
    } else {
      local_ok = gatherLocked(c, wr, &o.payload);
      o.frame.len = o.payload.size();
    }
    o.fd = c->port_active ? peerSocketLocked(c, q->dest_lid) : -1;
    if (!local_ok || o.fd < 0) {
      completeNow(q, wr->wr_id, wc_op, local_ok ? IBV_WC_RETRY_EXC_ERR : IBV_WC_LOC_PROT_ERR);
      failQpLocked(q, IBV_WC_WR_FLUSH_ERR);
      return 0;
    }
    o.frame.src_qpn = q->qp.qp_num;
    o.frame.dst_qpn = q->dest_qpn;
    o.frame.seq = q->next_seq++;
    q->pending[o.frame.seq] = std::move(p);
    out->push_back(std::move(o));
    return 0;
  };
  return postChain(c, wr, bad, each, [](std::vector<Outgoing>*) {});
}

bool validRecvLocked(Context* c, const ibv_recv_wr* wr, RecvWqe* w) {
  w->wr_id = wr->wr_id;
  for (int i = 0; i < wr->num_sge; ++i) {
    if (findMrLocked(c, wr->sg_list[i].lkey, wr->sg_list[i].addr, wr->sg_list[i].length,
                     IBV_ACCESS_LOCAL_WRITE) == nullptr)
      return false;
    w->sges.push_back(wr->sg_list[i]);
  }
  return true;
}

int postRecv(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  Qp* q = qpOf(qp);
  auto each = [&](ibv_recv_wr* wr, std::vector<Outgoing>*) -> int {
    RecvWqe w;
    if (q->qp.srq != nullptr || q->qp.state == IBV_QPS_RESET || !validRecvLocked(q->ctx, wr, &w))
      return EINVAL;
    q->rq.push_back(std::move(w));
    if (q->qp.state == IBV_QPS_ERR) failQpLocked(q, IBV_WC_WR_FLUSH_ERR);
    return 0;
  };
  return postChain(q->ctx, wr, bad, each,
                   [&](std::vector<Outgoing>* out) { drainWaitingLocked(q, out); });
}

int postSrqRecv(ibv_srq* srq, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  Srq* s = reinterpret_cast<Srq*>(srq);
  Context* c = ctxOf(srq->context);
  auto each = [&](ibv_recv_wr* wr, std::vector<Outgoing>*) -> int {
    RecvWqe w;
    if (!validRecvLocked(c, wr, &w)) return EINVAL;
    s->wqes.push_back(std::move(w));
    return 0;
  };
  return postChain(c, wr, bad, each, [&](std::vector<Outgoing>* out) {
    for (auto& [qpn, q] : c->qps)
      if (q->qp.srq == srq) drainWaitingLocked(q, out);
  });
}

int pollCq(ibv_cq* cq, int n, ibv_wc* wc) {
  Cq* q = reinterpret_cast<Cq*>(cq);
  std::lock_guard<std::mutex> lock(q->mu);
  int got = 0;
  while (got < n && !q->entries.empty() && q->entries.front().hold == 0) {
    wc[got++] = q->entries.front().wc;
    q->entries.pop_front();
  }
  return got;
}

int reqNotifyCq(ibv_cq*, int) { return 0; }

// Allowed state changes and the attributes each must carry (as a NIC's driver checks them).
bool transitionOk(ibv_qp_state from, ibv_qp_state to, int mask) {
  if (to == IBV_QPS_RESET || to == IBV_QPS_ERR) return true;
  const int av = IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN;
  const int rts = IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY;
  if (from == IBV_QPS_RESET && to == IBV_QPS_INIT)
    return (mask & (IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) == (IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
  if (from == IBV_QPS_INIT && to == IBV_QPS_INIT) return true;
  if (from == IBV_QPS_INIT && to == IBV_QPS_RTR) return (mask & av) == av;
  if (from == IBV_QPS_RTR && to == IBV_QPS_RTS) return (mask & rts) == rts;
  if (from == IBV_QPS_RTS && to == IBV_QPS_RTS) return true;
  return false;
}

}  // namespace
}  // namespace epyard::fakeverbs

using namespace epyard::fakeverbs;

namespace {

// Every context open in this process (for epyard_fakeverbs_port_event_all).
std::mutex& openMutex() {
  static std::mutex m;
  return m;
}
std::set<Context*>& openContexts() {
  static std::set<Context*> s;
  return s;
}

}  // namespace

extern "C" {

ibv_device** ibv_get_device_list(int* num) {
  DeviceList& l = deviceList();
  auto** out = static_cast<ibv_device**>(calloc(l.devices.size() + 1, sizeof(ibv_device*)));
  for (size_t i = 0; i < l.devices.size(); ++i) out[i] = &l.devices[i];
  if (num != nullptr) *num = static_cast<int>(l.devices.size());
  return out;
}

void ibv_free_device_list(ibv_device** list) { free(list); }

const char* ibv_get_device_name(ibv_device* d) { return d->name; }

ibv_context* ibv_open_device(ibv_device* d) {
  DeviceList& l = deviceList();
  auto* c = new Context;
  c->dev_name = d->name;
  c->roce = l.roce[static_cast<size_t>(d - l.devices.data())];
  c->ctx.device = d;
  c->ctx.ops.poll_cq = pollCq;
  c->ctx.ops.req_notify_cq = reqNotifyCq;
  c->ctx.ops.post_send = postSend;
  c->ctx.ops.post_recv = postRecv;
  c->ctx.ops.post_srq_recv = postSrqRecv;
  c->ctx.cmd_fd = -1;
  c->ctx.num_comp_vectors = 1;
  pthread_mutex_init(&c->ctx.mutex, nullptr);
  std::string error;
  if (pipe2(c->async_pipe, O_CLOEXEC) != 0 || !openFabric(c, &error)) {
    closeFabric(c);
    for (int fd : c->async_pipe)
      if (fd >= 0) close(fd);
    delete c;
    errno = ENODEV;
    return nullptr;
  }
  c->ctx.async_fd = c->async_pipe[0];
  std::lock_guard<std::mutex> lock(openMutex());
  openContexts().insert(c);
  return &c->ctx;
}

int ibv_close_device(ibv_context* ctx) {
  Context* c = ctxOf(ctx);
  {
    std::lock_guard<std::mutex> lock(openMutex());
    openContexts().erase(c);
  }
  closeFabric(c);
  close(c->async_pipe[0]);
  close(c->async_pipe[1]);
  delete c;
  return 0;
}

int ibv_query_device(ibv_context* ctx, ibv_device_attr* a) {
  memset(a, 0, sizeof *a);
  strncpy(a->fw_ver, "fake-1.0", sizeof(a->fw_ver) - 1);
  uint64_t guid = 0x0002c90300000000ull;
  for (const char* p = ctxOf(ctx)->dev_name.c_str(); *p; ++p)
    guid = guid * 131 + static_cast<uint8_t>(*p);
  a->node_guid = guid;
  a->sys_image_guid = guid;
  a->max_mr_size = 1ull << 40;
  a->vendor_id = 0x02c9;
  a->max_qp = 65536;
  a->max_qp_wr = 16384;
  a->max_sge = 16;
  a->max_cq = 65536;
  a->max_cqe = 4194303;
  a->max_mr = 1 << 20;
  a->max_pd = 1 << 16;
  a->max_qp_rd_atom = 16;
  a->max_qp_init_rd_atom = 16;
  a->max_srq = 65536;
  a->max_srq_wr = 32767;
  a->max_srq_sge = 16;
  a->phys_port_cnt = 1;
  return 0;
}

// verbs.h declares the exported symbol with the old, shorter struct; callers (like verbs.h's own
// inline wrapper) pass a full ibv_port_attr.
int ibv_query_port(ibv_context* ctx, uint8_t port, _compat_ibv_port_attr* compat) {
  auto* a = reinterpret_cast<ibv_port_attr*>(compat);
  Context* c = ctxOf(ctx);
  if (port != 1) return EINVAL;
  std::lock_guard<std::mutex> lock(c->mu);
  a->state = c->port_active ? IBV_PORT_ACTIVE : IBV_PORT_DOWN;
  a->max_mtu = IBV_MTU_4096;
  a->active_mtu = IBV_MTU_4096;
  a->gid_tbl_len = c->roce ? 2 : 1;
  a->max_msg_sz = 1u << 30;
  a->lid = c->roce ? 0 : static_cast<uint16_t>(c->lid);
  a->link_layer = c->roce ? IBV_LINK_LAYER_ETHERNET : IBV_LINK_LAYER_INFINIBAND;
  a->active_width = 2;   // 4x
  a->active_speed = 64;  // HDR: 200 Gb/s at 4x
  a->phys_state = c->port_active ? 5 : 3;
  return 0;
}

int ibv_query_gid(ibv_context* ctx, uint8_t port, int index, ibv_gid* gid) {
  Context* c = ctxOf(ctx);
  if (port != 1 || index < 0 || index >= (c->roce ? 2 : 1)) return EINVAL;
  memset(gid, 0, sizeof *gid);
  gid->raw[0] = 0xfe;
  gid->raw[1] = 0x80;
  if (c->roce && index == 1) {  // RoCE v2: an IPv4-mapped address
    memset(gid->raw, 0, 10);
    gid->raw[10] = gid->raw[11] = 0xff;
  }
  memcpy(gid->raw + 12, &c->lid, 4);
  return 0;
}

ibv_pd* ibv_alloc_pd(ibv_context* ctx) {
  auto* pd = new ibv_pd{};
  pd->context = ctx;
  return pd;
}

int ibv_dealloc_pd(ibv_pd* pd) {
  delete pd;
  return 0;
}

// Like an old library, the plain entry point refuses access flags it does not know (the optional
// ones, e.g. relaxed ordering, need ibv_reg_mr_iova2).
ibv_mr* ibv_reg_mr(ibv_pd* pd, void* addr, size_t length, int access) {
  Context* c = ctxOf(pd->context);
  const int known = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  if (addr == nullptr || length == 0 || (access & ~known) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  auto* m = new Mr;
  m->access = access;
  m->mr.context = pd->context;
  m->mr.pd = pd;
  m->mr.addr = addr;
  m->mr.length = length;
  std::lock_guard<std::mutex> lock(c->mu);
  m->mr.lkey = m->mr.rkey = c->next_key++;
  c->mrs[m->mr.lkey] = m;
  return &m->mr;
}

// Optional access flags are accepted and dropped, as a NIC without them does; the emulated device
// keeps virtual addresses, so iova must be the address.
ibv_mr* ibv_reg_mr_iova2(ibv_pd* pd, void* addr, size_t length, uint64_t iova, unsigned int access) {
  if (iova != reinterpret_cast<uint64_t>(addr)) {
    errno = EINVAL;
    return nullptr;
  }
  return ibv_reg_mr(pd, addr, length, static_cast<int>(access & ~IBV_ACCESS_OPTIONAL_RANGE));
}

// The emulated device cannot import DMA-BUFs. With EPYARD_FAKEVERBS_DMABUF=1 it answers the
// capability probe (no file: EBADF) as a device that can would; every real file still fails.
ibv_mr* ibv_reg_dmabuf_mr(ibv_pd*, uint64_t, size_t, uint64_t, int fd, int) {
  const char* on = getenv("EPYARD_FAKEVERBS_DMABUF");
  errno = on != nullptr && std::string(on) == "1" && fd < 0 ? EBADF : EOPNOTSUPP;
  return nullptr;
}

int ibv_dereg_mr(ibv_mr* mr) {
  Context* c = ctxOf(mr->context);
  std::lock_guard<std::mutex> lock(c->mu);
  c->mrs.erase(mr->lkey);
  delete reinterpret_cast<Mr*>(mr);
  return 0;
}

ibv_cq* ibv_create_cq(ibv_context* ctx, int cqe, void* cq_context, ibv_comp_channel* channel, int) {
  auto* q = new Cq;
  q->cq.context = ctx;
  q->cq.channel = channel;
  q->cq.cq_context = cq_context;
  q->cq.cqe = cqe;
  return &q->cq;
}

int ibv_destroy_cq(ibv_cq* cq) {
  Cq* q = reinterpret_cast<Cq*>(cq);
  {
    std::unique_lock<std::mutex> lock(q->mu);  // acknowledgements being written still name it
    if (!q->shown.wait_for(lock, std::chrono::seconds(30), [q] { return q->held == 0; })) {
      fprintf(stderr, "fakeverbs: ibv_destroy_cq: %d acknowledgements unwritten after 30 s; the CQ is leaked\n",
              q->held);
      return 0;  // a writer still names it: never free it under that writer
    }
  }
  delete q;
  return 0;
}

ibv_srq* ibv_create_srq(ibv_pd* pd, ibv_srq_init_attr* attr) {
  auto* s = new Srq;
  s->srq.context = pd->context;
  s->srq.pd = pd;
  s->srq.srq_context = attr != nullptr ? attr->srq_context : nullptr;
  return &s->srq;
}

int ibv_destroy_srq(ibv_srq* srq) {
  Context* c = ctxOf(srq->context);
  std::lock_guard<std::mutex> lock(c->mu);
  for (auto& [qpn, q] : c->qps)
    if (q->qp.srq == srq) return EBUSY;
  delete reinterpret_cast<Srq*>(srq);
  return 0;
}

ibv_qp* ibv_create_qp(ibv_pd* pd, ibv_qp_init_attr* attr) {
  if (attr->qp_type != IBV_QPT_RC || attr->send_cq == nullptr || attr->recv_cq == nullptr) {
    errno = EINVAL;  // the emulation has RC QPs only
    return nullptr;
  }
  Context* c = ctxOf(pd->context);
  auto* q = new Qp;
  q->ctx = c;
  q->qp.context = pd->context;
  q->qp.qp_context = attr->qp_context;
  q->qp.pd = pd;
  q->qp.send_cq = attr->send_cq;
  q->qp.recv_cq = attr->recv_cq;
  q->qp.srq = attr->srq;
  q->qp.state = IBV_QPS_RESET;
  q->qp.qp_type = IBV_QPT_RC;
  std::lock_guard<std::mutex> lock(c->mu);
  q->qp.qp_num = c->next_qpn++;
  c->qps[q->qp.qp_num] = q;
  return &q->qp;
}

int ibv_modify_qp(ibv_qp* qp, ibv_qp_attr* attr, int mask) {
  Qp* q = qpOf(qp);
  std::vector<Outgoing> out;
  {
    std::lock_guard<std::mutex> lock(q->ctx->mu);
    if (!(mask & IBV_QP_STATE)) return 0;
    if (!transitionOk(q->qp.state, attr->qp_state, mask)) return EINVAL;
    if (attr->qp_state == IBV_QPS_RTR) {
      q->dest_lid = destLid(attr->ah_attr);
      q->dest_qpn = attr->dest_qp_num;
    }
    if (attr->qp_state == IBV_QPS_ERR) failQpLocked(q, IBV_WC_WR_FLUSH_ERR);
    if (attr->qp_state == IBV_QPS_RESET) {
      q->pending.clear();
      q->rq.clear();
    }
    if (attr->qp_state == IBV_QPS_ERR || attr->qp_state == IBV_QPS_RESET)
      rejectWaitingLocked(q, &out);
    q->qp.state = attr->qp_state;
  }
  sendAll(q->ctx, &out);
  return 0;
}

int ibv_destroy_qp(ibv_qp* qp) {
  Qp* q = qpOf(qp);
  std::vector<Outgoing> out;
  {
    std::lock_guard<std::mutex> lock(q->ctx->mu);
    q->ctx->qps.erase(q->qp.qp_num);
    rejectWaitingLocked(q, &out);
  }
  sendAll(q->ctx, &out);
  delete q;
  return 0;
}

int ibv_get_async_event(ibv_context* ctx, ibv_async_event* event) {
  Context* c = ctxOf(ctx);
  char b;
  ssize_t r = read(c->async_pipe[0], &b, 1);
  if (r != 1) return -1;  // errno from read (EAGAIN when the caller made the fd non-blocking)
  std::lock_guard<std::mutex> lock(c->mu);
  if (c->async_events.empty()) {
    errno = EAGAIN;
    return -1;
  }
  *event = c->async_events.front();
  c->async_events.pop_front();
  return 0;
}

void ibv_ack_async_event(ibv_async_event*) {}

const char* ibv_wc_status_str(ibv_wc_status s) {
  switch (s) {
    case IBV_WC_SUCCESS:
      return "success";
    case IBV_WC_LOC_LEN_ERR:
      return "local length error";
    case IBV_WC_LOC_PROT_ERR:
      return "local protection error";
    case IBV_WC_WR_FLUSH_ERR:
      return "Work Request Flushed Error";
    case IBV_WC_REM_INV_REQ_ERR:
      return "remote invalid request error";
    case IBV_WC_REM_ACCESS_ERR:
      return "remote access error";
    case IBV_WC_RETRY_EXC_ERR:
      return "transport retry counter exceeded";
    default:
      return "unknown";
  }
}

const char* ibv_event_type_str(ibv_event_type e) {
  switch (e) {
    case IBV_EVENT_PORT_ACTIVE:
      return "port active";
    case IBV_EVENT_PORT_ERR:
      return "port error";
    default:
      return "unknown";
  }
}

// Test hook: the port of `ctx` goes down (active = 0) or up, with the matching async event.
// While it is down, new work requests fail with a retry-exceeded error.
int epyard_fakeverbs_port_event(ibv_context* ctx, int active) {
  Context* c = ctxOf(ctx);
  std::lock_guard<std::mutex> lock(c->mu);
  c->port_active = active != 0;
  ibv_async_event e{};
  e.event_type = active ? IBV_EVENT_PORT_ACTIVE : IBV_EVENT_PORT_ERR;
  e.element.port_num = 1;
  queueAsyncEventLocked(c, e);
  return 0;
}

// Test hook for programs that do not hold the context (the plugin opened it): every open
// context of device `name` (all devices when null) in this process. Returns how many.
int epyard_fakeverbs_port_event_all(const char* name, int active) {
  std::vector<Context*> hit;
  {
    std::lock_guard<std::mutex> lock(openMutex());
    for (Context* c : openContexts())
      if (name == nullptr || c->dev_name == name) hit.push_back(c);
  }
  for (Context* c : hit) epyard_fakeverbs_port_event(&c->ctx, active);
  return static_cast<int>(hit.size());
}

}  // extern "C"
