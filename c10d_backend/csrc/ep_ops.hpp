// EP groups and handles for the Python API (ids are the C handles as integers).
#pragma once

#include <nccl_ep.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>

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

int64_t epGroupCreate(const c10::intrusive_ptr<::c10d::Backend>& backend, int64_t device,
                      int64_t num_experts, int64_t max_tokens, int64_t max_token_bytes,
                      bool enable_mask, int64_t timeout_ms, int64_t max_num_sms);
void epGroupDestroy(int64_t group);
int64_t epHandleCreate(int64_t group, bool rank_major, int64_t top_k);
void epHandleDestroy(int64_t handle);

}  // namespace epyard::c10d_backend
