// The public header: fixed names and values, and INIT macros that fill size/magic (from C++
// here, from C in header_c_check.c).
#include <gtest/gtest.h>

#include "nccl_ep.h"

extern "C" unsigned int epyardCHeaderGroupConfigSize(void);
extern "C" unsigned int epyardCHeaderMagicSum(void);

namespace {

TEST(EpHeader, FixedValues) {
  EXPECT_EQ(NCCL_EP_VERSION_CODE, 100);
  EXPECT_EQ(NCCL_EP_API_VERSION, 1);
  EXPECT_EQ(NCCL_EP_AUTO, 0);
  EXPECT_EQ(NCCL_EP_MAGIC, 0xC00FFFEEu);
  EXPECT_EQ(NCCL_EP_TENSOR_MAGIC, 0xCAFECAFEu);
  EXPECT_EQ(NCCL_EP_ALGO_LOW_LATENCY, 0);
  EXPECT_EQ(NCCL_EP_ALGO_HIGH_THROUGHPUT, 1);
  EXPECT_EQ(NCCL_EP_LAYOUT_UNSET, 0);
  EXPECT_EQ(NCCL_EP_FWD_PASS, 0);
  EXPECT_EQ(NCCL_EP_BWD_PASS, 1);
}

TEST(EpHeader, InitMacrosFillSizeAndMagic) {
  ncclEpGroupConfig_t g = NCCL_EP_GROUP_CONFIG_INIT;
  EXPECT_EQ(g.size, sizeof(ncclEpGroupConfig_t));
  EXPECT_EQ(g.magic, NCCL_EP_MAGIC);
  EXPECT_EQ(g.version, static_cast<unsigned>(NCCL_EP_API_VERSION));
  EXPECT_EQ(g.num_experts, 0u);
  EXPECT_EQ(g.timeout_ns, 0u);
  ncclEpTensor_t t = NCCL_EP_TENSOR_INIT;
  EXPECT_EQ(t.size, sizeof(ncclEpTensor_t));
  EXPECT_EQ(t.magic, NCCL_EP_TENSOR_MAGIC);
  EXPECT_EQ(t.data, nullptr);
  ncclEpDispatchConfig_t d = NCCL_EP_DISPATCH_CONFIG_INIT;
  EXPECT_EQ(d.size, sizeof(ncclEpDispatchConfig_t));
  EXPECT_EQ(d.pass_direction, NCCL_EP_FWD_PASS);
  ncclEpLayoutInfo_t li = NCCL_EP_LAYOUT_INFO_INIT;
  EXPECT_EQ(li.size, sizeof(ncclEpLayoutInfo_t));
  EXPECT_EQ(li.expert_counters, nullptr);
  ncclEpCombineConfig_t c = NCCL_EP_COMBINE_CONFIG_INIT;
  EXPECT_EQ(c.magic, NCCL_EP_MAGIC);
  ncclEpHandleConfig_t h = NCCL_EP_HANDLE_CONFIG_INIT;
  EXPECT_EQ(h.size, sizeof(ncclEpHandleConfig_t));
}

TEST(EpHeader, CAndCxxAgreeOnLayouts) {
  EXPECT_EQ(epyardCHeaderGroupConfigSize(), sizeof(ncclEpGroupConfig_t));
  EXPECT_EQ(epyardCHeaderMagicSum(), NCCL_EP_MAGIC * 2u + NCCL_EP_TENSOR_MAGIC);
}

}  // namespace
