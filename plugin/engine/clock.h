// The plugin's one clock: monotonic nanoseconds (engine timeouts, transports' bounded waits).
#pragma once

#include <cstdint>

namespace epyard::net {

int64_t nowNs();

}  // namespace epyard::net
