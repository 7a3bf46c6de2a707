// Correctness cases: layouts, BF16 and FP8, shapes, staged mode, several handles, graph replay,
// repeated runs. Robustness cases live in ep_gpu_robust.cc.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "ep_gpu_cases.h"

namespace epyard::ep::test {

namespace {
thread_local Ctx* t_ctx = nullptr;
}

Ctx* currentCtx() { return t_ctx; }

void HostBarrier::wait(int rank, const char* what) {
  std::unique_lock<std::mutex> lock(mu_);
  if (present_.empty()) present_.assign(n_, 0);
  present_[rank] = 1;
  const uint64_t gen = generation_;
  if (++arrived_ == n_) {
    arrived_ = 0;
    present_.assign(n_, 0);
    ++generation_;
    cv_.notify_all();
    return;
  }
  if (!cv_.wait_for(lock, std::chrono::seconds(120), [&] { return generation_ != gen; })) {
    std::string missing;
    for (int r = 0; r < n_; ++r)
      if (!present_[r]) missing += " " + std::to_string(r);
    die("virtual-rank barrier \"%s\": rank(s)%s did not arrive within 120 s", what, missing.c_str());
  }
}

ncclResult_t createGroup(Ctx& c, const ncclEpGroupConfig_t* cfg, ncclEpGroup_t* out) {
  if (c.world != nullptr) return epyardEpCreateVirtualGroup(out, c.world, c.rank(), cfg);
  return ncclEpCreateGroup(out, c.comm, cfg);
}

ncclEpGroup_t makeGroup(Ctx& c, const ref::LlShape& s,
                        const std::function<void(ncclEpGroupConfig_t*)>& tweak) {
  ncclEpGroupConfig_t cfg = NCCL_EP_GROUP_CONFIG_INIT;
  cfg.num_experts = static_cast<unsigned>(s.num_experts);
  cfg.max_dispatch_tokens_per_rank = static_cast<unsigned>(s.max_tokens);
  cfg.max_token_bytes = static_cast<unsigned>(2 * s.hidden);
  // Ranks sharing one GPU as processes (shared-gpu mode) must all be resident: an even share
  // of the SMs each (virtual-rank groups are capped by the library itself).
  if (c.world == nullptr && c.env.shares_gpu) {
    int sms = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, c.env.device));
    cfg.max_num_sms = static_cast<unsigned>(std::max(1, sms / c.ranks()));
  }
  if (tweak) tweak(&cfg);
  ncclEpGroup_t g = nullptr;
  EP_OK(createGroup(c, &cfg, &g), nullptr);
  return g;
}

Round::Round(const ref::LlShape& shape, const ref::LlOptions& options, int tokens)
    : s(shape), o(options), T(tokens) {
  const size_t R = s.num_ranks, B = s.max_tokens, H = s.hidden, K = s.top_k;
  const size_t L = s.localExperts();
  const size_t d0 = rm() ? R : L, d1 = rm() ? B : R * B;
  x = std::make_unique<DevTensor>(ncclBfloat16, std::vector<size_t>{size_t(T), H});
  topk = std::make_unique<DevTensor>(ncclInt64, std::vector<size_t>{size_t(T), K});
  weights = std::make_unique<DevTensor>(ncclFloat32, std::vector<size_t>{size_t(T), K});
  out = std::make_unique<DevTensor>(o.fp8 ? ncclFloat8e4m3 : ncclBfloat16, std::vector<size_t>{d0, d1, H});
  if (o.fp8) scales = std::make_unique<DevTensor>(ncclFloat32, std::vector<size_t>{d0, d1, H / 128});
  if (rm()) {
    out_topk = std::make_unique<DevTensor>(ncclInt64, std::vector<size_t>{d0, d1, K});
    out_weights = std::make_unique<DevTensor>(ncclFloat32, std::vector<size_t>{d0, d1, K});
  }
  expert_counters = std::make_unique<DevTensor>(ncclInt32, std::vector<size_t>{L});
  src_counters = std::make_unique<DevTensor>(ncclInt32, std::vector<size_t>{R});
  offsets = std::make_unique<DevTensor>(ncclInt32, std::vector<size_t>{L});
  total = std::make_unique<DevTensor>(ncclInt32, std::vector<size_t>{1});
  comb_in = std::make_unique<DevTensor>(ncclBfloat16, std::vector<size_t>{d0, d1, H});
  comb_out = std::make_unique<DevTensor>(ncclBfloat16, std::vector<size_t>{size_t(T), H});
  info.expert_counters = expert_counters->get();
  info.src_rank_counters = src_counters->get();
  info.expert_offsets = offsets->get();
  info.recv_total_counter = total->get();
  din.tokens = x->get();
  din.topk_weights = weights->get();
  dout.tokens = out->get();
  dout.scales = o.fp8 ? scales->get() : nullptr;
  dout.topk_idx = rm() ? out_topk->get() : nullptr;
  dout.topk_weights = rm() ? out_weights->get() : nullptr;
  cin.tokens = comb_in->get();
  cin.topk_weights = rm() ? nullptr : weights->get();
  cout.tokens = comb_out->get();
}

void Round::prepare(int rank, uint64_t seed, const RoutingSpec& spec) {
  if (currentCtx() != nullptr) currentCtx()->sync("round start");
  routing = makeRouting(s, seed, spec);
  const ref::RankRouting& mine = routing[rank];
  if (mine.num_tokens != T) die("case bug: rank %d has %d tokens, buffers hold %d", rank, mine.num_tokens, T);
  std::string bad = ref::validate(s, routing);
  if (!bad.empty()) die("case bug: %s", bad.c_str());
  if (T > 0) {
    x->upload(mine.tokens);
    topk->upload(mine.topk_idx);
    weights->upload(mine.topk_weights);
  }
  expected = ref::dispatch(s, routing, o);
  std::vector<std::vector<uint16_t>> expert_out(routing.size());
  for (size_t r = 0; r < routing.size(); ++r) expert_out[r] = expertOutputs(s, expected[r], rm());
  comb_in->upload(expert_out[rank]);
  // The combine reference works from BF16 rows; FP8 dispatch changes nothing it reads.
  expected_combine = ref::combine(s, routing, expected, expert_out, o)[rank];
}

void Round::update(ncclEpHandle_t h, cudaStream_t st) {
  stream = st;
  EP_OK(ncclEpUpdateHandle(h, topk->get(), &info, st), nullptr);
}

void Round::dispatch(ncclEpHandle_t h, cudaStream_t st, bool send_only, bool complete) {
  stream = st;
  ncclEpDispatchConfig_t cfg = NCCL_EP_DISPATCH_CONFIG_INIT;
  cfg.send_only = send_only;
  cfg.round_scales = o.round_scales;
  EP_OK(ncclEpDispatch(h, &din, &dout, nullptr, &cfg, st), nullptr);
  if (send_only && complete) EP_OK(ncclEpComplete(h, nullptr, st), nullptr);
}

void Round::combine(ncclEpHandle_t h, cudaStream_t st, bool send_only, bool complete) {
  stream = st;
  ncclEpCombineConfig_t cfg = NCCL_EP_COMBINE_CONFIG_INIT;
  cfg.send_only = send_only;
  EP_OK(ncclEpCombine(h, &cin, &cout, &cfg, st), nullptr);
  if (send_only && complete) EP_OK(ncclEpComplete(h, nullptr, st), nullptr);
}

void Round::check(int rank, const char* what) {
  // This rank's stream only: with virtual ranks the device also runs the others' next ops.
  CUDA_CHECK(cudaStreamSynchronize(stream));
  if (group != nullptr) {
    int async = 0;
    EP_OK(ncclEpGetAsyncError(group, &async), group);
    if (async != ncclSuccess) die("%s: asynchronous error: %s", what, ncclEpGetLastError(group));
  }
  const ref::LlDispatchResult& want = expected[rank];
  std::string bad = compareCounters(want, *expert_counters, *src_counters, *offsets, *total);
  if (bad.empty())
    bad = compareDispatch(s, o, want, *out, scales.get(), out_topk.get(), out_weights.get());
  if (bad.empty()) bad = compareCombine(expected_combine, *comb_out);
  if (!bad.empty()) die("%s: %s", what, bad.c_str());
}

void Round::roundTrip(ncclEpHandle_t h, cudaStream_t st, int rank, uint64_t seed,
                      const RoutingSpec& spec, const char* what) {
  prepare(rank, seed, spec);
  update(h, st);
  dispatch(h, st);
  combine(h, st);
  check(rank, what);
}

uint64_t Round::hashOutputs(int rank) const {
  const ref::LlDispatchResult& want = expected[rank];
  const size_t row_bytes = static_cast<size_t>(s.hidden) * (o.fp8 ? 1 : 2);
  std::vector<uint8_t> got = out->download<uint8_t>();
  uint64_t h = 1469598103934665603ull;
  for (size_t row = 0; row < want.origin.size(); ++row)
    if (want.origin[row].src_rank >= 0) h = hashBytes(&got[row * row_bytes], row_bytes, h);
  std::vector<uint8_t> comb = comb_out->download<uint8_t>();
  return hashBytes(comb.data(), comb.size(), h);
}

ncclEpHandle_t makeHandle(ncclEpGroup_t g, Round& r, const ncclEpTensor_t* mem) {
  ncclEpHandle_t h = nullptr;
  r.group = g;
  EP_OK(ncclEpInitHandle(&h, g, r.rm() ? NCCL_EP_LAYOUT_RANK_MAJOR : NCCL_EP_LAYOUT_EXPERT_MAJOR,
                         nullptr, r.s.top_k, mem), g);
  return h;
}

namespace {

int tokensOf(const ref::LlShape& s, int rank, const RoutingSpec& spec) {
  if (rank == spec.empty_rank) return 0;
  return spec.full ? s.max_tokens : std::max(s.max_tokens - rank, 0);
}

// One group, one handle per option set, `rounds` rounds each with fresh routing.
void layouts(Ctx& c, const ref::LlShape& s, std::vector<ref::LlOptions> options,
             const RoutingSpec& spec, int rounds, const char* name,
             const std::function<void(ncclEpGroupConfig_t*)>& tweak = {}) {
  ncclEpGroup_t g = makeGroup(c, s, tweak);
  for (size_t i = 0; i < options.size(); ++i) {
    Round r(s, options[i], tokensOf(s, c.rank(), spec));
    ncclEpHandle_t h = makeHandle(g, r);
    for (int k = 0; k < rounds; ++k) {
      char what[128];
      std::snprintf(what, sizeof(what), "%s: option set %zu round %d", name, i, k);
      r.roundTrip(h, c.stream, c.rank(), 1000 * i + k + 17, spec, what);
    }
    EP_OK(ncclEpHandleDestroy(h), g);
  }
  EP_OK(ncclEpGroupDestroy(g), nullptr);
}

ref::LlOptions opts(ref::LlLayout layout, bool fp8, bool round_scales) {
  ref::LlOptions o;
  o.layout = layout;
  o.fp8 = fp8;
  o.round_scales = round_scales;
  return o;
}

const ref::LlLayout kEm = ref::LlLayout::kExpertMajor, kRm = ref::LlLayout::kRankMajor;

void caseBasic(Ctx& c) {
  ref::LlShape s{c.ranks(), 8 * c.ranks(), 64, 2048, 4};
  layouts(c, s, {opts(kEm, false, false), opts(kRm, false, false)}, RoutingSpec{}, 3, "basic");
}

void caseFp8(Ctx& c) {
  ref::LlShape s{c.ranks(), 8 * c.ranks(), 64, 2048, 4};
  layouts(c, s, {opts(kEm, true, false), opts(kEm, true, true), opts(kRm, true, true)},
          RoutingSpec{}, 2, "fp8");
}

void caseShapes(Ctx& c) {
  RoutingSpec sparse;
  sparse.drop = 0.3;
  sparse.repeat = 0.2;
  sparse.empty_rank = 1;
  layouts(c, {c.ranks(), c.ranks(), 1, 128, 1}, {opts(kEm, false, false), opts(kRm, true, false)},
          RoutingSpec{}, 2, "shapes hidden 128 top-1 one token");
  layouts(c, {c.ranks(), 512, 32, 8192, 16}, {opts(kEm, false, false), opts(kRm, true, true)},
          sparse, 2, "shapes hidden 8192 top-16 512 experts, repeats, an empty rank");
  layouts(c, {c.ranks(), 4 * c.ranks(), 1024, 256, 3}, {opts(kEm, true, false)}, sparse, 1,
          "shapes 1024 tokens");
}

void caseTarget(Ctx& c) {
  RoutingSpec full;
  full.full = true;
  full.drop = 0;
  layouts(c, {c.ranks(), 256, 128, 7168, 8}, {opts(kEm, true, true), opts(kEm, false, false)}, full,
          2, "target shape (128 tokens, hidden 7168, top-8, 256 experts)");
}

// Small grids: one block plays both roles (sends, then receives); with two or five blocks the
// grid splits into senders and receivers that loop over several items each.
void caseGrids(Ctx& c) {
  RoutingSpec sparse;
  sparse.drop = 0.2;
  sparse.repeat = 0.2;
  for (unsigned sms : {1u, 2u, 5u}) {
    char name[64];
    std::snprintf(name, sizeof(name), "max_num_sms %u", sms);
    layouts(c, {c.ranks(), 8 * c.ranks(), 96, 1024, 6},
            {opts(kEm, true, false), opts(kRm, false, false)}, sparse, 2, name,
            [sms](ncclEpGroupConfig_t* cfg) { cfg->max_num_sms = sms; });
  }
}

void caseStaged(Ctx& c) {
  ref::LlShape s{c.ranks(), 8 * c.ranks(), 64, 1024, 4};
  ncclEpGroup_t g = makeGroup(c, s);
  for (ref::LlOptions o : {opts(kEm, true, false), opts(kRm, false, false)}) {
    Round r(s, o, tokensOf(s, c.rank(), RoutingSpec{}));
    ncclEpHandle_t h = makeHandle(g, r);
    for (int k = 0; k < 3; ++k) {
      r.prepare(c.rank(), 300 + k, RoutingSpec{});
      r.update(h, c.stream);
      r.dispatch(h, c.stream, true);
      r.combine(h, c.stream, true);
      r.check(c.rank(), "staged (send_only + ncclEpComplete)");
    }
    EP_OK(ncclEpHandleDestroy(h), g);
  }
  // Two staged dispatches hold the buffer credit a third needs: it is refused (it used to wait
  // for a complete queued after it, until the timeout), and runs once one is completed.
  std::vector<std::unique_ptr<Round>> rounds;
  std::vector<ncclEpHandle_t> hs;
  for (int k = 0; k < 3; ++k) {
    rounds.push_back(std::make_unique<Round>(s, opts(kEm, false, false), tokensOf(s, c.rank(), RoutingSpec{})));
    hs.push_back(makeHandle(g, *rounds[k]));
    rounds[k]->prepare(c.rank(), 320 + k, RoutingSpec{});
    rounds[k]->update(hs[k], c.stream);
  }
  rounds[0]->dispatch(hs[0], c.stream, true, false);
  rounds[1]->dispatch(hs[1], c.stream, true, false);
  expectError(ncclEpDispatch(hs[2], &rounds[2]->din, &rounds[2]->dout, nullptr, nullptr, c.stream),
              ncclInvalidUsage, g, "complete one first", "a third dispatch behind two staged ones");
  EP_OK(ncclEpComplete(hs[0], nullptr, c.stream), g);
  rounds[2]->dispatch(hs[2], c.stream, true, false);  // now there is credit
  EP_OK(ncclEpComplete(hs[1], nullptr, c.stream), g);
  EP_OK(ncclEpComplete(hs[2], nullptr, c.stream), g);
  for (int k = 0; k < 3; ++k) {
    rounds[k]->combine(hs[k], c.stream);
    rounds[k]->check(c.rank(), "staged: three handles, two staged at a time");
    EP_OK(ncclEpHandleDestroy(hs[k]), g);
  }
  int async = 0;
  EP_OK(ncclEpGetAsyncError(g, &async), g);
  if (async != ncclSuccess) die("staged: async error %d after the refused third dispatch", async);
  EP_OK(ncclEpGroupDestroy(g), nullptr);
}

// Two handles of one group, interleaved, and staged ops completed in the other order.
void caseHandles(Ctx& c) {
  ref::LlShape s{c.ranks(), 4 * c.ranks(), 48, 1024, 4};
  ncclEpGroup_t g = makeGroup(c, s);
  Round a(s, opts(kEm, false, false), tokensOf(s, c.rank(), RoutingSpec{}));
  Round b(s, opts(kRm, true, false), tokensOf(s, c.rank(), RoutingSpec{}));
  size_t mem_bytes = 0;
  EP_OK(ncclEpHandleMemSize(g, NCCL_EP_LAYOUT_RANK_MAJOR, nullptr, &mem_bytes, s.top_k), g);
  DevTensor mem(ncclUint8, {mem_bytes});
  ncclEpHandle_t ha = makeHandle(g, a), hb = makeHandle(g, b, mem.get());  // b: caller memory
  for (int k = 0; k < 3; ++k) {
    a.prepare(c.rank(), 500 + k, RoutingSpec{});
    b.prepare(c.rank(), 600 + k, RoutingSpec{});
    a.update(ha, c.stream);
    b.update(hb, c.stream);
    if (k == 0) {  // interleaved, fused
      a.dispatch(ha, c.stream);
      b.dispatch(hb, c.stream);
      b.combine(hb, c.stream);
      a.combine(ha, c.stream);
    } else {  // staged, completed in reverse order
      a.dispatch(ha, c.stream, true, false);
      b.dispatch(hb, c.stream, true, false);
      EP_OK(ncclEpComplete(hb, nullptr, c.stream), g);
      EP_OK(ncclEpComplete(ha, nullptr, c.stream), g);
      b.combine(hb, c.stream, true, false);
      a.combine(ha, c.stream, true, false);
      EP_OK(ncclEpComplete(ha, nullptr, c.stream), g);
      EP_OK(ncclEpComplete(hb, nullptr, c.stream), g);
    }
    char what[96];
    std::snprintf(what, sizeof(what), "handles round %d (%s): expert-major handle", k,
                  k == 0 ? "interleaved" : "staged, completed in reverse");
    a.check(c.rank(), what);
    std::snprintf(what, sizeof(what), "handles round %d: rank-major handle (caller memory)", k);
    b.check(c.rank(), what);
  }
  EP_OK(ncclEpHandleDestroy(ha), g);
  EP_OK(ncclEpHandleDestroy(hb), g);
  EP_OK(ncclEpGroupDestroy(g), nullptr);
}

// Update + Dispatch + Combine captured once, replayed with new routing written in place.
void caseGraph(Ctx& c) {
  RoutingSpec full;
  full.full = true;
  ref::LlShape s{c.ranks(), 16 * c.ranks(), 64, 2048, 8};
  ncclEpGroup_t g = makeGroup(c, s);
  for (ref::LlOptions o : {opts(kEm, true, true), opts(kRm, false, false)}) {
    Round r(s, o, s.max_tokens);
    ncclEpHandle_t h = makeHandle(g, r);
    r.prepare(c.rank(), 700, full);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_CHECK(cudaStreamBeginCapture(c.stream, cudaStreamCaptureModeThreadLocal));
    r.update(h, c.stream);
    r.dispatch(h, c.stream);
    r.combine(h, c.stream);
    CUDA_CHECK(cudaStreamEndCapture(c.stream, &graph));
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int k = 0; k < 20; ++k) {
      r.prepare(c.rank(), 800 + k, full);
      CUDA_CHECK(cudaGraphLaunch(exec, c.stream));
      char what[64];
      std::snprintf(what, sizeof(what), "graph replay %d", k);
      r.check(c.rank(), what);
    }
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph));
    EP_OK(ncclEpHandleDestroy(h), g);
  }
  EP_OK(ncclEpGroupDestroy(g), nullptr);
}

// 200 runs of the same inputs: identical outputs every time (a race would show as a change).
void caseRepeat(Ctx& c) {
  ref::LlShape s{c.ranks(), 32 * c.ranks(), 128, 2048, 8};
  RoutingSpec spec;
  spec.repeat = 0.1;
  ncclEpGroup_t g = makeGroup(c, s);
  for (ref::LlOptions o : {opts(kEm, true, true), opts(kRm, false, false)}) {
    Round r(s, o, tokensOf(s, c.rank(), spec));
    ncclEpHandle_t h = makeHandle(g, r);
    r.prepare(c.rank(), 900, spec);
    r.update(h, c.stream);
    uint64_t first = 0;
    for (int k = 0; k < 200; ++k) {
      r.dispatch(h, c.stream);
      r.combine(h, c.stream);
      CUDA_CHECK(cudaStreamSynchronize(c.stream));
      if (k == 0) r.check(c.rank(), "repeat: first run");
      const uint64_t hash = r.hashOutputs(c.rank());
      if (k == 0) first = hash;
      if (hash != first) die("repeat: run %d hashes to %016llx, run 0 to %016llx", k,
                             static_cast<unsigned long long>(hash), static_cast<unsigned long long>(first));
    }
    EP_OK(ncclEpHandleDestroy(h), g);
  }
  EP_OK(ncclEpGroupDestroy(g), nullptr);
}

}  // namespace

const std::vector<TestCase>& allCases() {
  static const std::vector<TestCase> cases = {
      {"basic", caseBasic},     {"fp8", caseFp8},       {"shapes", caseShapes},
      {"target", caseTarget},   {"grids", caseGrids},   {"staged", caseStaged},
      {"handles", caseHandles},
      {"graph", caseGraph},     {"repeat", caseRepeat}, {"masks", caseMasks},
      {"errors", caseErrors},   {"lifecycle", caseLifecycle}, {"timeout", caseTimeout},
  };
  return cases;
}

int runCases(const epyard::launch::RankEnv& env, const std::set<std::string>& only,
             HostBarrier* barrier) {
  g_rank = env.rank;
  Ctx c;
  c.env = env;
  t_ctx = &c;
  if (env.world != nullptr) {
    c.world = static_cast<epyardEpVirtualWorld_t>(env.world);
    c.barrier = barrier;
  } else {
    ncclResult_t r = ncclCommInitRank(&c.comm, env.num_ranks, env.id, env.rank);
    if (r != ncclSuccess) die("ncclCommInitRank: %s", ncclGetErrorString(r));
  }
  CUDA_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
  for (const TestCase& t : allCases()) {
    if (!only.empty() && !only.count(t.name)) continue;
    const auto start = std::chrono::steady_clock::now();
    t.run(c);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (c.rank() == 0) std::printf("PASS %-10s (%.1f s)\n", t.name, s);
    std::fflush(stdout);
  }
  CUDA_CHECK(cudaStreamDestroy(c.stream));
  if (c.comm != nullptr) ncclCommDestroy(c.comm);
  t_ctx = nullptr;
  return 0;
}

}  // namespace epyard::ep::test
