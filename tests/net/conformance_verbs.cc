// Conformance cases only the verbs transport has: a port that goes down (an async event) fails
// the connections on it with an error, within the timeout; once it is back, new connections
// work; a virtual device over two NICs carries striped messages intact. Runs where EPYARD_NET_TRANSPORT=verbs and the verbs library is the emulated device
// (tests/fakeverbs), whose hook raises the event inside the plugin's process.
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "conformance.h"

namespace epyard::nettest {
namespace {

using NetVerbs = NetCase;

constexpr size_t kBytes = 1 << 20;
constexpr Millis kStepTimeout{60000};

// The emulated device's hook, from the copy the plugin opened (EPYARD_IB_VERBS_LIBRARY).
int portEventAll(int active) {
  const char* path = getenv("EPYARD_IB_VERBS_LIBRARY");
  void* lib = path != nullptr ? dlopen(path, RTLD_NOW | RTLD_NOLOAD) : nullptr;
  auto fn = lib != nullptr
                ? reinterpret_cast<int (*)(const char*, int)>(dlsym(lib, "epyard_fakeverbs_port_event_all"))
                : nullptr;
  return fn != nullptr ? fn(nullptr, active) : -1;
}

bool runsOnFakeVerbs(std::string* why) {
  const char* transport = getenv("EPYARD_NET_TRANSPORT");
  const char* library = getenv("EPYARD_IB_VERBS_LIBRARY");
  if (transport == nullptr || std::string(transport) != "verbs") {
    *why = "EPYARD_NET_TRANSPORT is not verbs";
    return false;
  }
  if (library == nullptr || strstr(library, "fakeverbs") == nullptr) {
    *why = "EPYARD_IB_VERBS_LIBRARY is not the emulated device";
    return false;
  }
  return true;
}

void receiveOnce(Role& role, void* comm, HostBuffer& buf, uint64_t seed, const char* what) {
  void* data = buf.data();
  size_t capacity = kBytes;
  int tag = 7;
  void* mhandle = buf.mhandle();
  int got = -1;
  waitDone(role, postRecv(role, comm, 1, &data, &capacity, &tag, &mhandle, Deadline(kTransferTimeout), what),
           &got, Deadline(kTransferTimeout), what);
  NT_EXPECT(got == static_cast<int>(kBytes) && checkPattern(buf.data(), kBytes, seed).empty(),
            "%s: size %d or content wrong", what, got);
}

void sendOnce(Role& role, void* comm, HostBuffer& buf, uint64_t seed, const char* what) {
  fillPattern(buf.data(), kBytes, seed);
  int sent = -1;
  waitDone(role, postSend(role, comm, buf.data(), kBytes, 7, buf.mhandle(), Deadline(kTransferTimeout), what),
           &sent, Deadline(kTransferTimeout), what);
}

TEST_P(NetVerbs, PortDownFailsItsConnectionsAndNewOnesWorkOnceItIsBack) {
  std::string why;
  if (!runsOnFakeVerbs(&why)) GTEST_SKIP() << why;
  runPair(
      [](Role& role) {
        RecvLink link = listenAndAccept(role);
        HostBuffer buf(kBytes);
        buf.registerWith(role, link.comm);
        receiveOnce(role, link.comm, buf, 11, "a transfer before the port goes down");

        phase("port down");
        const int warns = warnCount();
        NT_REQUIRE(portEventAll(0) > 0, "the emulated device's port hook found no open context");
        usleep(100 * 1000);  // the plugin's event thread takes the event
        const auto start = Clock::now();
        const Deadline deadline(Millis(kNetTimeoutMs + kNetTimeoutSlackMs));
        ncclResult_t result = ncclSuccess;
        void* request = nullptr;
        void* data = buf.data();
        size_t capacity = kBytes;
        int tag = 7;
        void* mhandle = buf.mhandle();
        while (result == ncclSuccess && request == nullptr && !deadline.expired())
          result = role.net.irecv(link.comm, 1, &data, &capacity, &tag, &mhandle, &request);
        int done = 0, size = 0;
        if (result == ncclSuccess && request != nullptr) result = waitOutcome(role, request, &size, deadline, &done);
        NT_EXPECT(result != ncclSuccess, "a receive after the port went down gave no error (done %d)", done);
        NT_EXPECT(warnCount() > warns, "the port went down but the plugin logged no WARN");
        note("receive after the port went down: %s after %lld ms", resultName(result).c_str(),
             static_cast<long long>(millisSince(start)));

        phase("port up, a new connection");
        NT_REQUIRE(portEventAll(1) > 0, "the emulated device's port hook found no open context");
        usleep(100 * 1000);
        role.peer.signal(kMsgGo);
        RecvLink again = listenAndAccept(role);
        HostBuffer buf2(kBytes);
        buf2.registerWith(role, again.comm);
        receiveOnce(role, again.comm, buf2, 12, "a transfer on a new connection once the port is back");
        buf2.deregister(role);
        closeRecvLink(role, again);
        buf.deregister(role);
        closeRecvLink(role, link);
      },
      [](Role& role) {
        void* comm = connectToPeer(role);
        HostBuffer buf(kBytes);
        buf.registerWith(role, comm);
        sendOnce(role, comm, buf, 11, "a transfer before the port goes down");
        role.peer.await(kMsgGo, Deadline(kStepTimeout));
        void* again = connectToPeer(role);
        HostBuffer buf2(kBytes);
        buf2.registerWith(role, again);
        sendOnce(role, again, buf2, 12, "a transfer on a new connection once the port is back");
        buf2.deregister(role);
        closeSendComm(role, again);
        buf.deregister(role);
        closeSendComm(role, comm);
      },
      withNetTimeout());
}

// makeVDevice over the two emulated NICs, two QPs per connection: rail r sits on NIC r, so the
// striped messages cross both; every byte must arrive where it belongs.
TEST_P(NetVerbs, VirtualDeviceStripesOverTwoNics) {
  std::string why;
  if (!runsOnFakeVerbs(&why)) GTEST_SKIP() << why;
  const char* devices = getenv("EPYARD_FAKEVERBS_DEVICES");
  if (devices == nullptr || strchr(devices, ',') == nullptr) GTEST_SKIP() << "needs two emulated devices";
  constexpr size_t kBig = 8 << 20;
  auto join = [](Role& role) {
    int n = 0;
    NT_REQUIRE_OK(role.net.devices(&n));
    NT_REQUIRE(n >= 2, "%d devices; the virtual device needs two", n);
    const int devs[2] = {0, 1};
    int vdev = -1;
    NT_REQUIRE_OK(role.net.makeVDevice(&vdev, 2, devs));
    NetProperties p;
    NT_REQUIRE_OK(role.net.getProperties(vdev, &p));
    NetProperties one;
    NT_REQUIRE_OK(role.net.getProperties(0, &one));
    NT_EXPECT(p.speed == 2 * one.speed, "virtual device speed %d, expected twice %d", p.speed, one.speed);
    role.dev = vdev;
  };
  RunOptions options;
  options.env.emplace_back("EPYARD_IB_QPS_PER_CONN", "2");
  options.env.emplace_back("EPYARD_NET_MIN_STRIPE_BYTES", "65536");
  runPair(
      [&](Role& role) {
        join(role);
        RecvLink link = listenAndAccept(role);
        HostBuffer buf(kBig);
        buf.registerWith(role, link.comm);
        for (uint64_t seed = 1; seed <= 3; ++seed) {
          void* data = buf.data();
          size_t capacity = kBig;
          int tag = 9;
          void* mhandle = buf.mhandle();
          int got = -1;
          waitDone(role, postRecv(role, link.comm, 1, &data, &capacity, &tag, &mhandle, Deadline(kTransferTimeout), "irecv"),
                   &got, Deadline(kTransferTimeout), "irecv over the virtual device");
          const std::string bad = checkPattern(buf.data(), kBig, seed);
          NT_EXPECT(got == static_cast<int>(kBig) && bad.empty(), "message %d: size %d, %s", static_cast<int>(seed), got,
                    bad.c_str());
        }
        buf.deregister(role);
        closeRecvLink(role, link);
      },
      [&](Role& role) {
        join(role);
        void* comm = connectToPeer(role);
        HostBuffer buf(kBig);
        buf.registerWith(role, comm);
        for (uint64_t seed = 1; seed <= 3; ++seed) {
          fillPattern(buf.data(), kBig, seed);
          int sent = -1;
          waitDone(role, postSend(role, comm, buf.data(), kBig, 9, buf.mhandle(), Deadline(kTransferTimeout), "isend"),
                   &sent, Deadline(kTransferTimeout), "isend over the virtual device");
        }
        buf.deregister(role);
        closeSendComm(role, comm);
      },
      options);
}

INSTANTIATE_TEST_SUITE_P(Abi, NetVerbs, ::testing::Values(11), versionName);

}  // namespace
}  // namespace epyard::nettest
