// Shared fixture of the conformance cases: every case is a TEST_P over the ABI version.
#pragma once

#include <string>

#include "gtest/gtest.h"
#include "harness.h"
#include "net_ops.h"

namespace epyard::nettest {

class NetCase : public ::testing::TestWithParam<int> {
 protected:
  int version() const { return GetParam(); }

  // Receiver and sender in two fresh processes.
  void runPair(RoleBody receiver, RoleBody sender, RunOptions options = {},
               bool receiver_killed = false, bool sender_killed = false) {
    RoleSpec recv_spec{std::move(receiver), receiver_killed};
    RoleSpec send_spec{std::move(sender), sender_killed};
    runRoles(version(), recv_spec, &send_spec, options);
  }

  // One process (the "receiver" side), for cases that need no peer.
  void runAlone(RoleBody body, RunOptions options = {}) {
    RoleSpec spec{std::move(body), false};
    runRoles(version(), spec, nullptr, options);
  }
};

inline std::string versionName(const ::testing::TestParamInfo<int>& info) {
  return "v" + std::to_string(info.param);
}

// Options for cases that time error detection: EPYARD_NET_TIMEOUT_MS set to kNetTimeoutMs.
inline RunOptions withNetTimeout() {
  RunOptions options;
  options.env.emplace_back("EPYARD_NET_TIMEOUT_MS", std::to_string(kNetTimeoutMs));
  return options;
}

}  // namespace epyard::nettest
