// The page-range registration cache, against a fake NIC that records what it registered.
#include <gtest/gtest.h>

#include <map>

#include "engine/reg_cache.h"

namespace epyard::net {
namespace {

class FakeNic : public Nic {
 public:
  const NicInfo& info() const override { return info_; }
  bool registerMemory(void* addr, size_t len, int ptr_type, int fd, uint64_t off,
                      MemoryRegistration* out, std::string* error) override {
    if (fail_next) {
      fail_next = false;
      *error = "injected failure";
      return false;
    }
    ++registrations;
    out->key = next_key++;
    out->provider_handle = reinterpret_cast<void*>(out->key);
    live[out->key] = {reinterpret_cast<uintptr_t>(addr), len};
    return true;
  }
  void deregisterMemory(MemoryRegistration* reg) override {
    EXPECT_EQ(live.erase(reg->key), 1u) << "deregistered twice or never registered";
    reg->provider_handle = nullptr;
  }
  std::unique_ptr<Endpoint> openEndpoint(std::string*) override { return nullptr; }
  uint64_t targetAddress(uint64_t addr, uint64_t) const override { return addr; }

  NicInfo info_;
  int registrations = 0;
  uint64_t next_key = 100;
  bool fail_next = false;
  std::map<uint64_t, std::pair<uintptr_t, size_t>> live;
};

void* at(uintptr_t a) { return reinterpret_cast<void*>(a); }

TEST(RegCache, RegistersWholePages) {
  FakeNic nic;
  RegCache cache({&nic});
  RegEntry* e = nullptr;
  std::string err;
  ASSERT_EQ(cache.acquire(at(0x10010), 100, NCCL_PTR_HOST, -1, 0, &e, &err), ncclSuccess);
  EXPECT_EQ(e->start, 0x10000u);
  EXPECT_EQ(e->end, 0x11000u);
  ASSERT_EQ(nic.live.size(), 1u);
  EXPECT_EQ(nic.live.begin()->second.first, 0x10000u);
  EXPECT_EQ(nic.live.begin()->second.second, 0x1000u);
}

TEST(RegCache, CoveredRangeTakesAReference) {
  FakeNic nic;
  RegCache cache({&nic});
  RegEntry *a = nullptr, *b = nullptr, *c = nullptr;
  std::string err;
  ASSERT_EQ(cache.acquire(at(0x100000), 0x10000, NCCL_PTR_HOST, -1, 0, &a, &err), ncclSuccess);
  ASSERT_EQ(cache.acquire(at(0x104000), 0x100, NCCL_PTR_HOST, -1, 0, &b, &err), ncclSuccess);
  EXPECT_EQ(a, b) << "a range inside a live registration reuses it";
  EXPECT_EQ(nic.registrations, 1);
  // Overlapping but not covered: a new registration.
  ASSERT_EQ(cache.acquire(at(0x10f000), 0x2000, NCCL_PTR_HOST, -1, 0, &c, &err), ncclSuccess);
  EXPECT_NE(a, c);
  EXPECT_EQ(nic.registrations, 2);
  // Same range, other memory kind: never shared.
  RegEntry* d = nullptr;
  ASSERT_EQ(cache.acquire(at(0x104000), 0x100, NCCL_PTR_CUDA, -1, 0, &d, &err), ncclSuccess);
  EXPECT_NE(a, d);
  EXPECT_EQ(cache.liveEntries(), 3u);
}

TEST(RegCache, LastReleaseDeregisters) {
  FakeNic nic;
  RegCache cache({&nic});
  RegEntry *a = nullptr, *b = nullptr;
  std::string err;
  ASSERT_EQ(cache.acquire(at(0x200000), 4096, NCCL_PTR_HOST, -1, 0, &a, &err), ncclSuccess);
  ASSERT_EQ(cache.acquire(at(0x200000), 4096, NCCL_PTR_HOST, -1, 0, &b, &err), ncclSuccess);
  EXPECT_TRUE(cache.release(a));
  EXPECT_EQ(nic.live.size(), 1u) << "one reference still holds it";
  EXPECT_TRUE(cache.release(b));
  EXPECT_TRUE(nic.live.empty());
  EXPECT_EQ(cache.liveEntries(), 0u);
  EXPECT_FALSE(cache.release(a)) << "a released entry is no longer ours";
}

TEST(RegCache, OneRegistrationPerNic) {
  FakeNic n0, n1;
  RegCache cache({&n0, &n1});
  RegEntry* e = nullptr;
  std::string err;
  ASSERT_EQ(cache.acquire(at(0x300000), 8192, NCCL_PTR_HOST, -1, 0, &e, &err), ncclSuccess);
  ASSERT_EQ(e->regs.size(), 2u);
  EXPECT_EQ(n0.live.size(), 1u);
  EXPECT_EQ(n1.live.size(), 1u);
}

TEST(RegCache, FailureOnOneNicUndoesTheOthers) {
  FakeNic n0, n1;
  RegCache cache({&n0, &n1});
  n1.fail_next = true;
  RegEntry* e = nullptr;
  std::string err;
  EXPECT_NE(cache.acquire(at(0x400000), 4096, NCCL_PTR_HOST, -1, 0, &e, &err), ncclSuccess);
  EXPECT_EQ(err, "injected failure");
  EXPECT_TRUE(n0.live.empty()) << "the first NIC's registration must be undone";
  EXPECT_EQ(cache.liveEntries(), 0u);
}

TEST(RegCache, RejectsNullEmptyAndUnknownType) {
  FakeNic nic;
  RegCache cache({&nic});
  RegEntry* e = nullptr;
  std::string err;
  EXPECT_EQ(cache.acquire(nullptr, 10, NCCL_PTR_HOST, -1, 0, &e, &err), ncclInvalidArgument);
  EXPECT_EQ(cache.acquire(at(0x1000), 0, NCCL_PTR_HOST, -1, 0, &e, &err), ncclInvalidArgument);
  EXPECT_EQ(cache.acquire(at(0x1000), 10, 0x40, -1, 0, &e, &err), ncclInvalidArgument);
  EXPECT_NE(err.find("pointer type"), std::string::npos);
  EXPECT_EQ(nic.registrations, 0);
}

TEST(RegCache, DmaBufIsNeverShared) {
  FakeNic nic;
  RegCache cache({&nic});
  RegEntry *a = nullptr, *b = nullptr;
  std::string err;
  ASSERT_EQ(cache.acquire(at(0x500000), 4096, NCCL_PTR_DMABUF, 5, 0, &a, &err), ncclSuccess);
  ASSERT_EQ(cache.acquire(at(0x500000), 4096, NCCL_PTR_DMABUF, 5, 0, &b, &err), ncclSuccess);
  EXPECT_NE(a, b);
  EXPECT_EQ(nic.registrations, 2);
}

}  // namespace
}  // namespace epyard::net
