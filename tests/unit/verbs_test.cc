// Verbs transport pieces that need no hardware: device selection (the NCCL_IB_HCA-style filter,
// port speeds from width/speed codes, scanning fake sysfs trees for devices, ports, PCI path and
// GUID) and loading libibverbs with dlopen.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "verbs/devices.h"
#include "verbs/loader.h"

namespace epyard::net::verbs {
namespace {

HcaFilter parsed(const std::string& text) {
  HcaFilter f;
  std::string error;
  EXPECT_TRUE(HcaFilter::parse(text, &f, &error)) << text << ": " << error;
  return f;
}

TEST(HcaFilter, EmptyAcceptsEverything) {
  HcaFilter f = parsed("");
  EXPECT_TRUE(f.empty());
  EXPECT_TRUE(f.accepts("mlx5_0", 1));
  EXPECT_TRUE(f.accepts("anything", 2));
}

TEST(HcaFilter, PrefixMatchAndPorts) {
  HcaFilter f = parsed("mlx5_1:1, mlx5_2");
  EXPECT_TRUE(f.accepts("mlx5_1", 1));
  EXPECT_FALSE(f.accepts("mlx5_1", 2)) << "only the listed port";
  EXPECT_TRUE(f.accepts("mlx5_2", 2)) << "no port: every port";
  EXPECT_TRUE(f.accepts("mlx5_10", 1)) << "prefix match, as NCCL_IB_HCA";
  EXPECT_FALSE(f.accepts("mlx5_0", 1));
}

TEST(HcaFilter, ExactAndExclude) {
  HcaFilter exact = parsed("=mlx5_1");
  EXPECT_TRUE(exact.accepts("mlx5_1", 1));
  EXPECT_FALSE(exact.accepts("mlx5_10", 1));
  HcaFilter excl = parsed("^mlx5_1");
  EXPECT_FALSE(excl.accepts("mlx5_1", 1));
  EXPECT_FALSE(excl.accepts("mlx5_10", 1)) << "prefix exclusion";
  EXPECT_TRUE(excl.accepts("mlx5_0", 1));
  HcaFilter both = parsed("^=mlx5_1:2");
  EXPECT_TRUE(both.accepts("mlx5_1", 1));
  EXPECT_FALSE(both.accepts("mlx5_1", 2));
  EXPECT_TRUE(both.accepts("mlx5_10", 2));
}

TEST(HcaFilter, BadEntriesAreNamed) {
  HcaFilter f;
  std::string error;
  EXPECT_FALSE(HcaFilter::parse("mlx5_0:x", &f, &error));
  EXPECT_NE(error.find("mlx5_0:x"), std::string::npos) << error;
  EXPECT_FALSE(HcaFilter::parse("mlx5_0:0", &f, &error));
  EXPECT_FALSE(HcaFilter::parse(":1", &f, &error));
  EXPECT_NE(error.find("no device name"), std::string::npos) << error;
  EXPECT_FALSE(HcaFilter::parse("^", &f, &error));
}

TEST(PortSpeed, WidthTimesLaneRate) {
  EXPECT_EQ(portSpeedMbps(2, 128), 400000) << "4X NDR";
  EXPECT_EQ(portSpeedMbps(2, 64), 200000) << "4X HDR";
  EXPECT_EQ(portSpeedMbps(2, 32), 100000) << "4X EDR";
  EXPECT_EQ(portSpeedMbps(16, 128), 200000) << "2X NDR";
  EXPECT_EQ(portSpeedMbps(8, 1), 30000) << "12X SDR";
  EXPECT_EQ(portSpeedMbps(3, 32), 0) << "unknown width";
  EXPECT_EQ(portSpeedMbps(2, 3), 0) << "unknown speed";
}

// A fake /sys with two devices: mlx5_0 (port 1 active IB 400G), mlx5_1 (port 1 down, port 2
// active RoCE 200G).
class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/epyard-sysfs-XXXXXX";
    root_ = mkdtemp(tmpl);
    device("mlx5_0", "0000:17:00.0", "0c42:a103:0012:3456", {{1, "4: ACTIVE", "InfiniBand", "400 Gb/sec (4X NDR)"}});
    device("mlx5_1", "0000:2a:00.0", "0c42:a103:0012:9abc",
           {{1, "1: DOWN", "Ethernet", "200 Gb/sec (4X HDR)"}, {2, "4: ACTIVE", "Ethernet", "200 Gb/sec (4X HDR)"}});
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }

  struct Port {
    int n;
    const char* state;
    const char* layer;
    const char* rate;
  };
  void write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text << "\n";
  }
  void mkdirs(const std::string& path) { std::system(("mkdir -p " + path).c_str()); }
  void device(const std::string& name, const std::string& pci, const std::string& guid,
              std::initializer_list<Port> ports) {
    const std::string pci_dir = root_ + "/devices/pci0000:00/" + pci;
    const std::string dir = root_ + "/class/infiniband/" + name;
    mkdirs(pci_dir);
    mkdirs(dir);
    ASSERT_EQ(symlink(pci_dir.c_str(), (dir + "/device").c_str()), 0);
    write(dir + "/node_guid", guid);
    for (const Port& p : ports) {
      const std::string pd = dir + "/ports/" + std::to_string(p.n);
      mkdirs(pd);
      write(pd + "/state", p.state);
      write(pd + "/link_layer", p.layer);
      write(pd + "/rate", p.rate);
    }
  }
  std::string root_;
};

TEST_F(FakeSysfs, ScanReadsDevicesPortsPciAndGuid) {
  std::vector<SysfsDevice> d = scanSysfs(root_);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].name, "mlx5_0");
  EXPECT_NE(d[0].pci_path.find("0000:17:00.0"), std::string::npos) << d[0].pci_path;
  EXPECT_EQ(d[0].node_guid, 0x0c42a10300123456ull);
  ASSERT_EQ(d[0].ports.size(), 1u);
  EXPECT_TRUE(d[0].ports[0].active);
  EXPECT_EQ(d[0].ports[0].link_layer, "InfiniBand");
  EXPECT_EQ(d[0].ports[0].rate_mbps, 400000);
  ASSERT_EQ(d[1].ports.size(), 2u);
  EXPECT_FALSE(d[1].ports[0].active);
  EXPECT_TRUE(d[1].ports[1].active);
  EXPECT_EQ(d[1].ports[1].link_layer, "Ethernet");
}

TEST_F(FakeSysfs, SelectionKeepsActivePortsTheFilterAccepts) {
  const std::vector<SysfsDevice> d = scanSysfs(root_);
  auto names = [](const std::vector<PortChoice>& c) {
    std::string s;
    for (const PortChoice& p : c) s += p.device + ":" + std::to_string(p.port) + " ";
    return s;
  };
  EXPECT_EQ(names(selectPorts(d, parsed(""))), "mlx5_0:1 mlx5_1:2 ");
  EXPECT_EQ(names(selectPorts(d, parsed("^mlx5_0"))), "mlx5_1:2 ");
  EXPECT_EQ(names(selectPorts(d, parsed("mlx5_1:1"))), "") << "port 1 of mlx5_1 is down";
  EXPECT_EQ(names(selectPorts(d, parsed("=mlx5_1:2,mlx5_0"))), "mlx5_0:1 mlx5_1:2 ");
}

TEST(Sysfs, MissingTreeGivesNoDevices) { EXPECT_TRUE(scanSysfs("/nonexistent-epyard").empty()); }

}  // namespace
}  // namespace epyard::net::verbs

namespace epyard::net::verbs {
namespace {

// libibverbs is installed on the CI machines (libibverbs-dev) but there is no RDMA device.
TEST(VerbsLoader, LoadsLibibverbsAndListsDevices) {
  std::string why;
  const VerbsApi* api = loadVerbs("libibverbs.so.1", &why);
  ASSERT_NE(api, nullptr) << why;
  int n = -1;
  struct ibv_device** list = api->get_device_list(&n);
  EXPECT_GE(n, 0);
  if (list != nullptr) api->free_device_list(list);
  EXPECT_EQ(loadVerbs("libibverbs.so.1", &why), api) << "loaded once";
}

TEST(VerbsLoader, MissingLibraryIsAnErrorNotACrash) {
  std::string why;
  EXPECT_EQ(loadVerbs("libepyard-no-such-verbs.so.1", &why), nullptr);
  EXPECT_NE(why.find("libepyard-no-such-verbs.so.1"), std::string::npos) << why;
  // A library without the verbs symbols is refused by name too.
  EXPECT_EQ(loadVerbs("libc.so.6", &why), nullptr);
  EXPECT_NE(why.find("lacks ibv_"), std::string::npos) << why;
}

}  // namespace
}  // namespace epyard::net::verbs
