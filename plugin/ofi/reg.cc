// Memory registration with one libfabric domain.
#include <cstring>

#include "ofi/ofi.h"

namespace epyard::net::ofi {

bool OfiNic::registerMemory(void* addr, size_t len, int ptr_type, int dmabuf_fd,
                            uint64_t dmabuf_offset, MemoryRegistration* out,
                            std::string* error) {
  if (ptr_type != NCCL_PTR_HOST && !(info_.ptr_support & NCCL_PTR_CUDA)) {
    *error = "this provider cannot register GPU memory (no FI_HMEM); use host buffers";
    return false;
  }
  if (dmabuf_fd >= 0) {
    *error = "DMA-BUF registration is not supported by the libfabric transport yet";
    return false;
  }
  struct iovec iov = {addr, len};
  struct fi_mr_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.mr_iov = &iov;
  attr.iov_count = 1;
  attr.access = FI_SEND | FI_RECV | FI_WRITE | FI_READ | FI_REMOTE_WRITE | FI_REMOTE_READ;
  attr.requested_key = next_key_.fetch_add(1);
  attr.iface = (ptr_type == NCCL_PTR_HOST) ? FI_HMEM_SYSTEM : FI_HMEM_CUDA;
  struct fid_mr* mr = nullptr;
  int rc = fi_mr_regattr(domain_, &attr, 0, &mr);
  if (rc != 0) {
    *error = std::string("fi_mr_regattr: ") + api_->strerror(-rc);
    return false;
  }
  out->provider_handle = mr;
  out->desc = fi_mr_desc(mr);
  out->key = fi_mr_key(mr);
  return true;
}

void OfiNic::deregisterMemory(MemoryRegistration* reg) {
  if (reg->provider_handle != nullptr) {
    fi_close(&static_cast<struct fid_mr*>(reg->provider_handle)->fid);
    reg->provider_handle = nullptr;
  }
}

}  // namespace epyard::net::ofi
