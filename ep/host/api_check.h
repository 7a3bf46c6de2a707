// Argument checks of the public EP API, on the host, before any device work. Each returns an
// empty string when the argument is fine, else a message that names the argument, its value
// and the rule ("num_experts (250) must be a multiple of the number of ranks (8)").
#pragma once

#include <cstring>
#include <initializer_list>
#include <string>

#include "device/ll_types.h"
#include "nccl_ep.h"

namespace epyard::ep {

// Limits of this implementation, named in messages (the kernels' own limits where they have one).
constexpr unsigned kMaxExperts = 512;
constexpr unsigned kMaxLlTokensPerRank = 1024;
constexpr unsigned kMaxTopK = kLlMaxTopK;
constexpr unsigned kMaxTokenBytes = 65536;                // hidden 32768 in BF16
constexpr unsigned kChannelBlockBytes = 2 * kLlScaleBlock;  // BF16 channels sharing one FP8 scale
static_assert(kMaxExperts <= kLlMaxRanks, "the LL buffers hold a mask entry per rank, and every rank an expert");

// The integer value of a caller's enum argument, read without loading it through the enum type
// (a value outside the enumerators would make that load undefined behaviour).
template <typename Enum>
int enumValue(const Enum& e) {
  static_assert(sizeof(Enum) == sizeof(int), "enum is int-sized");
  int v;
  std::memcpy(&v, &e, sizeof(v));
  return v;
}

// A public struct: non-null, `size` and `magic` as the INIT macro sets them.
std::string checkStruct(const void* ptr, unsigned expected_size, unsigned expected_magic,
                        const char* name);

template <typename T>
std::string checkStruct(const T* ptr, const char* name) {
  return checkStruct(ptr, static_cast<unsigned>(sizeof(T)), NCCL_EP_MAGIC, name);
}

std::string checkGroupConfig(const ncclEpGroupConfig_t* config, int num_ranks);

// Whether a library built against NCCL `built` (NCCL_VERSION_CODE of the headers) can run on
// the libnccl `loaded` (ncclGetVersion). Device-API structs are versioned from 2.29.2 on
// (`versioned`: the headers have NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER), and NCCL accepts
// device code built with any versioned release up to its own; 2.28 structs are understood only
// by 2.28 libraries. Never a library older than the headers. "" or a message naming both.
std::string checkNcclRuntime(int built, bool versioned, int loaded);
std::string ncclVersionText(int code);

// A tensor (no heap allocation on the success path: this runs on every dispatch): valid header, `ndim` dimensions, datatype among `types`, and each size equal to
// `sizes[i]` unless that entry is -1 (any). `optional`: NULL is accepted.
std::string checkTensor(const ncclEpTensor_t* t, const char* name, unsigned ndim,
                        std::initializer_list<ncclDataType_t> types,
                        std::initializer_list<long> sizes, bool optional = false);

const char* dataTypeName(ncclDataType_t t);

}  // namespace epyard::ep
