// EP groups and handles for the Python API (ids are the C handles as integers).
#pragma once

#include <nccl_ep.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>

#include <optional>

namespace epyard::c10d_backend {

// An ncclEpTensor_t view of a contiguous CUDA torch tensor (dtype mapped, sizes held here, no
// allocation); errors name the argument.
struct EpTensor {
  static constexpr int kMaxDims = 8;
  ncclEpTensor_t t = NCCL_EP_TENSOR_INIT;
  size_t sizes[kMaxDims];
  EpTensor(const at::Tensor& x, const char* name);
  EpTensor(const EpTensor&) = delete;  // t.sizes points into this object
  EpTensor& operator=(const EpTensor&) = delete;
};

// A 1-D ncclEpTensor_t over `n` elements at `data` (slices of one allocation, without views).
struct RawTensor {
  ncclEpTensor_t t = NCCL_EP_TENSOR_INIT;
  size_t size;
  RawTensor(void* data, ncclDataType_t type, size_t n);
  RawTensor(const RawTensor&) = delete;
  RawTensor& operator=(const RawTensor&) = delete;
};

// The output side of a dispatch as the C API takes it: tokens, optional scales / topk_idx /
// topk_weights (undefined or empty = not asked for) and `counters`, int32 [2L + R + 1] holding
// expert counters, source-rank counters, expert offsets and the total in a row. Built once, it
// serves any number of calls (the tensors must outlive it).
class DispatchTarget {
 public:
  DispatchTarget(const at::Tensor& tokens, const std::optional<at::Tensor>& scales,
                 const std::optional<at::Tensor>& topk_idx,
                 const std::optional<at::Tensor>& topk_weights, const at::Tensor& counters,
                 int64_t local_experts, int64_t num_ranks);
  DispatchTarget(const DispatchTarget&) = delete;  // the C structs point into this object
  DispatchTarget& operator=(const DispatchTarget&) = delete;
  // ncclEpDispatch of `x` (and its weights) on `handle` into these outputs, current stream.
  void dispatch(int64_t handle, const at::Tensor& x, const std::optional<at::Tensor>& topk_weights,
                bool round_scales, bool send_only);

 private:
  EpTensor tokens_;
  std::optional<EpTensor> scales_, idx_, weights_;
  RawTensor expert_counters_, rank_counters_, offsets_, total_;
  ncclEpDispatchOutputs_t out_ = NCCL_EP_DISPATCH_OUTPUTS_INIT;
  ncclEpLayoutInfo_t info_ = NCCL_EP_LAYOUT_INFO_INIT;
};

// The output of a combine as the C API takes it (bf16 [T, H]); built once, used by any call.
class CombineTarget {
 public:
  explicit CombineTarget(const at::Tensor& out);
  CombineTarget(const CombineTarget&) = delete;
  CombineTarget& operator=(const CombineTarget&) = delete;
  void combine(int64_t handle, const at::Tensor& x, const std::optional<at::Tensor>& topk_weights,
               bool send_only);

 private:
  EpTensor out_tensor_;
  ncclEpCombineOutputs_t out_ = NCCL_EP_COMBINE_OUTPUTS_INIT;
};

int64_t epGroupCreate(const c10::intrusive_ptr<::c10d::Backend>& backend, int64_t device,
                      int64_t num_experts, int64_t max_tokens, int64_t max_token_bytes,
                      bool enable_mask, int64_t timeout_ms, int64_t max_num_sms);
void epGroupDestroy(int64_t group);
int64_t epHandleCreate(int64_t group, bool rank_major, int64_t top_k);
void epHandleDestroy(int64_t handle);

}  // namespace epyard::c10d_backend
