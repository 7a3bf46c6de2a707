#include "engine/reg_cache.h"

#include <algorithm>

namespace epyard::net {

RegCache::RegCache(std::vector<Nic*> nics, size_t page_size)
    : nics_(std::move(nics)), page_size_(page_size) {}

RegCache::~RegCache() {
  for (RegEntry* e : entries_) {
    for (size_t i = 0; i < e->regs.size(); ++i) nics_[i]->deregisterMemory(&e->regs[i]);
    delete e;
  }
}

ncclResult_t RegCache::acquire(void* addr, size_t len, int ptr_type, int dmabuf_fd,
                               uint64_t dmabuf_offset, RegEntry** out, std::string* error) {
  if (addr == nullptr || len == 0) {
    *error = "cannot register a null pointer or an empty range";
    return ncclInvalidArgument;
  }
  if (ptr_type != NCCL_PTR_HOST && ptr_type != NCCL_PTR_CUDA && ptr_type != NCCL_PTR_DMABUF) {
    *error = "unknown pointer type " + std::to_string(ptr_type);
    return ncclInvalidArgument;
  }
  uintptr_t start = reinterpret_cast<uintptr_t>(addr) & ~(page_size_ - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(addr) + len + page_size_ - 1) & ~(page_size_ - 1);
  bool cacheable = dmabuf_fd < 0;
  std::lock_guard<std::mutex> lock(mutex_);
  if (cacheable) {
    for (RegEntry* e : entries_) {
      if (e->cached && e->ptr_type == ptr_type && e->start <= start && end <= e->end) {
        ++e->refs;
        *out = e;
        return ncclSuccess;
      }
    }
  }
  auto* e = new RegEntry;
  e->start = start;
  e->end = end;
  e->ptr_type = ptr_type;
  e->cached = cacheable;
  e->refs = 1;
  e->regs.resize(nics_.size());
  // A DMA-BUF registration covers exactly what the caller named; host memory covers pages.
  void* reg_addr = cacheable ? reinterpret_cast<void*>(start) : addr;
  size_t reg_len = cacheable ? end - start : len;
  for (size_t i = 0; i < nics_.size(); ++i) {
    if (!nics_[i]->registerMemory(reg_addr, reg_len, ptr_type, dmabuf_fd, dmabuf_offset,
                                  &e->regs[i], error)) {
      for (size_t j = 0; j < i; ++j) nics_[j]->deregisterMemory(&e->regs[j]);
      delete e;
      return ncclSystemError;
    }
  }
  entries_.push_back(e);
  *out = e;
  return ncclSuccess;
}

bool RegCache::release(RegEntry* entry) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find(entries_.begin(), entries_.end(), entry);
  if (it == entries_.end()) return false;
  if (--entry->refs == 0) {
    for (size_t i = 0; i < entry->regs.size(); ++i) nics_[i]->deregisterMemory(&entry->regs[i]);
    entries_.erase(it);
    delete entry;
  }
  return true;
}

size_t RegCache::liveEntries() {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

}  // namespace epyard::net
