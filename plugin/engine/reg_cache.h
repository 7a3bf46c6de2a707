// Page-range registration cache shared by every comm of one device (NCCL is told
// regIsGlobal=1): registering a range already covered by a live registration of the same kind
// takes a reference instead of registering again. One registration holds one
// MemoryRegistration per NIC of the device, so any rail can use it.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "engine/transport.h"

namespace epyard::net {

struct RegEntry {
  uint32_t magic = kMagic;
  uintptr_t start = 0;  // page-aligned
  uintptr_t end = 0;    // page-aligned, exclusive
  int ptr_type = NCCL_PTR_HOST;
  bool cached = true;  // DMA-BUF registrations are not shared
  int refs = 0;
  std::vector<MemoryRegistration> regs;           // one per NIC, same order as the device's NICs
  static constexpr uint32_t kMagic = 0x52454731;  // "REG1"
};

class RegCache {
 public:
  explicit RegCache(std::vector<Nic*> nics, size_t page_size = 4096);
  ~RegCache();
  // Registers [addr, addr+len) (or takes a reference on a registration covering it).
  ncclResult_t acquire(void* addr, size_t len, int ptr_type, int dmabuf_fd, uint64_t dmabuf_offset,
                       RegEntry** out, std::string* error);
  // Drops a reference; the last one deregisters. False if `entry` is not ours.
  bool release(RegEntry* entry);
  size_t liveEntries();

 private:
  std::vector<Nic*> nics_;
  size_t page_size_;
  std::mutex mutex_;
  std::vector<RegEntry*> entries_;
};

}  // namespace epyard::net
