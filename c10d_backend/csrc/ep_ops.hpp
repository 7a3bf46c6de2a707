// EP groups and handles for the Python API (ids are the C handles as integers).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>

namespace epyard::c10d_backend {

int64_t epGroupCreate(const c10::intrusive_ptr<::c10d::Backend>& backend, int64_t device,
                      int64_t num_experts, int64_t max_tokens, int64_t max_token_bytes,
                      bool enable_mask, int64_t timeout_ms, int64_t max_num_sms);
void epGroupDestroy(int64_t group);
int64_t epHandleCreate(int64_t group, bool rank_major, int64_t top_k);
void epHandleDestroy(int64_t handle);

}  // namespace epyard::c10d_backend
