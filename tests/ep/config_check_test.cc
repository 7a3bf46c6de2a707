// The cross-rank configuration check of group creation (review: "no cross-rank check of the EP
// group config"), on the CPU: the comparison every rank runs on the gathered signatures.
#include <gtest/gtest.h>

#include <vector>

#include "host/config_check.h"

namespace epyard::ep {
namespace {

std::vector<GroupSignature> world(int n) {
  ncclEpGroupConfig_t c = NCCL_EP_GROUP_CONFIG_INIT;
  c.num_experts = 16;
  c.max_dispatch_tokens_per_rank = 128;
  c.max_token_bytes = 14336;
  return std::vector<GroupSignature>(n, signatureOf(c, 1 << 20, n));
}

TEST(GroupConfigCheck, EqualConfigurationsPass) {
  auto all = world(4);
  EXPECT_EQ(compareSignatures(all.data(), 4), "");
}

TEST(GroupConfigCheck, ADifferentLimitIsNamedWithBothRanksAndValues) {
  auto all = world(4);
  all[2].num_experts = 32;
  const std::string m = compareSignatures(all.data(), 4);
  EXPECT_NE(m.find("num_experts is 16 on rank 0 but 32 on rank 2"), std::string::npos) << m;
  all = world(4);
  all[3].max_token_bytes = 7168;
  EXPECT_NE(compareSignatures(all.data(), 4).find("max_token_bytes"), std::string::npos);
  all = world(4);
  all[1].buffer_bytes += 4096;
  EXPECT_NE(compareSignatures(all.data(), 4).find("rdma_buffer_size"), std::string::npos);
  all = world(2);
  all[1].enable_mask = 1;
  EXPECT_NE(compareSignatures(all.data(), 2).find("enable_mask"), std::string::npos);
}

TEST(GroupConfigCheck, ARankThatSentSomethingElseIsNamed) {
  auto all = world(3);
  all[1] = GroupSignature{};  // bytes from another call at the same collective step
  EXPECT_NE(compareSignatures(all.data(), 3).find("rank 1 sent no EP group configuration"),
            std::string::npos);
}

}  // namespace
}  // namespace epyard::ep
