#include "verbs/devices.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace epyard::net::verbs {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n"), e = s.find_last_not_of(" \t\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

bool readFile(const std::string& path, std::string* out) {
  std::ifstream f(path);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *out = trim(ss.str());
  return true;
}

std::vector<std::string> listDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// "0c42:a103:0012:3456" -> 0x0c42a10300123456; 0 when malformed.
uint64_t parseGuid(const std::string& text) {
  uint64_t v = 0;
  int digits = 0;
  for (char c : text) {
    if (c == ':') continue;
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
    if (d < 0 || ++digits > 16) return 0;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return digits == 16 ? v : 0;
}

}  // namespace

bool HcaFilter::parse(const std::string& text, HcaFilter* out, std::string* error) {
  HcaFilter f;
  size_t at = 0;
  while (at < text.size() && (text[at] == '^' || text[at] == '=')) {
    (text[at] == '^' ? f.exclude_ : f.exact_) = true;
    ++at;
  }
  std::stringstream list(text.substr(at));
  std::string item;
  while (std::getline(list, item, ',')) {
    item = trim(item);
    if (item.empty()) continue;
    Entry e;
    const size_t colon = item.find(':');
    e.name = item.substr(0, colon);
    if (e.name.empty()) {
      *error = "entry \"" + item + "\" has no device name";
      return false;
    }
    if (colon != std::string::npos) {
      const std::string port = item.substr(colon + 1);
      char* end = nullptr;
      const long p = std::strtol(port.c_str(), &end, 10);
      if (port.empty() || *end != '\0' || p < 1 || p > 255) {
        *error = "entry \"" + item + "\": port \"" + port + "\" is not a number in [1, 255]";
        return false;
      }
      e.port = static_cast<int>(p);
    }
    f.entries_.push_back(e);
  }
  if ((f.exclude_ || f.exact_) && f.entries_.empty()) {
    *error = "\"" + text + "\" has a prefix but no device names";
    return false;
  }
  *out = f;
  return true;
}

bool HcaFilter::accepts(const std::string& device, int port) const {
  if (entries_.empty()) return true;
  bool listed = false;
  for (const Entry& e : entries_) {
    const bool name = exact_ ? device == e.name : device.compare(0, e.name.size(), e.name) == 0;
    listed |= name && (e.port < 0 || e.port == port);
  }
  return exclude_ ? !listed : listed;
}

int portSpeedMbps(uint8_t active_width, uint32_t active_speed) {
  int lanes = 0;
  switch (active_width) {  // IB_WIDTH_1X, 4X, 8X, 12X, 2X
    case 1: lanes = 1; break;
    case 2: lanes = 4; break;
    case 4: lanes = 8; break;
    case 8: lanes = 12; break;
    case 16: lanes = 2; break;
    default: return 0;
  }
  int lane_mbps = 0;
  switch (active_speed) {  // SDR, DDR, QDR, FDR10, FDR, EDR, HDR, NDR, XDR (data rate per lane)
    case 1: lane_mbps = 2500; break;
    case 2: lane_mbps = 5000; break;
    case 4: lane_mbps = 10000; break;
    case 8: lane_mbps = 10000; break;
    case 16: lane_mbps = 14000; break;
    case 32: lane_mbps = 25000; break;
    case 64: lane_mbps = 50000; break;
    case 128: lane_mbps = 100000; break;
    case 256: lane_mbps = 200000; break;
    default: return 0;
  }
  return lanes * lane_mbps;
}

std::vector<SysfsDevice> scanSysfs(const std::string& root) {
  std::vector<SysfsDevice> devices;
  const std::string base = root + "/class/infiniband";
  for (const std::string& name : listDir(base)) {
    SysfsDevice d;
    d.name = name;
    const std::string dir = base + "/" + name;
    char resolved[PATH_MAX];
    if (realpath((dir + "/device").c_str(), resolved) != nullptr) d.pci_path = resolved;
    std::string text;
    if (readFile(dir + "/node_guid", &text)) d.node_guid = parseGuid(text);
    for (const std::string& p : listDir(dir + "/ports")) {
      SysfsPort port;
      port.port = std::atoi(p.c_str());
      if (port.port <= 0) continue;
      const std::string pdir = dir + "/ports/" + p;
      if (readFile(pdir + "/state", &text)) port.active = text.find("ACTIVE") != std::string::npos;
      readFile(pdir + "/link_layer", &port.link_layer);
      if (readFile(pdir + "/rate", &text)) port.rate_mbps = static_cast<int>(std::atof(text.c_str()) * 1000);
      d.ports.push_back(port);
    }
    std::sort(d.ports.begin(), d.ports.end(), [](const SysfsPort& a, const SysfsPort& b) { return a.port < b.port; });
    devices.push_back(d);
  }
  return devices;
}

std::vector<PortChoice> selectPorts(const std::vector<SysfsDevice>& devices, const HcaFilter& filter) {
  std::vector<PortChoice> out;
  for (const SysfsDevice& d : devices)
    for (const SysfsPort& p : d.ports)
      if (p.active && filter.accepts(d.name, p.port)) out.push_back({d.name, p.port});
  return out;
}

}  // namespace epyard::net::verbs
