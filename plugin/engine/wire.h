// What the engine puts on the wire: the connect handle, the connect/accept messages, the
// clear-to-send (CTS) entries a receiver writes into its sender's ring, the completion records
// a sender writes into its receiver, and the 32-bit immediate data every write carries.
// Everything here is plain data with fixed layouts; both peers run the same build.
#pragma once

#include <cstddef>
#include <cstdint>

#include "abi/net_common.h"

namespace epyard::net {

constexpr int kMaxRequests = NCCL_NET_MAX_REQUESTS;  // CTS ring slots per connection
constexpr int kMaxRecvs = 8;                         // buffers in one grouped receive
constexpr int kMaxRails = 8;                         // endpoints per connection
constexpr int kMaxAddrBytes = 56;                    // one endpoint's provider address
constexpr uint32_t kWireVersion = 1;

// --- Immediate data -------------------------------------------------------------------------
// bits 31..30 kind, 29..25 slot, 24..22 buffer index, 21..0 payload.
enum class ImmKind : uint32_t {
  kSized = 0,    // the whole message in one write; payload = its size (< 4 MiB)
  kSegment = 1,  // one part of a striped message; the record says how many parts
  kRecord = 2,   // the completion record of (slot, buffer) was written
  kCts = 3,      // a CTS entry for `slot` was written into the sender's ring
};
constexpr uint32_t kImmMaxSized = (1u << 22) - 1;

struct Imm {
  ImmKind kind;
  uint32_t slot;
  uint32_t buffer;
  uint32_t payload;
};

constexpr uint32_t encodeImm(ImmKind kind, uint32_t slot, uint32_t buffer, uint32_t payload) {
  return (static_cast<uint32_t>(kind) << 30) | ((slot & 31u) << 25) | ((buffer & 7u) << 22) |
         (payload & kImmMaxSized);
}
constexpr Imm decodeImm(uint32_t imm) {
  return Imm{static_cast<ImmKind>(imm >> 30), (imm >> 25) & 31u, (imm >> 22) & 7u,
             imm & kImmMaxSized};
}

// --- Connect handle (what listen() gives NCCL to carry to the connecting peer) -------------
constexpr uint32_t kHandleMagic = 0x45505944;  // "EPYD"
struct ConnectHandle {
  uint32_t magic;
  uint16_t version;
  uint16_t addr_len;
  uint64_t listen_id;  // random; echoed in ConnectMsg so stale connects are told apart
  uint8_t addr[kMaxAddrBytes];
  uint32_t rails;     // listener's rail count (the connection uses min of both sides)
  uint32_t checksum;  // over every byte before it
  // Written by connect() while it is in progress (NCCL calls connect again with the same
  // handle): names the half-built connection in a process-local table.
  uint64_t pending_token;
};
static_assert(sizeof(ConnectHandle) <= NCCL_NET_HANDLE_MAXSIZE, "handle must fit NCCL's 128 B");

uint32_t checksum32(const void* data, size_t len);
void sealHandle(ConnectHandle* h);
// Returns nullptr when valid, else what is wrong with it (for the error message).
const char* checkHandle(const ConnectHandle& h);

// --- Where a peer's control block lives (registered memory every rail can reach) ----------
struct RemoteBlock {
  uint64_t addr;  // virtual address of the block
  uint64_t keys[kMaxRails];
};

struct RailAddr {
  uint32_t len;
  uint8_t bytes[kMaxAddrBytes];
};
// nullptr when `len` fits `bytes` (the transport then checks it against its own format).
const char* checkRailAddr(const RailAddr& a);

// A non-zero 64-bit id from the kernel's random source (listener ids, connection ids, connect
// tokens: a peer cannot guess one it has not been given).
uint64_t randomId();

// Sender -> listener, by a two-sided send to the listen endpoint.
constexpr uint32_t kConnectMagic = 0x45504331;  // "EPC1"
struct ConnectMsg {
  uint32_t magic;
  uint32_t version;
  uint64_t listen_id;
  uint64_t conn_id;  // random, chosen by the sender; the ack echoes it
  uint32_t rails;
  uint32_t pad;
  RailAddr rail_addrs[kMaxRails];
  RemoteBlock block;  // the sender's control block (CTS ring, ping word)
};

// Receiver -> sender, by a two-sided send to the sender's rail 0.
constexpr uint32_t kAcceptMagic = 0x45504132;  // "EPA2"
struct AcceptMsg {
  uint32_t magic;
  uint32_t rails;  // rails the connection uses
  uint64_t conn_id;
  RailAddr rail_addrs[kMaxRails];
  RemoteBlock block;  // the receiver's control block (completion records, ping word)
};

// --- CTS: one grouped receive as seen by the sender ----------------------------------------
struct CtsBuffer {
  uint64_t addr;  // where the data goes
  uint64_t base;  // start of the registration holding it (for offset-addressed providers)
  uint64_t size;  // bytes posted
  int32_t tag;
  uint32_t pad;
  uint64_t keys[kMaxRails];
};
struct CtsEntry {
  uint64_t seq;  // receive sequence number; slot = seq % kMaxRequests
  uint32_t count;
  uint32_t pad;
  CtsBuffer buffers[kMaxRecvs];
};
constexpr size_t ctsWireBytes(uint32_t count) {
  return offsetof(CtsEntry, buffers) + count * sizeof(CtsBuffer);
}

// --- Completion record: written by the sender next to a striped or empty message ---------
enum RecordFlags : uint32_t { kRecordTruncated = 1 };
struct Record {
  uint64_t size;      // bytes the sender sent (or tried to send, if truncated)
  uint32_t segments;  // data writes that carry the message
  uint32_t flags;
};
static_assert(sizeof(Record) == 16, "record layout");

// --- Control block: one per comm, registered on every rail ---------------------------------
struct ControlBlock {
  CtsEntry ring[kMaxRequests];                   // sender: CTS entries land here
  CtsEntry cts_stage[kMaxRequests];              // receiver: CTS entries are written from here
  Record records[kMaxRequests][kMaxRecvs];       // receiver: records land here
  Record record_stage[kMaxRequests][kMaxRecvs];  // sender: records are written from here
  uint64_t ping_word;                            // peers write here to check we are alive
  uint64_t ping_source;
  alignas(64) uint8_t msg_out[sizeof(ConnectMsg)];
  alignas(64) uint8_t msg_in[sizeof(ConnectMsg)];
  alignas(64) uint8_t flush_sink[64];  // receiver: iflush reads land here
};

}  // namespace epyard::net
