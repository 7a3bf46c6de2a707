#include "host/api_check.h"

#include <cstdio>
#include <cstring>

namespace epyard::ep {
namespace {

std::string str(unsigned long v) { return std::to_string(v); }

std::string hex(unsigned v) {
  char text[16];
  snprintf(text, sizeof(text), "0x%08X", v);
  return text;
}

}  // namespace

const char* dataTypeName(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
      return "ncclInt8";
    case ncclUint8:
      return "ncclUint8";
    case ncclInt32:
      return "ncclInt32";
    case ncclUint32:
      return "ncclUint32";
    case ncclInt64:
      return "ncclInt64";
    case ncclUint64:
      return "ncclUint64";
    case ncclFloat16:
      return "ncclFloat16";
    case ncclFloat32:
      return "ncclFloat32";
    case ncclFloat64:
      return "ncclFloat64";
    case ncclBfloat16:
      return "ncclBfloat16";
    case ncclFloat8e4m3:
      return "ncclFloat8e4m3";
    case ncclFloat8e5m2:
      return "ncclFloat8e5m2";
    default:
      return "an unknown datatype";
  }
}

std::string checkStruct(const void* ptr, unsigned expected_size, unsigned expected_magic,
                        const char* name) {
  if (ptr == nullptr) return std::string(name) + " is NULL";
  const auto* header = static_cast<const unsigned*>(ptr);
  if (header[1] != expected_magic)
    return std::string(name) + ".magic is " + hex(header[1]) + ", expected " + hex(expected_magic) +
           ": initialise it with its NCCL_EP_*_INIT macro";
  if (header[0] != expected_size)
    return std::string(name) + ".size is " + str(header[0]) + ", this library's is " +
           str(expected_size) + ": the caller was built against another nccl_ep.h";
  return "";
}

std::string ncclVersionText(int code) {
  return str(code / 10000) + "." + str(code / 100 % 100) + "." + str(code % 100);
}

std::string checkNcclRuntime(int built, bool versioned, int loaded) {
  const std::string both = "libnccl " + ncclVersionText(loaded) +
                           " is loaded, but libepyard was built against NCCL " +
                           ncclVersionText(built) + "'s headers";
  const std::string fix =
      ": rebuild epyard against the NCCL it runs with (CMake takes EPYARD_NCCL_HOME, else "
      "torch's nvidia-nccl package, else NCCL_HOME)";
  if (loaded < built) return both + ", and NCCL never runs device code built for a newer NCCL" + fix;
  if (!versioned && loaded / 100 != built / 100)
    return both + " (device structs before 2.29.2 are not versioned, so only " +
           str(built / 10000) + "." + str(built / 100 % 100) + ".x runs them)" + fix;
  return "";
}

std::string checkGroupConfig(const ncclEpGroupConfig_t* c, int num_ranks) {
  std::string bad = checkStruct(c, "config");
  if (!bad.empty()) return bad;
  const int algorithm = enumValue(c->algorithm);
  if (algorithm != NCCL_EP_ALGO_LOW_LATENCY && algorithm != NCCL_EP_ALGO_HIGH_THROUGHPUT)
    return "config.algorithm (" + std::to_string(algorithm) +
           ") must be NCCL_EP_ALGO_LOW_LATENCY or NCCL_EP_ALGO_HIGH_THROUGHPUT";
  const bool ll = algorithm == NCCL_EP_ALGO_LOW_LATENCY;
  if (c->num_experts == 0 || c->num_experts % static_cast<unsigned>(num_ranks) != 0)
    return "config.num_experts (" + str(c->num_experts) +
           ") must be a positive multiple of the number of ranks (" + str(num_ranks) + ")";
  if (c->num_experts > kMaxExperts)
    return "config.num_experts (" + str(c->num_experts) + ") is above the supported " +
           str(kMaxExperts);
  if (c->max_dispatch_tokens_per_rank == 0)
    return "config.max_dispatch_tokens_per_rank must be set (tokens one rank sends at most)";
  if (ll && c->max_dispatch_tokens_per_rank > kMaxLlTokensPerRank)
    return "config.max_dispatch_tokens_per_rank (" + str(c->max_dispatch_tokens_per_rank) +
           ") is above the low-latency limit of " + str(kMaxLlTokensPerRank) +
           "; use NCCL_EP_ALGO_HIGH_THROUGHPUT for larger batches";
  if (c->max_recv_tokens_per_rank != NCCL_EP_AUTO &&
      c->max_recv_tokens_per_rank < c->max_dispatch_tokens_per_rank)
    return "config.max_recv_tokens_per_rank (" + str(c->max_recv_tokens_per_rank) +
           ") must be at least max_dispatch_tokens_per_rank (" +
           str(c->max_dispatch_tokens_per_rank) + ") or NCCL_EP_AUTO";
  if (c->max_token_bytes == 0 || c->max_token_bytes % kChannelBlockBytes != 0 ||
      c->max_token_bytes > kMaxTokenBytes)
    return "config.max_token_bytes (" + str(c->max_token_bytes) + ") must be a multiple of " +
           str(kChannelBlockBytes) + " (hidden a multiple of 128 in BF16) up to " +
           str(kMaxTokenBytes);
  if ((c->alloc.alloc_fn == nullptr) != (c->alloc.free_fn == nullptr))
    return "config.alloc: set both alloc_fn and free_fn, or neither";
  if (c->enable_mask && !ll)
    return "config.enable_mask is only supported with NCCL_EP_ALGO_LOW_LATENCY";
  return "";
}

std::string checkTensor(const ncclEpTensor_t* t, const char* name, unsigned ndim,
                        std::initializer_list<ncclDataType_t> types,
                        std::initializer_list<long> sizes, bool optional) {
  if (t == nullptr) return optional ? "" : std::string(name) + " is NULL";
  std::string bad =
      checkStruct(t, static_cast<unsigned>(sizeof(ncclEpTensor_t)), NCCL_EP_TENSOR_MAGIC, name);
  if (!bad.empty()) return bad;
  if (t->ndim != ndim)
    return std::string(name) + " has " + str(static_cast<unsigned long>(t->ndim)) +
           " dimensions, expected " + str(static_cast<unsigned long>(ndim));
  const int type_value = enumValue(t->datatype);
  bool listed = false;
  for (ncclDataType_t d : types) listed |= static_cast<int>(d) == type_value;
  if (!listed) {
    std::string allowed;
    for (ncclDataType_t d : types)
      allowed += (allowed.empty() ? "" : " or ") + std::string(dataTypeName(d));
    const std::string found = type_value >= 0 && type_value < ncclNumTypes
                                  ? dataTypeName(static_cast<ncclDataType_t>(type_value))
                                  : "datatype " + std::to_string(type_value);
    return std::string(name) + " is " + found + ", expected " + allowed;
  }
  if (ndim > 0 && t->sizes == nullptr) return std::string(name) + ".sizes is NULL";
  bool empty = false;
  for (unsigned i = 0; i < ndim; ++i) {
    const long want = sizes.size() > static_cast<size_t>(i) ? sizes.begin()[i] : -1;
    if (want >= 0 && t->sizes[i] != static_cast<size_t>(want))
      return std::string(name) + ".sizes[" + str(static_cast<unsigned long>(i)) + "] is " +
             str(t->sizes[i]) + ", expected " + str(static_cast<unsigned long>(want));
    empty |= t->sizes[i] == 0;
  }
  if (!empty && t->data == nullptr) return std::string(name) + ".data is NULL";
  return "";
}

}  // namespace epyard::ep
