#include "engine/wire.h"

#include <sys/random.h>

#include <cstring>
#include <random>

namespace epyard::net {

uint64_t randomId() {
  uint64_t v = 0;
  while (v == 0) {
    if (getrandom(&v, sizeof(v), 0) != static_cast<ssize_t>(sizeof(v))) {
      static thread_local std::random_device device;  // getrandom missing: the C++ source
      v = (static_cast<uint64_t>(device()) << 32) ^ device();
    }
  }
  return v;
}

const char* checkRailAddr(const RailAddr& a) {
  if (a.len == 0 || a.len > kMaxAddrBytes) return "a rail address length out of range";
  return nullptr;
}

uint32_t checksum32(const void* data, size_t len) {
  // FNV-1a: enough to tell a handle from random or truncated bytes.
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; ++i) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

void sealHandle(ConnectHandle* h) {
  h->magic = kHandleMagic;
  h->version = kWireVersion;
  h->checksum = checksum32(h, offsetof(ConnectHandle, checksum));
}

const char* checkHandle(const ConnectHandle& h) {
  if (h.magic != kHandleMagic) return "not an epyard connect handle (bad magic)";
  if (h.version != kWireVersion) return "connect handle from another epyard wire version";
  if (h.checksum != checksum32(&h, offsetof(ConnectHandle, checksum)))
    return "connect handle is corrupt or truncated (checksum mismatch)";
  if (h.addr_len == 0 || h.addr_len > kMaxAddrBytes) return "connect handle address length";
  if (h.rails == 0 || h.rails > kMaxRails) return "connect handle rail count";
  return nullptr;
}

}  // namespace epyard::net
