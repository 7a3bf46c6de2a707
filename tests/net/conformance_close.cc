// Closing comms with work still in flight: no crash, no hang, and no touching of buffers after
// close returns.
//
// What these cases do with registrations: requests posted here are never completed, so the
// buffers are not deregistered — NCCL deregisters only idle buffers, and deregMr after the comm
// is closed would hand the plugin a freed comm. The mhandles are dropped when the comm closes;
// the test then unmaps the buffers and lingers kLingerMs, so a plugin thread still writing into
// them takes the process down with SIGSEGV while the harness is watching.
#include <string.h>
#include <unistd.h>

#include <vector>

#include "conformance.h"

namespace epyard::nettest {
namespace {

using NetClose = NetCase;

constexpr size_t kMiB = 1024 * 1024;
constexpr int kLingerMs = 300;
constexpr Millis kPeerStepTimeout{60000};

void linger() { usleep(kLingerMs * 1000); }

// Posts `count` 1 MiB receives into one registered buffer and returns them untested.
std::vector<void*> postReceives(Role& role, void* comm, HostBuffer& buf, int count) {
  std::vector<void*> requests;
  for (int i = 0; i < count; ++i) {
    void* data = buf.data() + i * kMiB;
    size_t capacity = kMiB;
    int tag = 4;
    void* mhandle = buf.mhandle();
    requests.push_back(postRecv(role, comm, 1, &data, &capacity, &tag, &mhandle,
                                Deadline(kTransferTimeout), "irecv"));
  }
  return requests;
}

TEST_P(NetClose, CloseSendWithSendsInFlight) {
  runPair(
      [](Role& role) {
        RecvLink link = listenAndAccept(role);
        HostBuffer buf(8 * kMiB);
        buf.registerWith(role, link.comm);
        postReceives(role, link.comm, buf, 8);
        role.peer.signal(kMsgGo);
        phase("wait for the sender to close");
        role.peer.await(kMsgDone, Deadline(kPeerStepTimeout));
        phase("closeRecv with 8 receives never tested");
        NT_REQUIRE_OK(role.net.closeRecv(link.comm));
        link.comm = nullptr;
        closeRecvLink(role, link);
        buf.abandonRegistration();
        phase("linger after unmapping the receive buffers");
        linger();
      },
      [](Role& role) {
        void* comm = connectToPeer(role);
        role.peer.await(kMsgGo, Deadline(kPeerStepTimeout));
        HostBuffer buf(4 * kMiB);
        buf.registerWith(role, comm);
        fillPattern(buf.data(), buf.size(), 5);
        phase("post 4 sends of 1 MiB");
        for (int i = 0; i < 4; ++i) {
          postSend(role, comm, buf.data() + i * kMiB, kMiB, 4, buf.mhandle(),
                   Deadline(kTransferTimeout), "isend");
        }
        phase("closeSend with 4 sends never tested");
        NT_REQUIRE_OK(role.net.closeSend(comm));
        buf.abandonRegistration();
        role.peer.signal(kMsgDone);
        phase("linger after unmapping the send buffers");
        linger();
      },
      withNetTimeout());
}

TEST_P(NetClose, CloseRecvWithReceivesInFlight) {
  runPair(
      [](Role& role) {
        RecvLink link = listenAndAccept(role);
        HostBuffer buf(8 * kMiB);
        buf.registerWith(role, link.comm);
        postReceives(role, link.comm, buf, 8);
        phase("closeRecv right after posting 8 receives");
        NT_REQUIRE_OK(role.net.closeRecv(link.comm));
        link.comm = nullptr;
        closeRecvLink(role, link);
        buf.abandonRegistration();
        role.peer.signal(kMsgDone);
        phase("linger after unmapping the receive buffers");
        linger();
      },
      [](Role& role) {
        void* comm = connectToPeer(role);
        HostBuffer buf(kMiB);
        buf.registerWith(role, comm);
        fillPattern(buf.data(), buf.size(), 6);
        role.peer.await(kMsgDone, Deadline(kPeerStepTimeout));
        phase("isend to a receiver that closed its comm");
        Backoff backoff;
        Deadline deadline(Millis(kNetTimeoutMs + kNetTimeoutSlackMs));
        void* request = nullptr;
        ncclResult_t result = ncclSuccess;
        while (request == nullptr && result == ncclSuccess && !deadline.expired()) {
          result = role.net.isend(comm, buf.data(), kMiB, 4, buf.mhandle(), &request);
          backoff.idle();
        }
        int done = 0;
        int size = -1;
        if (request) result = waitOutcome(role, request, &size, deadline, &done);
        // Any of these is acceptable here; what matters is that closeSend below returns.
        std::string outcome = resultName(result);
        if (result == ncclSuccess) {
          outcome = done ? "completed" : request ? "still pending" : "no request from isend";
        }
        note("send to a closed receiver: %s", outcome.c_str());
        phase("closeSend with a send to a closed receiver outstanding");
        NT_REQUIRE_OK(role.net.closeSend(comm));
        buf.abandonRegistration();
        phase("linger after unmapping the send buffer");
        linger();
      },
      withNetTimeout());
}

TEST_P(NetClose, CloseListenWithConnectPending) {
  runPair(
      [](Role& role) {
        phase("listen and close with nobody connecting");
        char unused[NCCL_NET_HANDLE_MAXSIZE] = {};
        void* idle_listen = nullptr;
        NT_REQUIRE_OK(role.net.listen(role.dev, unused, &idle_listen));
        NT_REQUIRE_OK(role.net.closeListen(idle_listen));
        phase("listen, then close while the sender connects");
        char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
        void* listen_comm = nullptr;
        NT_REQUIRE_OK(role.net.listen(role.dev, handle, &listen_comm));
        role.peer.send(kMsgHandle, handle, sizeof(handle));
        role.peer.await(kMsgGo, Deadline(kPeerStepTimeout));
        usleep(100 * 1000);
        phase("closeListen with a connection never accepted");
        NT_REQUIRE_OK(role.net.closeListen(listen_comm));
        role.peer.signal(kMsgDone);
      },
      [](Role& role) {
        char handle[NCCL_NET_HANDLE_MAXSIZE];
        role.peer.recv(kMsgHandle, handle, sizeof(handle), Deadline(kConnectTimeout));
        phase("connect to a listener that will close");
        void* comm = nullptr;
        ncclResult_t result = role.net.connect(role.dev, handle, &comm);
        role.peer.signal(kMsgGo);
        bool closed = false;
        Clock::time_point closed_at{};
        Deadline overall(kPeerStepTimeout);
        Backoff backoff;
        while (result == ncclSuccess && comm == nullptr && !overall.expired()) {
          if (!closed && role.peer.readable()) {
            role.peer.await(kMsgDone, Deadline(kPeerStepTimeout));
            closed = true;
            closed_at = Clock::now();
          }
          if (closed && millisSince(closed_at) > kNetTimeoutMs + kNetTimeoutSlackMs) break;
          backoff.idle();
          result = role.net.connect(role.dev, handle, &comm);
        }
        if (!closed) role.peer.await(kMsgDone, Deadline(kPeerStepTimeout));
        if (result != ncclSuccess) {
          note("connect to a closing listener returned %s", resultName(result).c_str());
        } else if (comm != nullptr) {
          note("connect returned a send comm before the listener closed");
          phase("closeSend of a comm whose listener closed unaccepted");
          NT_REQUIRE_OK(role.net.closeSend(comm));
        } else {
          NT_EXPECT(false,
                    "connect to a listener closed without accepting kept returning no comm and "
                    "no error for %lld ms after the close (EPYARD_NET_TIMEOUT_MS=%d)",
                    static_cast<long long>(closed ? millisSince(closed_at) : -1), kNetTimeoutMs);
        }
      },
      withNetTimeout());
}

INSTANTIATE_TEST_SUITE_P(Abi, NetClose, ::testing::ValuesIn(kAbiVersions), versionName);

}  // namespace
}  // namespace epyard::nettest
