// Environment variables of the EP module, read once (the first group created) and documented
// in the README. Only this file calls getenv for the EP module.
#pragma once

#include <cstdint>

namespace epyard::ep {

struct EpParams {
  int64_t timeout_ms = 100000;  // EPYARD_EP_TIMEOUT_MS: bound on device waits (config AUTO)
  bool disable_nvlink = false;  // EPYARD_EP_DISABLE_NVLINK: force the network path (tests)
};

// The values, parsed once; a malformed value is reported on stderr and the default kept.
const EpParams& epParams();

}  // namespace epyard::ep
