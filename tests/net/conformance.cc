// Conformance of the data path: properties, message sizes, requests in flight, multi-receive,
// short messages into large receives and a long random run. Error paths are in
// conformance_faults.cc.
#include "conformance.h"

#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

namespace epyard::nettest {
namespace {

using NetBasics = NetCase;
using NetTransfer = NetCase;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

TEST_P(NetBasics, DevicesAndProperties) {
  runAlone([](Role& role) {
    NT_EXPECT(role.net.name() == "epyard", "ncclNetPlugin_v%d.name is \"%s\", expected \"epyard\"",
              role.version, role.net.name().c_str());
    int ndev = -1;
    NT_REQUIRE_OK(role.net.devices(&ndev));
    NT_REQUIRE(ndev >= 1, "devices() reported %d devices, expected at least 1", ndev);
    for (int dev = 0; dev < ndev; ++dev) {
      NetProperties p;
      NT_REQUIRE_OK(role.net.getProperties(dev, &p));
      note(
          "dev %d: name=%s pciPath=%s guid=0x%llx ptrSupport=0x%x regIsGlobal=%d speed=%d "
          "port=%d latency=%.2f maxComms=%d maxRecvs=%d netDeviceType=%d forceFlush=%d "
          "maxP2pBytes=%zu maxCollBytes=%zu maxMultiRequestSize=%d",
          dev, p.name.c_str(), p.pci_path.c_str(), static_cast<unsigned long long>(p.guid),
          p.ptr_support, p.reg_is_global, p.speed, p.port, p.latency, p.max_comms, p.max_recvs,
          p.net_device_type, p.force_flush, p.max_p2p_bytes, p.max_coll_bytes,
          p.max_multi_request_size);
      NT_EXPECT(!p.name_is_null && !p.name.empty(), "dev %d: name is %s", dev,
                p.name_is_null ? "NULL" : "empty");
      NT_EXPECT(p.ptr_support & NCCL_PTR_HOST, "dev %d: ptrSupport 0x%x lacks NCCL_PTR_HOST", dev,
                p.ptr_support);
      NT_EXPECT(p.max_recvs >= 8, "dev %d: maxRecvs is %d, expected at least 8", dev, p.max_recvs);
      NT_EXPECT(p.speed > 0, "dev %d: speed is %d Mbps, expected > 0", dev, p.speed);
      NT_EXPECT(p.reg_is_global == 1, "dev %d: regIsGlobal is %d, expected 1", dev,
                p.reg_is_global);
      NT_EXPECT(p.max_comms > 0, "dev %d: maxComms is %d, expected > 0", dev, p.max_comms);
      NT_EXPECT(p.net_device_type == NCCL_NET_DEVICE_HOST,
                "dev %d: netDeviceType is %d, expected NCCL_NET_DEVICE_HOST (no offload)", dev,
                p.net_device_type);
      if (p.has_v9_fields) {
        NT_EXPECT(p.max_p2p_bytes > 0, "dev %d: maxP2pBytes is 0", dev);
      }
      if (p.has_v11_fields) {
        NT_EXPECT(p.max_multi_request_size >= 1, "dev %d: maxMultiRequestSize is %d", dev,
                  p.max_multi_request_size);
      }
      if (p.has_v12_fields) {  // no rail or plane information: NCCL_NET_ID_UNDEF, as NCCL's shims
        NT_EXPECT(p.rail_id == -1 && p.plane_id == -1, "dev %d: railId %d, planeId %d, expected -1",
                  dev, p.rail_id, p.plane_id);
      }
    }
    // Out-of-range devices: an error, not a crash or made-up properties.
    for (int dev : {ndev, -1}) {
      NetProperties p;
      ncclResult_t result = role.net.getProperties(dev, &p);
      NT_EXPECT(result != ncclSuccess, "getProperties(dev=%d) with %d devices returned %s", dev,
                ndev, resultName(result).c_str());
    }
  });
}

// Sizes from empty to 64 MiB, each received into a receive of exactly its size: the receiver
// checks every byte, the reported size, and that nothing past the message was written.
TEST_P(NetTransfer, MessageSizes) {
  static const size_t kSizes[] = {0, 1, 7, 4 * kKiB, 64 * kKiB + 3, kMiB, 16 * kMiB, 64 * kMiB};
  constexpr size_t kGuard = 4096;
  constexpr size_t kBufferSize = 64 * kMiB + kGuard;
  auto seed = [](size_t i) { return 0x5100 + i; };
  runPair(
      [&](Role& role) {
        RecvLink link = listenAndAccept(role);
        HostBuffer buf(kBufferSize);
        buf.registerWith(role, link.comm);
        for (size_t i = 0; i < std::size(kSizes); ++i) {
          size_t size = kSizes[i];
          phase("receive %zu bytes", size);
          memset(buf.data(), kSentinel, size + kGuard);
          void* data = buf.data();
          size_t capacity = size;
          int tag = static_cast<int>(i) + 1;
          void* mhandle = buf.mhandle();
          std::string what = formatString("receive of %zu bytes", size);
          void* request = postRecv(role, link.comm, 1, &data, &capacity, &tag, &mhandle,
                                   Deadline(kTransferTimeout), what.c_str());
          int got = -1;
          waitDone(role, request, &got, Deadline(kTransferTimeout), what.c_str());
          NT_EXPECT(got == static_cast<int>(size), "%s: test() reported size %d", what.c_str(),
                    got);
          std::string bad = checkPattern(buf.data(), size, seed(i));
          NT_EXPECT(bad.empty(), "%s: data corrupted: %s", what.c_str(), bad.c_str());
          bad = checkFilled(buf.data() + size, kGuard, kSentinel);
          NT_EXPECT(bad.empty(), "%s: wrote past the message: %s", what.c_str(), bad.c_str());
        }
        buf.deregister(role);
        closeRecvLink(role, link);
      },
      [&](Role& role) {
        void* comm = connectToPeer(role);
        HostBuffer buf(kBufferSize);
        buf.registerWith(role, comm);
        for (size_t i = 0; i < std::size(kSizes); ++i) {
          size_t size = kSizes[i];
          phase("send %zu bytes", size);
          fillPattern(buf.data(), size, seed(i));
          std::string what = formatString("send of %zu bytes", size);
          void* request = postSend(role, comm, buf.data(), size, static_cast<int>(i) + 1,
                                   buf.mhandle(), Deadline(kTransferTimeout), what.c_str());
          int sent = -1;
          waitDone(role, request, &sent, Deadline(kTransferTimeout), what.c_str());
        }
        buf.deregister(role);
        closeSendComm(role, comm);
      });
}

// NCCL_NET_MAX_REQUESTS (32) receives and 32 sends posted before any is tested, several rounds.
TEST_P(NetTransfer, ThirtyTwoRequestsInFlight) {
  constexpr size_t kSlots = NCCL_NET_MAX_REQUESTS;
  constexpr size_t kSlotBytes = 512 * kKiB;
  constexpr int kRounds = 4;
  static const size_t kSizeCycle[] = {0, 1, 100, 4096, 8191, 65539, 200000, kSlotBytes};
  auto sizeOf = [](int round, size_t slot) { return kSizeCycle[(slot + round) % 8]; };
  auto seedOf = [](int round, size_t slot) { return 0x3200 + round * 64 + slot; };
  runPair(
      [&](Role& role) {
        RecvLink link = listenAndAccept(role);
        HostBuffer buf(kSlots * kSlotBytes);
        buf.registerWith(role, link.comm);
        for (int round = 0; round < kRounds; ++round) {
          phase("round %d: post 32 receives", round);
          memset(buf.data(), kSentinel, buf.size());
          RequestSet set(kSlots);
          auto check = [&](size_t slot, const int* sizes) {
            size_t want = sizeOf(round, slot);
            NT_EXPECT(sizes[0] == static_cast<int>(want),
                      "round %d receive %zu: test() reported size %d, expected %zu", round, slot,
                      sizes[0], want);
            std::string bad =
                checkPattern(buf.data() + slot * kSlotBytes, want, seedOf(round, slot));
            NT_EXPECT(bad.empty(), "round %d receive %zu (%zu bytes): %s", round, slot, want,
                      bad.c_str());
          };
          auto progress = [&] { set.progress(role, "receive in flight", check); };
          for (size_t slot = 0; slot < kSlots; ++slot) {
            void* data = buf.data() + slot * kSlotBytes;
            size_t capacity = kSlotBytes;
            int tag = static_cast<int>(slot);
            void* mhandle = buf.mhandle();
            set.post(slot, postRecv(role, link.comm, 1, &data, &capacity, &tag, &mhandle,
                                    Deadline(kTransferTimeout), "irecv", progress));
          }
          phase("round %d: test the receives", round);
          set.drain(role, Deadline(kTransferTimeout), "receive in flight", check);
        }
        buf.deregister(role);
        closeRecvLink(role, link);
      },
      [&](Role& role) {
        void* comm = connectToPeer(role);
        HostBuffer buf(kSlots * kSlotBytes);
        buf.registerWith(role, comm);
        for (int round = 0; round < kRounds; ++round) {
          phase("round %d: post 32 sends", round);
          RequestSet set(kSlots);
          auto progress = [&] { set.progress(role, "send in flight"); };
          for (size_t slot = 0; slot < kSlots; ++slot) {
            uint8_t* data = buf.data() + slot * kSlotBytes;
            fillPattern(data, sizeOf(round, slot), seedOf(round, slot));
            set.post(slot, postSend(role, comm, data, sizeOf(round, slot), static_cast<int>(slot),
                                    buf.mhandle(), Deadline(kTransferTimeout), "isend", progress));
          }
          phase("round %d: test the sends", round);
          set.drain(role, Deadline(kTransferTimeout), "send in flight");
        }
        buf.deregister(role);
        closeSendComm(role, comm);
      });
}

// One irecv of 8 buffers with 8 tags; the sender sends the 8 tags in a shuffled order and each
// message must land in the buffer posted with its tag, with its size reported there.
TEST_P(NetTransfer, MultiReceiveMatchesTags) {
  constexpr size_t kSlotBytes = 64 * kKiB;
  constexpr int kRounds = 3;
  static const size_t kRoundSizes[kRounds][kMaxGroup] = {
      {1, 4096, 100, 65536, 7, 12345, 30000, 512},
      {0, 65536, 33, 20000, 4095, 8, 60000, 1},
      {65536, 65535, 65534, 65533, 65532, 65531, 65530, 65529}};
  auto tagOf = [](int round, int k) { return 1000 + round * 32 + k * 3; };
  auto seedOf = [](int round, int k) { return 0x8800 + round * 64 + k; };
  runPair(
      [&](Role& role) {
        NetProperties props;
        NT_REQUIRE_OK(role.net.getProperties(role.dev, &props));
        NT_REQUIRE(props.max_recvs >= kMaxGroup, "maxRecvs is %d; this case needs %d",
                   props.max_recvs, kMaxGroup);
        RecvLink link = listenAndAccept(role);
        HostBuffer buf(kMaxGroup * kSlotBytes);
        buf.registerWith(role, link.comm);
        for (int round = 0; round < kRounds; ++round) {
          phase("round %d: multi-receive of 8", round);
          memset(buf.data(), kSentinel, buf.size());
          void* data[kMaxGroup];
          size_t capacity[kMaxGroup];
          int tags[kMaxGroup];
          void* mhandles[kMaxGroup];
          for (int k = 0; k < kMaxGroup; ++k) {
            data[k] = buf.data() + k * kSlotBytes;
            capacity[k] = kSlotBytes;
            tags[k] = tagOf(round, k);
            mhandles[k] = buf.mhandle();
          }
          void* request = postRecv(role, link.comm, kMaxGroup, data, capacity, tags, mhandles,
                                   Deadline(kTransferTimeout), "irecv(n=8)");
          int got[kMaxGroup];
          for (int& g : got) g = -1;
          waitDone(role, request, got, Deadline(kTransferTimeout), "irecv(n=8)");
          for (int k = 0; k < kMaxGroup; ++k) {
            size_t want = kRoundSizes[round][k];
            NT_EXPECT(got[k] == static_cast<int>(want),
                      "round %d buffer %d (tag %d): test() reported size %d, expected %zu", round,
                      k, tags[k], got[k], want);
            std::string bad = checkPattern(data[k], want, seedOf(round, k));
            NT_EXPECT(bad.empty(), "round %d buffer %d (tag %d, %zu bytes): %s", round, k, tags[k],
                      want, bad.c_str());
            bad = checkFilled(static_cast<uint8_t*>(data[k]) + want, kSlotBytes - want, kSentinel);
            NT_EXPECT(bad.empty(), "round %d buffer %d (tag %d): written past %zu bytes: %s", round,
                      k, tags[k], want, bad.c_str());
          }
        }
        buf.deregister(role);
        closeRecvLink(role, link);
      },
      [&](Role& role) {
        void* comm = connectToPeer(role);
        HostBuffer buf(kMaxGroup * kSlotBytes);
        buf.registerWith(role, comm);
        for (int round = 0; round < kRounds; ++round) {
          int order[kMaxGroup];
          for (int k = 0; k < kMaxGroup; ++k) order[k] = k;
          for (int k = kMaxGroup - 1; k > 0; --k) {  // Fisher-Yates, fixed seed per round
            std::swap(order[k], order[mix64(round * 100 + k) % (k + 1)]);
          }
          phase("round %d: 8 sends in shuffled order", round);
          RequestSet set(kMaxGroup);
          auto progress = [&] { set.progress(role, "send in flight"); };
          for (int j = 0; j < kMaxGroup; ++j) {
            int k = order[j];
            uint8_t* data = buf.data() + k * kSlotBytes;
            size_t size = kRoundSizes[round][k];
            fillPattern(data, size, seedOf(round, k));
            set.post(j, postSend(role, comm, data, size, tagOf(round, k), buf.mhandle(),
                                 Deadline(kTransferTimeout), "isend", progress));
          }
          set.drain(role, Deadline(kTransferTimeout), "send in flight");
        }
        buf.deregister(role);
        closeSendComm(role, comm);
      });
}

// Receives posted at 1 MiB take shorter messages: the real size is reported and the rest of the
// buffer is left alone.
// iflush after a receive into host memory: no request (nothing to flush) unless
// EPYARD_NET_FORCE_FLUSH=1, which makes the plugin read the buffer back; that request must
// complete. No buffers at all is an argument error.
void expectFlush(Role& role, void* comm, void* data, int size, void* mhandle) {
  const char* force = getenv("EPYARD_NET_FORCE_FLUSH");
  const bool forced = force != nullptr && std::string(force) == "1";
  void* request = nullptr;
  NT_REQUIRE_OK(role.net.iflush(comm, 1, &data, &size, &mhandle, &request));
  if (size == 0 || !forced) {
    NT_EXPECT(request == nullptr, "iflush of a %d-byte host receive returned a request%s", size,
              forced ? "" : " without EPYARD_NET_FORCE_FLUSH");
  } else {
    NT_EXPECT(request != nullptr, "iflush with EPYARD_NET_FORCE_FLUSH=1 returned no request");
  }
  if (request != nullptr) waitDone(role, request, nullptr, Deadline(kTransferTimeout), "iflush");
  void* none = nullptr;
  const int warns = warnCount();
  NT_EXPECT(role.net.iflush(comm, 0, &data, &size, &mhandle, &none) != ncclSuccess && none == nullptr,
            "iflush of 0 buffers did not fail");
  NT_EXPECT(warnCount() > warns, "iflush of 0 buffers failed without a WARN");
}

TEST_P(NetTransfer, ReceiveLargerThanSend) {
  constexpr size_t kPosted = kMiB;
  static const size_t kSent[] = {1000, 0, 65537, kPosted};
  runPair(
      [&](Role& role) {
        RecvLink link = listenAndAccept(role);
        HostBuffer buf(kPosted);
        buf.registerWith(role, link.comm);
        for (size_t i = 0; i < std::size(kSent); ++i) {
          phase("receive %zu bytes into %zu", kSent[i], kPosted);
          memset(buf.data(), kSentinel, kPosted);
          void* data = buf.data();
          size_t capacity = kPosted;
          int tag = 5;
          void* mhandle = buf.mhandle();
          void* request = postRecv(role, link.comm, 1, &data, &capacity, &tag, &mhandle,
                                   Deadline(kTransferTimeout), "irecv of 1 MiB");
          int got = -1;
          waitDone(role, request, &got, Deadline(kTransferTimeout), "irecv of 1 MiB");
          NT_EXPECT(got == static_cast<int>(kSent[i]),
                    "1 MiB receive of a %zu-byte message: test() reported size %d", kSent[i], got);
          std::string bad = checkPattern(buf.data(), kSent[i], 0x1000 + i);
          NT_EXPECT(bad.empty(), "%zu-byte message: %s", kSent[i], bad.c_str());
          bad = checkFilled(buf.data() + kSent[i], kPosted - kSent[i], kSentinel);
          NT_EXPECT(bad.empty(), "%zu-byte message into 1 MiB: written past the message: %s",
                    kSent[i], bad.c_str());
          expectFlush(role, link.comm, data, got, mhandle);
          bad = checkPattern(buf.data(), kSent[i], 0x1000 + i);
          NT_EXPECT(bad.empty(), "%zu-byte message after iflush: %s", kSent[i], bad.c_str());
        }
        buf.deregister(role);
        closeRecvLink(role, link);
      },
      [&](Role& role) {
        void* comm = connectToPeer(role);
        HostBuffer buf(kPosted);
        buf.registerWith(role, comm);
        for (size_t i = 0; i < std::size(kSent); ++i) {
          phase("send %zu bytes", kSent[i]);
          fillPattern(buf.data(), kSent[i], 0x1000 + i);
          void* request = postSend(role, comm, buf.data(), kSent[i], 5, buf.mhandle(),
                                   Deadline(kTransferTimeout), "isend");
          int sent = -1;
          waitDone(role, request, &sent, Deadline(kTransferTimeout), "isend");
        }
        buf.deregister(role);
        closeSendComm(role, comm);
      });
}

// ---- long random run -------------------------------------------------------------------------

constexpr size_t kRandomWindow = 32;
constexpr size_t kRandomMaxBytes = 64 * kKiB;
constexpr Millis kRandomTimeout{150000};

size_t randomMessageCount() {
  const char* env = getenv("EPYARD_TEST_RANDOM_MESSAGES");
  if (env && *env) return strtoull(env, nullptr, 10);
  return 100000;
}

size_t randomSize(uint64_t seq) { return mix64(seq * 2 + 0x77) % (kRandomMaxBytes + 1); }
int randomTag(uint64_t seq) { return static_cast<int>(mix64(seq * 2 + 0x78) % 4096); }
uint64_t randomSeed(uint64_t seq) { return 0xABCD0000ull + seq; }

// Drives up to kRandomWindow transfers at once until `total` have completed; post(seq, slot)
// returns the request or nullptr (try again), on_done(seq, sizes) checks a finished one.
void runWindow(Role& role, size_t total, const char* what,
               const std::function<void*(uint64_t, size_t)>& post,
               const std::function<void(uint64_t, const int*)>& on_done) {
  RequestSet set(kRandomWindow);
  std::vector<uint64_t> seq_of_slot(kRandomWindow, 0);
  uint64_t next = 0;
  uint64_t completed = 0;
  uint64_t reported = 0;
  const auto start = Clock::now();
  Deadline deadline(kRandomTimeout);
  Backoff backoff;
  while (completed < total) {
    bool moved = false;
    while (next < total && !set.busy(next % kRandomWindow)) {
      void* request = post(next, next % kRandomWindow);
      if (request == nullptr) break;
      seq_of_slot[next % kRandomWindow] = next;
      set.post(next % kRandomWindow, request);
      ++next;
      moved = true;
    }
    if (next / 4096 != reported / 4096) {
      reported = next;
      phase("%s: %llu posted, %llu done", what, static_cast<unsigned long long>(next),
            static_cast<unsigned long long>(completed));
    }
    size_t finished = set.progress(role, what, [&](size_t slot, const int* sizes) {
      on_done(seq_of_slot[slot], sizes);
      ++completed;
    });
    if (moved || finished > 0) {
      backoff.reset();
      continue;
    }
    NT_REQUIRE(!deadline.expired(), "%s: only %llu of %zu messages done after %lld ms", what,
               static_cast<unsigned long long>(completed), total,
               static_cast<long long>(millisSince(start)));
    backoff.idle();
  }
  double seconds = millisSince(start) / 1000.0;
  note("%s: %zu messages in %.2f s (%.0f msg/s)", what, total, seconds,
       seconds > 0 ? total / seconds : 0.0);
}

// 100,000 messages (EPYARD_TEST_RANDOM_MESSAGES overrides) of random size 0..64 KiB and random
// tag, up to 32 in flight on each side; each message's content derives from its sequence
// number, so loss, reordering and corruption all show up as a size or pattern mismatch.
TEST_P(NetTransfer, RandomMessages) {
  const size_t total = randomMessageCount();
  RunOptions options;
  options.limit = std::chrono::seconds(240);
  runPair(
      [&](Role& role) {
        RecvLink link = listenAndAccept(role);
        HostBuffer buf(kRandomWindow * kRandomMaxBytes);
        buf.registerWith(role, link.comm);
        int errors = 0;
        auto post = [&](uint64_t seq, size_t slot) {
          void* data = buf.data() + slot * kRandomMaxBytes;
          size_t capacity = kRandomMaxBytes;
          int tag = randomTag(seq);
          void* mhandle = buf.mhandle();
          return tryRecv(role, link.comm, 1, &data, &capacity, &tag, &mhandle, "random irecv");
        };
        auto check = [&](uint64_t seq, const int* sizes) {
          size_t want = randomSize(seq);
          const uint8_t* data = buf.data() + (seq % kRandomWindow) * kRandomMaxBytes;
          std::string bad;
          if (sizes[0] != static_cast<int>(want)) {
            bad = formatString("test() reported size %d, expected %zu", sizes[0], want);
          } else {
            bad = checkPattern(data, want, randomSeed(seq));
          }
          if (bad.empty()) return;
          NT_EXPECT(false, "message %llu: %s", static_cast<unsigned long long>(seq), bad.c_str());
          NT_REQUIRE(++errors < 10, "giving up after %d bad messages", errors);
        };
        runWindow(role, total, "random receive", post, check);
        buf.deregister(role);
        closeRecvLink(role, link);
      },
      [&](Role& role) {
        void* comm = connectToPeer(role);
        HostBuffer buf(kRandomWindow * kRandomMaxBytes);
        buf.registerWith(role, comm);
        std::vector<int64_t> filled(kRandomWindow, -1);
        auto post = [&](uint64_t seq, size_t slot) {
          uint8_t* data = buf.data() + slot * kRandomMaxBytes;
          if (filled[slot] != static_cast<int64_t>(seq)) {
            fillPattern(data, randomSize(seq), randomSeed(seq));
            filled[slot] = static_cast<int64_t>(seq);
          }
          return trySend(role, comm, data, randomSize(seq), randomTag(seq), buf.mhandle(),
                         "random isend");
        };
        runWindow(role, total, "random send", post, [](uint64_t, const int*) {});
        buf.deregister(role);
        closeSendComm(role, comm);
      },
      options);
}

INSTANTIATE_TEST_SUITE_P(Abi, NetBasics, ::testing::ValuesIn(kAbiVersions), versionName);
INSTANTIATE_TEST_SUITE_P(Abi, NetTransfer, ::testing::ValuesIn(kAbiVersions), versionName);

}  // namespace
}  // namespace epyard::nettest
