// Plain structs shared by the host code and the LL kernels: where things live in the symmetric
// buffer, in the group's device state and in a handle's memory, and the kernels' argument
// structs. No CUDA or NCCL types here, so host C++ and nvcc
// see the same layouts; the static_asserts pin what crosses the boundary.
#pragma once

#include <cstddef>
#include <cstdint>

namespace epyard::ep {

constexpr int kLlMaxTopK = 16;
constexpr int kLlMaxRanks = 512;  // every rank holds at least one of at most 512 experts
constexpr int kLlScaleBlock = 128;
constexpr int kLlBlockTeams = 4;  // 512-thread blocks as four 128-thread teams
constexpr int kLlTraceMarks = 10; // EPYARD_EP_TRACE: phase marks per op (see traceMark)

// One dispatched token as it crosses NVLink: this header, then the payload (BF16 or FP8), then
// (FP8) one float scale per 128 channels. `local[k]` is the destination-local expert named by
// top-k slot k (-1 when that expert lives elsewhere), `pos[k]` the row of this token among the
// sender's tokens for that expert (-1 for a repeated expert), `weight[k]` its top-k weight.
struct alignas(16) LlSlotMeta {
  int32_t token;
  int32_t reserved;
  int32_t local[kLlMaxTopK];
  int32_t pos[kLlMaxTopK];
  float weight[kLlMaxTopK];
  int32_t pad[2];
};
static_assert(sizeof(LlSlotMeta) == 208 && sizeof(LlSlotMeta) % 16 == 0, "slot meta layout");

// Offsets inside the symmetric window; identical on every rank. R ranks, B tokens per rank.
// Flags hold sequence numbers and tagged words their low 32 bits: they never need clearing
// between calls (only at creation and mask clean, by the reset kernel).
// Every token slot and every combine row has its own flag, so a receiver uses each piece the
// moment it lands and no sender ever waits for its whole grid before signalling.
struct LlBufferLayout {
  uint64_t disp_slot_flags;    // [2][R][B] u64: src wrote slot j for seq
  uint64_t disp_acks;          // [2][R] u64: rank r has consumed my dispatch seq (credit)
  uint64_t comb_row_flags;     // [2][B][R] u64: rank r wrote its row of my token t for seq
  uint64_t comb_acks;          // [2][R] u64 (per half: ops may complete out of order)
  uint64_t disp_headers;       // [2][R] x header_bytes: tagged words, token count then counts[L]
  uint64_t comb_weights;       // [2][R][B][kLlMaxTopK] tagged words: each source's weights
  uint64_t barrier_flags;      // [R] u64: group barriers (create, mask clean)
  uint64_t disp_slots;         // [2][R][B] x slot_bytes
  uint64_t comb_slots;         // [2][B][R] x comb_row_bytes: rank r's partial sum of token t
  uint64_t total;
  uint32_t header_bytes;
  uint32_t slot_bytes;
  uint32_t payload_bytes;   // max_token_bytes: room for a BF16 row
  uint32_t comb_row_bytes;  // a BF16 row
};
static_assert(sizeof(LlBufferLayout) == 96, "buffer layout");

// The group's device-side state (ordinary device memory, one per group).
struct LlDeviceState {
  uint64_t disp_seq;     // last dispatch sequence number a sending launch took
  uint64_t comb_seq;     // same for combine
  uint64_t barrier_seq;  // group barriers so far
  uint32_t arrivals[8];  // blocks of a launch that started (the last one advances the sequence)
  // [op][half]: the last sequence number this rank received in that buffer half, acknowledged
  // to the peers at the start of every later launch of the op (see beginOp).
  uint64_t pending_ack[2][2];
  int32_t abort;         // a wait failed: the other blocks stop waiting too
  int32_t reserved;
  int32_t mask[kLlMaxRanks];  // 1 = rank masked (skipped by dispatch and combine)
  // EPYARD_EP_TRACE builds only: block 0's phase timestamps of the last call and their sums
  // (ns after the kernel's start), per op (0 dispatch, 1 combine).
  uint64_t trace_last[2][kLlTraceMarks];
  uint64_t trace_sum[2][kLlTraceMarks];
  uint64_t trace_calls[2];
};

enum LlArrival : int {
  kArriveDispatchStart = 0,  // = op: 0 dispatch, 1 combine
  kArriveCombineStart,
  kArriveDispatchEnd,  // EPYARD_EP_TRACE builds: the last block commits the phase times
  kArriveCombineEnd,
};

// What a failed wait or a bad routing entry leaves for ncclEpGetAsyncError (host-mapped
// memory, written by the kernel, read by the host without synchronising).
enum LlFault : int32_t {
  kFaultNone = 0,
  kFaultTimeout = 1,     // a wait passed timeout_ns
  kFaultBadExpert = 2,   // topk_idx held a value outside [-1, num_experts)
};
enum LlWaitKind : int32_t {
  kWaitDispatchCredit = 1,  // for a receiver to free its buffer half
  kWaitDispatchCounts,      // for a sender's per-expert counts
  kWaitDispatchData,        // for a sender's tokens
  kWaitCombineCredit,
  kWaitCombineWeights,      // for a token owner's combine weights
  kWaitCombineData,
  kWaitBarrier,
};
struct LlAsyncError {
  int32_t fault;  // LlFault
  int32_t what;   // LlWaitKind, or for kFaultBadExpert the top-k slot
  int32_t peer;   // the rank waited for, or for kFaultBadExpert the token
  int32_t rank;   // this rank
  uint64_t seq;
  uint64_t waited_ns;
  int64_t observed;  // the flag's value at the timeout, or the bad expert id
};
static_assert(sizeof(LlAsyncError) == 40, "async error layout");

// A handle's device memory, carved from one block (library- or caller-owned). Routing is
// written by ncclEpUpdateHandle; the recv_* part by the receiving half of dispatch, for combine.
struct LlHandleLayout {
  uint64_t topk;             // [B][K] int32: validated expert ids (-1 = none)
  uint64_t send_pos;         // [B][K] int32: row among my tokens for that expert, -1 = repeat
  uint64_t dst_rank;         // [B][K] int32: ranks the token goes to, -1 terminated
  uint64_t dst_slot;         // [B][K] int32: its slot at that rank
  uint64_t expert_send_cnt;  // [E] int32: my tokens per expert
  uint64_t rank_send_cnt;    // [R] int32: my tokens per destination rank
  uint64_t recv_src_cnt;     // [R] int32: tokens received from each source
  uint64_t recv_token;       // [R*B] int32: source token of received slot (d, j)
  uint64_t recv_rows;        // [R*B*K] int32: expert-major row holding top-k slot k, or -1
  uint64_t seqs;             // [2] u64: sequence numbers of this handle's dispatch, combine
  uint64_t total;
};

// Device pointers into a handle's memory.
struct LlHandleDev {
  int32_t* topk;
  int32_t* send_pos;
  int32_t* dst_rank;
  int32_t* dst_slot;
  int32_t* expert_send_cnt;
  int32_t* rank_send_cnt;
  int32_t* recv_src_cnt;
  int32_t* recv_token;
  int32_t* recv_rows;
  uint64_t* seqs;
};

// Peer memory: where every rank's symmetric buffer is mapped in this process. Rank p's buffer
// starts at base + p * stride. Filled from NCCL's window at group creation (its LSA pointers are
// evenly spaced by construction, and the group checks that they are), or by the one-GPU
// virtual-rank harness (one allocation cut into equal slices). Kernel parameters, so the
// kernels compute a peer's address without a memory load.
struct LlPeers {
  char* base;
  uint64_t stride;
};
static_assert(sizeof(LlPeers) == 16, "peer memory layout");

// Everything every LL kernel needs about the group and the handle.
struct LlCommon {
  LlPeers peers;
  LlBufferLayout buf;
  LlDeviceState* state;
  LlAsyncError* error;
  LlHandleDev h;
  uint64_t timeout_ns;
  int32_t rank;
  int32_t num_ranks;
  int32_t num_experts;
  int32_t local_experts;
  int32_t max_tokens;  // B
  int32_t top_k;
  int32_t num_tokens;  // this handle's T (from ncclEpUpdateHandle)
  int32_t rank_major;  // layout: 0 expert-major, 1 rank-major
  int32_t enable_mask;
  int32_t reserved;
};

// Which halves of an op a launch runs (send_only launches kSend, ncclEpComplete kRecv).
enum LlPhases : int { kPhaseSend = 1, kPhaseRecv = 2, kPhaseBoth = 3 };

struct LlLayoutArgs {
  LlCommon c;
  const int64_t* topk_idx;  // [T][K]
};

// Layout-info outputs (int32, each optional).
struct LlCounters {
  int32_t* expert_counters;
  int32_t* src_rank_counters;
  int32_t* expert_offsets;
  int32_t* recv_total;
};

struct LlDispatchArgs {
  LlCommon c;
  int32_t phases;
  int32_t hidden;
  int32_t fp8;
  int32_t round_scales;
  const uint16_t* x;            // [T][H] BF16
  const float* topk_weights;    // [T][K], may be null
  void* out_tokens;             // BF16 or E4M3 rows
  float* out_scales;            // FP8: [rows][H/128]
  int64_t* out_topk_idx;        // rank-major: [R][B][K]
  float* out_topk_weights;      // rank-major: [R][B][K]
  LlCounters counters;
};

struct LlCombineArgs {
  LlCommon c;
  int32_t phases;
  int32_t hidden;
  const uint16_t* x;           // expert-major [L][R*B][H] or rank-major [R][B][H], BF16
  const float* topk_weights;   // expert-major: [T][K] (the weights applied)
  uint16_t* out;               // [T][H] BF16
};

struct LlControlArgs {
  LlCommon c;
  int32_t zero_buffer;  // clear every flag first (group creation, mask clean)
};

}  // namespace epyard::ep
