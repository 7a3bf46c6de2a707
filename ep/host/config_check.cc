#include "host/config_check.h"

namespace epyard::ep {
namespace {

constexpr uint64_t kSignatureMagic = 0x4550594147524f55ull;  // "EPYAGROU"

struct Field {
  const char* name;
  uint64_t GroupSignature::*member;
};
constexpr Field kFields[] = {
    {"num_experts", &GroupSignature::num_experts},
    {"max_dispatch_tokens_per_rank", &GroupSignature::max_dispatch_tokens_per_rank},
    {"max_token_bytes", &GroupSignature::max_token_bytes},
    {"enable_mask", &GroupSignature::enable_mask},
    {"the buffer size (rdma_buffer_size)", &GroupSignature::buffer_bytes},
    {"the number of ranks", &GroupSignature::num_ranks},
};

}  // namespace

GroupSignature signatureOf(const ncclEpGroupConfig_t& config, size_t buffer_bytes, int num_ranks) {
  GroupSignature s{};
  s.magic = kSignatureMagic;
  s.num_experts = config.num_experts;
  s.max_dispatch_tokens_per_rank = config.max_dispatch_tokens_per_rank;
  s.max_token_bytes = config.max_token_bytes;
  s.enable_mask = config.enable_mask != 0 ? 1 : 0;
  s.buffer_bytes = buffer_bytes;
  s.num_ranks = static_cast<uint64_t>(num_ranks);
  return s;
}

std::string compareSignatures(const GroupSignature* all, int num_ranks) {
  for (int r = 0; r < num_ranks; ++r) {
    if (all[r].magic != kSignatureMagic)
      return "rank " + std::to_string(r) +
             " sent no EP group configuration (another library, or another call, at the same step)";
  }
  for (int r = 1; r < num_ranks; ++r) {
    for (const Field& f : kFields) {
      const uint64_t mine = all[0].*f.member, theirs = all[r].*f.member;
      if (mine != theirs)
        return "the ranks' group configurations differ: " + std::string(f.name) + " is " +
               std::to_string(mine) + " on rank 0 but " + std::to_string(theirs) + " on rank " +
               std::to_string(r) + " (every rank must pass the same limits to ncclEpCreateGroup)";
    }
  }
  return "";
}

}  // namespace epyard::ep
