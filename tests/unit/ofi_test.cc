// The libfabric transport's provider query and peer addresses, without NCCL: FI_HMEM is asked
// for first (so EFA advertises GPU memory) and dropped for providers without it (tcp), and a
// peer address whose length is not the provider's is refused (the length comes off the wire).
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "ofi/ofi.h"

namespace epyard::net::ofi {
namespace {

const OfiApi* realApi() {
  std::string why;
  return loadOfi(&why);
}

// A stand-in for fi_getinfo: records the caps of every query and answers from a copy of the
// hints, as a provider that has FI_HMEM (or not) would.
std::vector<uint64_t> g_asked;
bool g_provider_has_hmem = false;
const OfiApi* g_real = nullptr;

int stubGetinfo(uint32_t, const char*, const char*, uint64_t, const struct fi_info* hints,
                struct fi_info** out) {
  g_asked.push_back(hints->caps);
  *out = nullptr;
  if ((hints->caps & FI_HMEM) && !g_provider_has_hmem) return -FI_ENODATA;
  *out = g_real->dupinfo(hints);
  return *out == nullptr ? -FI_ENOMEM : 0;
}

OfiApi stubApi(bool has_hmem) {
  g_real = realApi();
  g_asked.clear();
  g_provider_has_hmem = has_hmem;
  OfiApi api = *g_real;
  api.getinfo = stubGetinfo;
  return api;
}

TEST(OfiQuery, AsksForGpuMemoryFirstAndAdvertisesIt) {
  if (realApi() == nullptr) GTEST_SKIP() << "libfabric.so.1 is not installed";
  OfiApi api = stubApi(true);
  struct fi_info* list = nullptr;
  std::string why;
  ASSERT_EQ(queryProvider(&api, "efa", &list, &why), 0) << why;
  ASSERT_EQ(g_asked.size(), 1u);
  EXPECT_TRUE(g_asked[0] & FI_HMEM) << "FI_HMEM is a primary capability: it must be asked for";
  ASSERT_NE(list, nullptr);
  EXPECT_TRUE(describeNic(list, 0).ptr_support & NCCL_PTR_CUDA);
  api.freeinfo(list);
}

TEST(OfiQuery, FallsBackWithoutGpuMemoryForProvidersThatLackIt) {
  if (realApi() == nullptr) GTEST_SKIP() << "libfabric.so.1 is not installed";
  OfiApi api = stubApi(false);
  struct fi_info* list = nullptr;
  std::string why;
  ASSERT_EQ(queryProvider(&api, "tcp;ofi_rxm", &list, &why), 0) << why;
  ASSERT_EQ(g_asked.size(), 2u);
  EXPECT_TRUE(g_asked[0] & FI_HMEM);
  EXPECT_FALSE(g_asked[1] & FI_HMEM);
  EXPECT_EQ(g_asked[0] & ~FI_HMEM, g_asked[1]) << "only FI_HMEM is dropped";
  ASSERT_NE(list, nullptr);
  EXPECT_FALSE(describeNic(list, 0).ptr_support & NCCL_PTR_CUDA);
  EXPECT_TRUE(describeNic(list, 0).ptr_support & NCCL_PTR_HOST);
  api.freeinfo(list);
}

TEST(OfiQuery, AMissingProviderIsNamed) {
  if (realApi() == nullptr) GTEST_SKIP() << "libfabric.so.1 is not installed";
  struct fi_info* list = nullptr;
  std::string why;
  EXPECT_NE(queryProvider(realApi(), "no_such_provider", &list, &why), 0);
  EXPECT_EQ(list, nullptr);
  EXPECT_NE(why.find("no_such_provider"), std::string::npos) << why;
}

TEST(OfiEndpoint, RefusesPeerAddressesOfTheWrongLength) {
  setenv("FI_TCP_IFACE", "lo", 0);
  std::string why;
  std::unique_ptr<Transport> t = openTransport("tcp;ofi_rxm", &why);
  if (t == nullptr) GTEST_SKIP() << "no tcp;ofi_rxm provider: " << why;
  std::string error;
  std::unique_ptr<Endpoint> a = t->nic(0)->openEndpoint(&error);
  std::unique_ptr<Endpoint> b = t->nic(0)->openEndpoint(&error);
  ASSERT_NE(a, nullptr) << error;
  ASSERT_NE(b, nullptr) << error;
  std::vector<uint8_t> addr;
  ASSERT_TRUE(b->localAddress(&addr)) << b->lastError();
  std::vector<uint8_t> padded(addr);
  padded.resize(addr.size() + 64, 0xab);
  uint64_t peer = 0;
  EXPECT_FALSE(a->addPeer(padded.data(), size_t{1} << 30, &peer)) << "a 1 GiB length";
  EXPECT_NE(a->lastError().find(std::to_string(addr.size())), std::string::npos) << a->lastError();
  EXPECT_FALSE(a->addPeer(padded.data(), addr.size() + 1, &peer));
  EXPECT_FALSE(a->addPeer(addr.data(), addr.size() - 1, &peer));
  EXPECT_FALSE(a->addPeer(nullptr, addr.size(), &peer));
  EXPECT_TRUE(a->addPeer(addr.data(), addr.size(), &peer)) << a->lastError();
  EXPECT_NE(a->peerName(peer), "unknown peer");
}

}  // namespace
}  // namespace epyard::net::ofi
