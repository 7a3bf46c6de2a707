// Memory registration with one libfabric domain.
#include <dlfcn.h>

#include <cstring>

#include "ofi/ofi.h"

namespace epyard::net::ofi {
namespace {

// The CUDA device that owns `ptr`, from the driver (opened lazily; -1 when unknown).
int cudaDeviceOf(void* ptr) {
  using GetAttribute = int (*)(void* data, int attribute, uint64_t ptr);
  static GetAttribute get = [] {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    return lib ? reinterpret_cast<GetAttribute>(dlsym(lib, "cuPointerGetAttribute")) : nullptr;
  }();
  constexpr int kDeviceOrdinal = 9;  // CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
  int device = -1;
  if (get == nullptr || get(&device, kDeviceOrdinal, reinterpret_cast<uint64_t>(ptr)) != 0)
    return -1;
  return device;
}

}  // namespace

bool OfiNic::registerMemory(void* addr, size_t len, int ptr_type, int dmabuf_fd,
                            uint64_t dmabuf_offset, MemoryRegistration* out, std::string* error) {
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
  attr.iface = FI_HMEM_SYSTEM;
  if (ptr_type == NCCL_PTR_CUDA) {
    int device = cudaDeviceOf(addr);
    if (device < 0) {
      *error = "cannot tell which CUDA device owns this pointer (is it device memory?)";
      return false;
    }
    attr.iface = FI_HMEM_CUDA;
    attr.device.cuda = device;
  }
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
