// Which transport the plugin opens (EPYARD_NET_TRANSPORT, EPYARD_IB_*), and what NCCL is told
// about verbs NICs, through the engine's entry points with the emulated device as libibverbs.
// The engine initialises once per process, so every case runs in a child (EXPECT_EXIT); the
// child exits 0 when all its checks hold and prints the first that did not.
#include <gtest/gtest.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/net.h"

namespace epyard::net {
namespace {

std::string g_log;

void captureLog(ncclDebugLogLevel, unsigned long, const char*, int, const char* fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  g_log += line;
  g_log += "\n";
}

[[noreturn]] void verdict(const std::string& failure) {
  if (!failure.empty()) fprintf(stderr, "%s\nplugin log:\n%s", failure.c_str(), g_log.c_str());
  fflush(stderr);
  std::_Exit(failure.empty() ? 0 : 1);
}

void useFakeVerbs(const char* devices) {
  setenv("EPYARD_IB_VERBS_LIBRARY", EPYARD_FAKEVERBS_PATH, 1);
  setenv("EPYARD_FAKEVERBS_DEVICES", devices, 1);
}

void useLoopbackOfi() {
  setenv("EPYARD_OFI_PROVIDER", "tcp;ofi_rxm", 1);
  setenv("FI_TCP_IFACE", "lo", 1);
}

// Initialises the engine; the names NCCL would see, or a failure message.
std::string initAndList(ncclResult_t expect, std::vector<std::string>* names) {
  const ncclResult_t got = netInit(captureLog);
  if (got != expect) return "netInit returned " + std::to_string(got) + ", expected " + std::to_string(expect);
  if (got != ncclSuccess) return "";
  int n = 0;
  if (netDevices(&n) != ncclSuccess) return "netDevices failed";
  for (int d = 0; d < n; ++d) {
    NetProperties p;
    if (netGetProperties(d, &p) != ncclSuccess) return "netGetProperties failed";
    names->push_back(p.name);
  }
  return "";
}

bool logHas(const std::string& text) { return g_log.find(text) != std::string::npos; }

TEST(TransportSelection, AutoOpensEveryActiveVerbsPort) {
  EXPECT_EXIT(
      {
        useFakeVerbs("fakeib0:ib,fakeroce0:roce");
        std::vector<std::string> names;
        std::string f = initAndList(ncclSuccess, &names);
        if (f.empty() && (names.size() != 2 || names[0] != "fakeib0:1" || names[1] != "fakeroce0:1"))
          f = "expected fakeib0:1 and fakeroce0:1, got " + std::to_string(names.size()) + " devices";
        NetProperties p;
        if (f.empty() && netGetProperties(0, &p) == ncclSuccess) {
          if (p.speed_mbps != 200000) f = "fakeib0:1 (4x HDR) reported " + std::to_string(p.speed_mbps) + " Mb/s";
          if (!(p.ptr_support & NCCL_PTR_HOST)) f = "host memory not in ptrSupport";
        }
        if (f.empty() && !logHas("verbs transport, 2 NIC(s)")) f = "no INFO naming the verbs transport";
        verdict(f);
      },
      ::testing::ExitedWithCode(0), "");
}

// DMA-BUF is advertised when the probe says the device can import one, not merely when the
// library has the entry point.
TEST(TransportSelection, DmabufFollowsTheProbe) {
  for (const char* on : {"0", "1"}) {
    EXPECT_EXIT(
        {
          useFakeVerbs("fakeib0:ib");
          setenv("EPYARD_FAKEVERBS_DMABUF", on, 1);
          std::vector<std::string> names;
          std::string f = initAndList(ncclSuccess, &names);
          NetProperties p;
          const bool want = on[0] == '1';
          if (f.empty() && netGetProperties(0, &p) == ncclSuccess && ((p.ptr_support & NCCL_PTR_DMABUF) != 0) != want)
            f = std::string("EPYARD_FAKEVERBS_DMABUF=") + on + ": ptrSupport " + std::to_string(p.ptr_support);
          verdict(f);
        },
        ::testing::ExitedWithCode(0), "");
  }
}

// RoCE GID choice: an index the port has is used; one it lacks leaves no usable port, and the
// forced transport's failure names the variable.
TEST(TransportSelection, GidIndexIsHonouredAndCheckedAgainstThePort) {
  for (const char* index : {"0", "5"}) {
    EXPECT_EXIT(
        {
          setenv("EPYARD_NET_TRANSPORT", "verbs", 1);
          useFakeVerbs("fakeroce0:roce");
          setenv("EPYARD_IB_GID_INDEX", index, 1);
          const bool exists = index[0] == '0';
          std::vector<std::string> names;
          std::string f = initAndList(exists ? ncclSuccess : ncclSystemError, &names);
          if (f.empty() && !exists && !logHas("no GID at index 5 (EPYARD_IB_GID_INDEX)"))
            f = "the failure does not name the GID index and its variable";
          verdict(f);
        },
        ::testing::ExitedWithCode(0), "");
  }
}

// Bad verbs settings: the forced transport's failure names the variable and the value.
TEST(TransportSelection, BadHcaFilterAndCmAddressAreNamed) {
  struct Bad {
    const char* var;
    const char* value;
    const char* says;
  };
  for (const Bad& bad : {Bad{"EPYARD_IB_HCA", "fakeib0:x", "EPYARD_IB_HCA: entry \"fakeib0:x\": port \"x\" is not a number"},
                         Bad{"EPYARD_IB_CM_ADDR", "not-an-ip", "EPYARD_IB_CM_ADDR=\"not-an-ip\" is not an IPv4 address"}}) {
    EXPECT_EXIT(
        {
          setenv("EPYARD_NET_TRANSPORT", "verbs", 1);
          useFakeVerbs("fakeib0:ib");
          setenv(bad.var, bad.value, 1);
          std::vector<std::string> names;
          std::string f = initAndList(ncclSystemError, &names);
          if (f.empty() && !logHas(bad.says)) f = std::string("the failure does not say \"") + bad.says + "\"";
          verdict(f);
        },
        ::testing::ExitedWithCode(0), "");
  }
}

TEST(TransportSelection, HcaFilterSelectsPorts) {
  EXPECT_EXIT(
      {
        useFakeVerbs("fakeib0:ib,fakeroce0:roce,fakeib1:ib");
        setenv("EPYARD_IB_HCA", "^fakeroce", 1);
        std::vector<std::string> names;
        std::string f = initAndList(ncclSuccess, &names);
        if (f.empty() && (names.size() != 2 || names[0] != "fakeib0:1" || names[1] != "fakeib1:1"))
          f = "EPYARD_IB_HCA=^fakeroce: expected fakeib0:1 and fakeib1:1";
        verdict(f);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(TransportSelection, AutoFallsBackToLibfabricWithoutVerbs) {
  EXPECT_EXIT(
      {
        setenv("EPYARD_IB_VERBS_LIBRARY", "/nonexistent/libibverbs.so.1", 1);
        useLoopbackOfi();
        std::vector<std::string> names;
        std::string f = initAndList(ncclSuccess, &names);
        if (f.empty() && !logHas("no verbs transport")) f = "no INFO saying why verbs was not used";
        if (f.empty() && !logHas("/nonexistent/libibverbs.so.1")) f = "the INFO does not name the library";
        verdict(f);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(TransportSelection, AutoFallsBackWhenTheFilterAcceptsNoPort) {
  EXPECT_EXIT(
      {
        useFakeVerbs("fakeib0:ib");
        setenv("EPYARD_IB_HCA", "=mlx5_0", 1);
        useLoopbackOfi();
        std::vector<std::string> names;
        std::string f = initAndList(ncclSuccess, &names);
        for (const std::string& n : names)
          if (f.empty() && n.rfind("fakeib0", 0) == 0) f = "the filter =mlx5_0 let " + n + " through";
        if (f.empty() && !logHas("EPYARD_IB_HCA==mlx5_0")) f = "the INFO does not name the filter";
        verdict(f);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(TransportSelection, ForcedVerbsThatIsMissingFailsInitWithTheReason) {
  EXPECT_EXIT(
      {
        setenv("EPYARD_NET_TRANSPORT", "verbs", 1);
        setenv("EPYARD_IB_VERBS_LIBRARY", "/nonexistent/libibverbs.so.1", 1);
        std::vector<std::string> names;
        std::string f = initAndList(ncclSystemError, &names);
        if (f.empty() && !(logHas("EPYARD_NET_TRANSPORT=verbs") && logHas("/nonexistent/libibverbs.so.1")))
          f = "the WARN names neither the variable nor the library";
        verdict(f);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(TransportSelection, ForcedOfiSkipsVerbs) {
  EXPECT_EXIT(
      {
        setenv("EPYARD_NET_TRANSPORT", "ofi", 1);
        useFakeVerbs("fakeib0:ib");
        useLoopbackOfi();
        std::vector<std::string> names;
        std::string f = initAndList(ncclSuccess, &names);
        for (const std::string& n : names)
          if (f.empty() && n.rfind("fakeib0", 0) == 0) f = "EPYARD_NET_TRANSPORT=ofi opened " + n;
        verdict(f);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(TransportSelection, UnknownTransportNameIsRefused) {
  EXPECT_EXIT(
      {
        setenv("EPYARD_NET_TRANSPORT", "rdma", 1);
        std::vector<std::string> names;
        std::string f = initAndList(ncclInvalidUsage, &names);
        if (f.empty() && !logHas("EPYARD_NET_TRANSPORT=\"rdma\"")) f = "the WARN does not quote the value";
        verdict(f);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace epyard::net
