// Helpers of the EP GPU tests: device tensors, routings generated identically on every rank
// (so each rank can run the CPU reference for all of them), expert outputs, and checks that
// name the first difference (with the row's origin decoded from the token's first channels).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nccl_ep.h"
#include "reference/ll_reference.h"

namespace epyard::ep::test {

extern thread_local int g_rank;  // this thread's rank (virtual ranks are threads)

[[noreturn]] void die(const char* fmt, ...);
#define CUDA_CHECK(call)                                                                   \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) ::epyard::ep::test::die("%s: %s (%s:%d)", #call,                \
                                                   cudaGetErrorString(e_), __FILE__, __LINE__); \
  } while (0)
#define EP_OK(call, group)                                                                 \
  do {                                                                                     \
    ncclResult_t r_ = (call);                                                              \
    if (r_ != ncclSuccess) ::epyard::ep::test::die("%s: %s: %s (%s:%d)", #call,            \
                                                   ncclGetErrorString(r_),                 \
                                                   ncclEpGetLastError(group), __FILE__, __LINE__); \
  } while (0)

// A device tensor with its descriptor.
struct DevTensor {
  ncclEpTensor_t t = NCCL_EP_TENSOR_INIT;
  std::vector<size_t> sizes;
  void* data = nullptr;
  size_t bytes = 0;
  DevTensor() = default;
  DevTensor(ncclDataType_t type, std::vector<size_t> dims);
  DevTensor(const DevTensor&) = delete;
  DevTensor& operator=(const DevTensor&) = delete;
  ~DevTensor();
  ncclEpTensor_t* get() { return &t; }
  template <typename T>
  void upload(const std::vector<T>& v) {
    CUDA_CHECK(cudaMemcpy(data, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  template <typename T>
  std::vector<T> download() const {
    std::vector<T> v(bytes / sizeof(T));
    CUDA_CHECK(cudaMemcpy(v.data(), data, bytes, cudaMemcpyDeviceToHost));
    return v;
  }
};

struct RoutingSpec {
  double drop = 0.1;   // chance of a -1 entry
  double repeat = 0;   // chance an entry repeats an earlier expert of the same token
  int empty_rank = -1; // this rank sends zero tokens
  bool full = false;   // every rank sends B tokens (else B - rank)
};

// Routing of every rank for `seed`: tokens carry (rank, token) in channels 0..2.
std::vector<ref::RankRouting> makeRouting(const ref::LlShape& s, uint64_t seed,
                                          const RoutingSpec& spec);

// What rank `rank` feeds combine: a function of each row's origin and expert, exact in BF16.
std::vector<uint16_t> expertOutputs(const ref::LlShape& s, const ref::LlDispatchResult& d,
                                    bool rank_major);

// Checks; each returns "" or a description of the first difference.
std::string compareDispatch(const ref::LlShape& s, const ref::LlOptions& o,
                            const ref::LlDispatchResult& want, const DevTensor& tokens,
                            const DevTensor* scales, const DevTensor* topk_idx,
                            const DevTensor* topk_weights);
std::string compareCounters(const ref::LlDispatchResult& want,
                            const DevTensor& expert_counters, const DevTensor& src_counters,
                            const DevTensor& offsets, const DevTensor& total);
std::string compareCombine(const std::vector<uint16_t>& want, const DevTensor& out);

uint64_t hashBytes(const void* p, size_t n, uint64_t h = 1469598103934665603ull);

}  // namespace epyard::ep::test
