// Host-side argument checks of the EP API: each bad input gives a message naming the argument
// and the rule; good input passes.
#include <gtest/gtest.h>

#include <cstring>

#include "host/api_check.h"

namespace epyard::ep {
namespace {

bool mentions(const std::string& msg, const std::string& what) {
  return msg.find(what) != std::string::npos;
}

ncclEpGroupConfig_t goodLl() {
  ncclEpGroupConfig_t c = NCCL_EP_GROUP_CONFIG_INIT;
  c.algorithm = NCCL_EP_ALGO_LOW_LATENCY;
  c.num_experts = 256;
  c.max_dispatch_tokens_per_rank = 128;
  c.max_token_bytes = 7168 * 2;
  return c;
}

TEST(ApiCheck, StructHeader) {
  ncclEpDispatchConfig_t d = NCCL_EP_DISPATCH_CONFIG_INIT;
  EXPECT_EQ(checkStruct(&d, "config"), "");
  EXPECT_TRUE(mentions(checkStruct(static_cast<ncclEpDispatchConfig_t*>(nullptr), "config"),
                       "config is NULL"));
  ncclEpDispatchConfig_t zero = {};
  EXPECT_TRUE(mentions(checkStruct(&zero, "config"), "NCCL_EP_*_INIT"));
  d.size -= 4;
  EXPECT_TRUE(mentions(checkStruct(&d, "config"), "another nccl_ep.h"));
}

// Which libnccl a build runs on: never an older one; 2.28 builds only on 2.28.x; versioned
// (2.29.2+) builds on any release from their own on. Messages name both versions.
TEST(ApiCheck, NcclRuntimeVersion) {
  EXPECT_EQ(checkNcclRuntime(22809, false, 22809), "");
  EXPECT_EQ(checkNcclRuntime(22809, false, 22812), "");
  EXPECT_EQ(checkNcclRuntime(23007, true, 23007), "");
  EXPECT_EQ(checkNcclRuntime(23007, true, 23203), "");
  const std::string newer = checkNcclRuntime(22809, false, 23007);
  EXPECT_TRUE(mentions(newer, "libnccl 2.30.7 is loaded")) << newer;
  EXPECT_TRUE(mentions(newer, "built against NCCL 2.28.9")) << newer;
  EXPECT_TRUE(mentions(newer, "only 2.28.x")) << newer;
  const std::string older = checkNcclRuntime(23007, true, 22809);
  EXPECT_TRUE(mentions(older, "libnccl 2.28.9 is loaded")) << older;
  EXPECT_TRUE(mentions(older, "NCCL 2.30.7")) << older;
  EXPECT_TRUE(mentions(older, "newer NCCL")) << older;
  EXPECT_NE(checkNcclRuntime(22809, false, 22807), "");
  EXPECT_NE(checkNcclRuntime(23007, true, 23005), "");
  EXPECT_EQ(ncclVersionText(23203), "2.32.3");
}

TEST(ApiCheck, GroupConfigAcceptsGoodOnes) {
  ncclEpGroupConfig_t c = goodLl();
  EXPECT_EQ(checkGroupConfig(&c, 8), "");
  c.algorithm = NCCL_EP_ALGO_HIGH_THROUGHPUT;
  c.max_dispatch_tokens_per_rank = 4096;
  c.max_recv_tokens_per_rank = 8192;
  EXPECT_EQ(checkGroupConfig(&c, 8), "");
}

TEST(ApiCheck, GroupConfigNamesEachRule) {
  struct Case {
    void (*edit)(ncclEpGroupConfig_t*);
    const char* expect;
  } cases[] = {
      {[](ncclEpGroupConfig_t* c) { c->num_experts = 250; },
       "num_experts (250) must be a positive multiple of the number of ranks (8)"},
      {[](ncclEpGroupConfig_t* c) { c->num_experts = 1024; }, "above the supported 512"},
      {[](ncclEpGroupConfig_t* c) { c->max_dispatch_tokens_per_rank = 0; },
       "max_dispatch_tokens_per_rank must be set"},
      {[](ncclEpGroupConfig_t* c) { c->max_dispatch_tokens_per_rank = 2048; },
       "low-latency limit of 1024"},
      {[](ncclEpGroupConfig_t* c) { c->max_recv_tokens_per_rank = 3; },
       "at least max_dispatch_tokens_per_rank"},
      {[](ncclEpGroupConfig_t* c) { c->max_token_bytes = 7000; },
       "max_token_bytes (7000) must be a multiple of 256"},
      {[](ncclEpGroupConfig_t* c) { c->max_token_bytes = 1 << 20; }, "up to 65536"},
      {[](ncclEpGroupConfig_t* c) {
         int seven = 7;  // what a C caller can store; not a valid enumerator
         memcpy(&c->algorithm, &seven, sizeof(seven));
       },
       "config.algorithm (7)"},
      {[](ncclEpGroupConfig_t* c) { c->alloc.free_fn = [](void*, void*) { return cudaSuccess; }; },
       "both alloc_fn and free_fn"},
      {[](ncclEpGroupConfig_t* c) {
         c->algorithm = NCCL_EP_ALGO_HIGH_THROUGHPUT;
         c->enable_mask = 1;
       },
       "enable_mask is only supported"},
      {[](ncclEpGroupConfig_t* c) { c->magic = 0; }, "config.magic"},
  };
  for (const Case& k : cases) {
    ncclEpGroupConfig_t c = goodLl();
    k.edit(&c);
    std::string msg = checkGroupConfig(&c, 8);
    EXPECT_TRUE(mentions(msg, k.expect)) << "got: " << msg << "\nwanted: " << k.expect;
  }
}

TEST(ApiCheck, TensorShapeAndType) {
  size_t sizes[2] = {128, 7168};
  int dummy;
  ncclEpTensor_t t = NCCL_EP_TENSOR_INIT;
  t.ndim = 2;
  t.datatype = ncclBfloat16;
  t.data = &dummy;
  t.sizes = sizes;
  EXPECT_EQ(checkTensor(&t, "inputs->tokens", 2, {ncclBfloat16}, {-1, 7168}), "");
  EXPECT_TRUE(mentions(checkTensor(&t, "inputs->tokens", 2, {ncclBfloat16}, {-1, 4096}),
                       "inputs->tokens.sizes[1] is 7168, expected 4096"));
  EXPECT_TRUE(mentions(checkTensor(&t, "inputs->tokens", 3, {ncclBfloat16}, {}),
                       "has 2 dimensions, expected 3"));
  EXPECT_EQ(checkTensor(&t, "outputs->tokens", 2, {ncclBfloat16, ncclFloat8e4m3}, {}), "");
  EXPECT_TRUE(mentions(checkTensor(&t, "topk_idx", 2, {ncclInt64}, {}),
                       "topk_idx is ncclBfloat16, expected ncclInt64"));
  EXPECT_EQ(checkTensor(nullptr, "topk_weights", 2, {ncclFloat32}, {}, true), "");
  EXPECT_TRUE(mentions(checkTensor(nullptr, "tokens", 2, {ncclFloat32}, {}), "tokens is NULL"));
  t.data = nullptr;
  EXPECT_TRUE(mentions(checkTensor(&t, "tokens", 2, {ncclBfloat16}, {}), "tokens.data is NULL"));
  sizes[0] = 0;  // an empty tensor may have no data (a rank with zero tokens)
  EXPECT_EQ(checkTensor(&t, "tokens", 2, {ncclBfloat16}, {}), "");
  t.magic = NCCL_EP_MAGIC;  // a config magic on a tensor
  EXPECT_TRUE(mentions(checkTensor(&t, "tokens", 2, {ncclBfloat16}, {}), "tokens.magic"));
}

}  // namespace
}  // namespace epyard::ep
