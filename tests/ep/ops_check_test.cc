// Argument checks of dispatch, combine, complete and update on the CPU: a group and handles
// built by hand (no communicator, no device memory) are fed bad inputs, and each call must
// return the right code with a message naming the argument — before any device work.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "host/api_impl.h"
#include "host/errors.h"
#include "host/group.h"

namespace epyard::ep {
namespace {

constexpr int R = 4, E = 16, B = 8, H = 256, K = 2, T = 6;

struct Tensor {
  ncclEpTensor_t t = NCCL_EP_TENSOR_INIT;
  std::vector<size_t> sizes;
  Tensor(ncclDataType_t type, std::vector<size_t> dims) : sizes(std::move(dims)) {
    t.ndim = static_cast<unsigned int>(sizes.size());
    t.datatype = type;
    t.data = reinterpret_cast<void*>(0x10000);  // never touched: every call here fails first
    t.sizes = sizes.data();
  }
  ncclEpTensor_t* get() { return &t; }
};

class OpsCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    std::memset(&fault_, 0, sizeof(fault_));
    g_.num_ranks = R;
    g_.config = NCCL_EP_GROUP_CONFIG_INIT;
    g_.config.num_experts = E;
    g_.config.max_dispatch_tokens_per_rank = B;
    g_.config.max_token_bytes = 2 * H;
    g_.error_host = &fault_;
    for (ncclEpHandle* h : {&em_, &rm_}) {
      h->group = &g_;
      h->top_k = K;
      h->num_tokens = T;
    }
    rm_.rank_major = true;
  }
  ncclResult_t dispatchEm(const ncclEpDispatchConfig_t* cfg = nullptr) {
    return dispatch(&em_, &din_, &dout_, nullptr, cfg, nullptr);
  }
  void expect(ncclResult_t got, ncclResult_t want, const char* needle) {
    EXPECT_EQ(got, want) << lastError(&g_);
    EXPECT_NE(std::string(lastError(&g_)).find(needle), std::string::npos)
        << "message \"" << lastError(&g_) << "\" lacks \"" << needle << "\"";
  }

  LlAsyncError fault_;
  ncclEpGroup g_;
  ncclEpHandle em_, rm_;
  Tensor x_{ncclBfloat16, {T, H}}, w_{ncclFloat32, {T, K}};
  Tensor em_out_{ncclBfloat16, {E / R, R * B, H}}, rm_out_{ncclBfloat16, {R, B, H}};
  ncclEpDispatchInputs_t din_ = [this] {
    ncclEpDispatchInputs_t d = NCCL_EP_DISPATCH_INPUTS_INIT;
    d.tokens = x_.get();
    d.topk_weights = w_.get();
    return d;
  }();
  ncclEpDispatchOutputs_t dout_ = [this] {
    ncclEpDispatchOutputs_t d = NCCL_EP_DISPATCH_OUTPUTS_INIT;
    d.tokens = em_out_.get();
    return d;
  }();
};

TEST_F(OpsCheck, DispatchShapesTypesAndOptionalOutputs) {
  Tensor odd{ncclBfloat16, {T, 200}};
  din_.tokens = odd.get();
  expect(dispatchEm(), ncclInvalidArgument, "multiple of 128");
  din_.tokens = x_.get();

  Tensor fp8_out{ncclFloat8e4m3, {E / R, R * B, H}};
  dout_.tokens = fp8_out.get();
  expect(dispatchEm(), ncclInvalidArgument, "outputs->scales is NULL");
  dout_.tokens = em_out_.get();

  Tensor scales{ncclFloat32, {E / R, R * B, H / 128}};
  dout_.scales = scales.get();
  expect(dispatchEm(), ncclInvalidArgument, "only written for FP8");
  dout_.scales = nullptr;

  din_.scales = scales.get();
  expect(dispatchEm(), ncclInvalidArgument, "inputs->scales must be NULL");
  din_.scales = nullptr;

  Tensor idx{ncclInt64, {E / R, R * B, K}};
  dout_.topk_idx = idx.get();
  expect(dispatchEm(), ncclInvalidArgument, "rank-major outputs");
  dout_.topk_idx = nullptr;

  Tensor wrong_rows{ncclBfloat16, {E / R, B, H}};
  dout_.tokens = wrong_rows.get();
  expect(dispatchEm(), ncclInvalidArgument, "outputs->tokens.sizes[1]");
  dout_.tokens = em_out_.get();
}

TEST_F(OpsCheck, RankMajorWeightsAndConfig) {
  Tensor rm_w{ncclFloat32, {R, B, K}};
  ncclEpDispatchOutputs_t out = NCCL_EP_DISPATCH_OUTPUTS_INIT;
  out.tokens = rm_out_.get();
  out.topk_weights = rm_w.get();
  ncclEpDispatchInputs_t in = din_;
  in.topk_weights = nullptr;
  expect(dispatch(&rm_, &in, &out, nullptr, nullptr, nullptr), ncclInvalidArgument,
         "needs inputs->topk_weights");

  ncclEpDispatchConfig_t cfg = NCCL_EP_DISPATCH_CONFIG_INIT;
  cfg.pass_direction = NCCL_EP_BWD_PASS;
  expect(dispatchEm(&cfg), ncclInvalidArgument, "high-throughput mode only");
  cfg = NCCL_EP_DISPATCH_CONFIG_INIT;
  cfg.size = 4;
  expect(dispatchEm(&cfg), ncclInvalidArgument, "config.size");
}

TEST_F(OpsCheck, CombineNeedsDispatchAndTheRightWeights) {
  ncclEpCombineInputs_t in = NCCL_EP_COMBINE_INPUTS_INIT;
  in.tokens = em_out_.get();
  Tensor y{ncclBfloat16, {T, H}};
  ncclEpCombineOutputs_t out = NCCL_EP_COMBINE_OUTPUTS_INIT;
  out.tokens = y.get();
  expect(combine(&em_, &in, &out, nullptr, nullptr), ncclInvalidUsage, "finished ncclEpDispatch");
  em_.dispatched = rm_.dispatched = true;
  expect(combine(&em_, &in, &out, nullptr, nullptr), ncclInvalidArgument, "inputs->topk_weights is NULL");

  ncclEpCombineInputs_t rin = NCCL_EP_COMBINE_INPUTS_INIT;
  rin.tokens = rm_out_.get();
  rin.topk_weights = w_.get();
  expect(combine(&rm_, &rin, &out, nullptr, nullptr), ncclInvalidArgument, "must be NULL in the rank-major");

  in.topk_weights = w_.get();
  out.topk_weights = w_.get();
  expect(combine(&em_, &in, &out, nullptr, nullptr), ncclInvalidArgument, "backward-pass output");
  out.topk_weights = nullptr;
  ncclEpCombineConfig_t cfg = NCCL_EP_COMBINE_CONFIG_INIT;
  std::memset(&cfg.pass_direction, 0x7f, sizeof(cfg.pass_direction));  // not an enumerator
  expect(combine(&em_, &in, &out, &cfg, nullptr), ncclInvalidArgument, "pass_direction");
}

TEST_F(OpsCheck, OrderOfCallsAndGroupHealth) {
  em_.num_tokens = -1;
  expect(dispatchEm(), ncclInvalidUsage, "before ncclEpUpdateHandle");
  em_.num_tokens = T;
  expect(complete(&em_, nullptr, nullptr), ncclInvalidUsage, "no send_only");
  em_.pending = ncclEpHandle::Pending::kDispatch;
  expect(dispatchEm(), ncclInvalidUsage, "call ncclEpComplete first");
  em_.pending = ncclEpHandle::Pending::kNone;

  fault_.fault = kFaultTimeout;
  fault_.what = kWaitDispatchData;
  fault_.peer = 3;
  expect(dispatchEm(), ncclRemoteError, "out of step");
  EXPECT_NE(std::string(lastError(&g_)).find("from rank 3"), std::string::npos) << lastError(&g_);
}

TEST_F(OpsCheck, UpdateShapesAndLayoutInfo) {
  Tensor wrong_k{ncclInt64, {T, K + 1}};
  expect(handleUpdate(&em_, wrong_k.get(), nullptr, nullptr), ncclInvalidArgument, "topk_idx.sizes[1]");
  Tensor too_many{ncclInt64, {B + 1, K}};
  expect(handleUpdate(&em_, too_many.get(), nullptr, nullptr), ncclInvalidArgument,
         "max_dispatch_tokens_per_rank");
  Tensor idx{ncclInt64, {T, K}}, counters{ncclInt64, {E / R}};
  ncclEpLayoutInfo_t info = NCCL_EP_LAYOUT_INFO_INIT;
  info.expert_counters = counters.get();
  expect(handleUpdate(&em_, idx.get(), &info, nullptr), ncclInvalidArgument, "expected ncclInt32");
}

TEST_F(OpsCheck, HandleSizeArguments) {
  size_t bytes = 0;
  expect(handleMemSize(&g_, NCCL_EP_LAYOUT_FLAT, nullptr, &bytes, K), ncclInvalidArgument, "layout (3)");
  expect(handleMemSize(&g_, NCCL_EP_LAYOUT_EXPERT_MAJOR, nullptr, &bytes, 0), ncclInvalidArgument, "num_topk (0)");
  expect(handleMemSize(&g_, NCCL_EP_LAYOUT_EXPERT_MAJOR, nullptr, &bytes, 17), ncclInvalidArgument, "num_topk (17)");
  EXPECT_EQ(handleMemSize(&g_, NCCL_EP_LAYOUT_RANK_MAJOR, nullptr, &bytes, K), ncclSuccess);
  EXPECT_EQ(bytes, llHandleLayout(R, E, B, K, true).total);
}

}  // namespace
}  // namespace epyard::ep
