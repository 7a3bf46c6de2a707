// Device selection for the verbs transport, independent of libibverbs so it is unit-tested on
// any machine: the NCCL_IB_HCA-style filter, port speed from the width/speed codes
// ibv_query_port reports, and what sysfs says about a device (PCI path, node GUID, ports).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace epyard::net::verbs {

// "mlx5_0:1,mlx5_1" keeps devices whose name starts with an entry (and only the given port);
// a leading "=" asks for exact names, a leading "^" excludes the listed ones instead ("^=mlx5_2"
// combines both). Empty: every device and port.
class HcaFilter {
 public:
  // False with *error naming the bad entry when `text` does not parse.
  static bool parse(const std::string& text, HcaFilter* out, std::string* error);
  bool accepts(const std::string& device, int port) const;
  bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    std::string name;
    int port = -1;  // -1: every port
  };
  bool exclude_ = false;
  bool exact_ = false;
  std::vector<Entry> entries_;
};

// Link speed of a port in Mb/s from ibv_port_attr's active_width and speed code (active_speed_ex
// where the library reports it — XDR does not fit active_speed's 8 bits — else active_speed);
// 0 when either code is unknown.
int portSpeedMbps(uint8_t active_width, uint32_t active_speed);

struct SysfsPort {
  int port = 0;
  bool active = false;     // state "4: ACTIVE"
  std::string link_layer;  // "InfiniBand" or "Ethernet" (RoCE)
  int rate_mbps = 0;       // from "rate", e.g. "400 Gb/sec (4X NDR)"
};

struct SysfsDevice {
  std::string name;
  std::string pci_path;  // resolved device link, e.g. /sys/devices/pci0000:00/0000:00:01.0/...
  uint64_t node_guid = 0;
  std::vector<SysfsPort> ports;
};

// Devices under <root>/class/infiniband (root "/sys" on a real machine; a fake tree in tests),
// sorted by name. Unreadable entries are skipped.
std::vector<SysfsDevice> scanSysfs(const std::string& root);

// The (device, port) pairs a transport should open: active ports the filter accepts.
struct PortChoice {
  std::string device;
  int port;
};
std::vector<PortChoice> selectPorts(const std::vector<SysfsDevice>& devices, const HcaFilter& filter);

}  // namespace epyard::net::verbs
