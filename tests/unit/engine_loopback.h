// The engine in one process over tcp;ofi_rxm on loopback (no NCCL, no second process): a
// fixture that initialises it and helpers that make a connection and move a message.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "engine/net.h"
#include "engine/params.h"

namespace epyard::net::loopback {

using Clock = std::chrono::steady_clock;

// The engine initialises once per process (as under NCCL), so a test changes its parameters
// with setParams and puts them back afterwards.
class EngineLoopback : public ::testing::Test {
 protected:
  void SetUp() override { start(30000, 131072); }
  void start(int64_t timeout_ms, int64_t min_stripe_bytes) {
    setenv("EPYARD_NET_TRANSPORT", "ofi", 0);
    setenv("EPYARD_OFI_PROVIDER", "tcp;ofi_rxm", 0);
    setenv("FI_TCP_IFACE", "lo", 0);
    ASSERT_EQ(netInit(nullptr), ncclSuccess);
    int n = 0;
    ASSERT_EQ(netDevices(&n), ncclSuccess);
    if (n == 0) GTEST_SKIP() << "no tcp;ofi_rxm device";
    saved_ = params();
    Params p = saved_;
    p.timeout_ms = timeout_ms;
    p.min_stripe_bytes = min_stripe_bytes;
    setParams(p);
  }
  void TearDown() override { setParams(saved_); }
  Params saved_;
};

// Listens, connects and accepts on device 0 until both comms exist (at most 10 s).
inline ::testing::AssertionResult connectPair(void** send, void** recv, void** listen) {
  char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
  *send = *recv = nullptr;
  if (netListen(0, handle, listen) != ncclSuccess) return ::testing::AssertionFailure() << "listen";
  for (auto start = Clock::now(); *send == nullptr || *recv == nullptr;) {
    if (Clock::now() - start > std::chrono::seconds(10))
      return ::testing::AssertionFailure() << "no connection within 10 s";
    if (*send == nullptr && netConnect(0, handle, send) != ncclSuccess)
      return ::testing::AssertionFailure() << "connect failed";
    if (*recv == nullptr && netAccept(*listen, recv) != ncclSuccess)
      return ::testing::AssertionFailure() << "accept failed";
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return ::testing::AssertionSuccess();
}

// Tests `req` until it is done or fails, at most `limit`; returns what the last test returned
// (ncclSuccess with *done = 0 when the limit passed).
inline ncclResult_t testUntil(void* req, int* done, int* size, std::chrono::milliseconds limit) {
  *done = 0;
  for (auto start = Clock::now(); Clock::now() - start < limit;) {
    ncclResult_t res = netTest(req, done, size);
    if (res != ncclSuccess || *done) return res;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return ncclSuccess;
}

}  // namespace epyard::net::loopback
