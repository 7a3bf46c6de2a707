// The part of a group's configuration every rank must share: senders compute offsets into their
// peers' buffers from their own layout, so a rank whose limits differ would write flags and rows
// at the wrong places, silently. Group creation gathers every rank's signature and refuses,
// naming the field and the ranks, when they differ.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "nccl_ep.h"

namespace epyard::ep {

struct GroupSignature {
  uint64_t magic;
  uint64_t num_experts;
  uint64_t max_dispatch_tokens_per_rank;
  uint64_t max_token_bytes;
  uint64_t enable_mask;
  uint64_t buffer_bytes;  // the layout's size, rdma_buffer_size included
  uint64_t num_ranks;
  uint64_t reserved;
};
static_assert(sizeof(GroupSignature) == 64, "GroupSignature is exchanged as 8 uint64 words");

GroupSignature signatureOf(const ncclEpGroupConfig_t& config, size_t buffer_bytes, int num_ranks);
// "" when every rank's signature equals rank 0's; else the first difference, naming the field,
// both ranks and both values (the same text on every rank: they compare the same data).
std::string compareSignatures(const GroupSignature* all, int num_ranks);

}  // namespace epyard::ep
