// Wire formats: immediate encoding, handle sealing and validation, CTS sizing.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "engine/wire.h"

namespace epyard::net {
namespace {

TEST(Imm, RoundTripsEveryField) {
  for (uint32_t kind = 0; kind < 4; ++kind)
    for (uint32_t slot : {0u, 1u, 17u, 31u})
      for (uint32_t buffer : {0u, 3u, 7u})
        for (uint32_t payload : {0u, 1u, 4095u, kImmMaxSized}) {
          Imm d = decodeImm(encodeImm(static_cast<ImmKind>(kind), slot, buffer, payload));
          EXPECT_EQ(static_cast<uint32_t>(d.kind), kind);
          EXPECT_EQ(d.slot, slot);
          EXPECT_EQ(d.buffer, buffer);
          EXPECT_EQ(d.payload, payload);
        }
}

TEST(Imm, FieldsDoNotBleedIntoEachOther) {
  // Out-of-range inputs are masked to their field, never spilling into a neighbour.
  Imm d = decodeImm(encodeImm(ImmKind::kSegment, 32 + 5, 8 + 2, kImmMaxSized + 1));
  EXPECT_EQ(d.kind, ImmKind::kSegment);
  EXPECT_EQ(d.slot, 5u);
  EXPECT_EQ(d.buffer, 2u);
  EXPECT_EQ(d.payload, 0u);
}

ConnectHandle validHandle() {
  ConnectHandle h;
  memset(&h, 0, sizeof(h));
  h.addr_len = 16;
  for (int i = 0; i < 16; ++i) h.addr[i] = static_cast<uint8_t>(i * 7);
  h.listen_id = 0x1234567890abcdefull;
  h.rails = 4;
  sealHandle(&h);
  return h;
}

// Rail address lengths come off the wire in connect and accept messages (review finding 9).
TEST(RailAddr, LengthMustFitTheMessage) {
  RailAddr a{};
  for (uint32_t bad : {0u, uint32_t{kMaxAddrBytes} + 1, 0xffffffffu}) {
    a.len = bad;
    EXPECT_NE(checkRailAddr(a), nullptr) << bad << " bytes";
  }
  for (uint32_t good : {1u, 16u, uint32_t{kMaxAddrBytes}}) {
    a.len = good;
    EXPECT_EQ(checkRailAddr(a), nullptr) << good << " bytes";
  }
}

TEST(Handle, SealedHandleIsValid) {
  ConnectHandle h = validHandle();
  EXPECT_EQ(checkHandle(h), nullptr);
  EXPECT_LE(sizeof(ConnectHandle), static_cast<size_t>(NCCL_NET_HANDLE_MAXSIZE));
}

TEST(Handle, PendingTokenIsOutsideTheChecksum) {
  ConnectHandle h = validHandle();
  h.pending_token = 99;  // written by connect() between calls
  EXPECT_EQ(checkHandle(h), nullptr);
}

TEST(Handle, RejectsZeroGarbageAndTruncation) {
  ConnectHandle zero;
  memset(&zero, 0, sizeof(zero));
  EXPECT_NE(checkHandle(zero), nullptr);

  std::mt19937 rng(7);
  for (int trial = 0; trial < 1000; ++trial) {
    ConnectHandle junk;
    auto* bytes = reinterpret_cast<uint8_t*>(&junk);
    for (size_t i = 0; i < sizeof(junk); ++i) bytes[i] = static_cast<uint8_t>(rng());
    EXPECT_NE(checkHandle(junk), nullptr);
  }
  const ConnectHandle good = validHandle();
  for (size_t keep = 0; keep < offsetof(ConnectHandle, checksum); keep += 3) {
    ConnectHandle cut = good;
    uint32_t sum = cut.checksum;
    memset(reinterpret_cast<uint8_t*>(&cut) + keep, 0, offsetof(ConnectHandle, checksum) - keep);
    cut.checksum = sum;
    if (memcmp(&cut, &good, offsetof(ConnectHandle, checksum)) == 0) continue;
    EXPECT_NE(checkHandle(cut), nullptr) << "truncated after " << keep << " bytes";
  }
}

TEST(Handle, FlippedBitIsDetected) {
  for (size_t byte = 0; byte < offsetof(ConnectHandle, checksum); ++byte) {
    ConnectHandle h = validHandle();
    reinterpret_cast<uint8_t*>(&h)[byte] ^= 0x10;
    EXPECT_NE(checkHandle(h), nullptr) << "byte " << byte;
  }
}

TEST(Cts, WireBytesCoverHeaderAndBuffers) {
  EXPECT_EQ(ctsWireBytes(1), offsetof(CtsEntry, buffers) + sizeof(CtsBuffer));
  EXPECT_EQ(ctsWireBytes(kMaxRecvs), sizeof(CtsEntry));
}

TEST(ControlBlock, HoldsEveryRingSlotAndRecord) {
  ControlBlock b;
  EXPECT_EQ(sizeof(b.ring) / sizeof(b.ring[0]), static_cast<size_t>(kMaxRequests));
  EXPECT_EQ(sizeof(b.records), sizeof(Record) * kMaxRequests * kMaxRecvs);
  EXPECT_GE(sizeof(b.msg_out), sizeof(ConnectMsg));
  EXPECT_GE(sizeof(b.msg_in), sizeof(AcceptMsg));
}

}  // namespace
}  // namespace epyard::net
