// epyard NCCL check: correctness of all-reduce and all-to-all. Each rank fills its buffers with
// values every rank can compute, runs the collective, and compares the result on the host.

#include "nccl_check.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace epyard::nccl_check {
namespace {

// --- all-reduce values ------------------------------------------------------------------------

// Small integers, so that every partial sum is exact in float32 and bfloat16 whatever the order
// of the reduction: |value| <= mod/2, and the sums stay within 2^24 (float32) or 2^8 (bfloat16).
inline int AllReduceValue(int rank, uint64_t i, int seed, int mod) {
  uint64_t x = i * 7u + static_cast<uint64_t>(rank) * 13u + static_cast<uint64_t>(seed) * 29u;
  return static_cast<int>(x % static_cast<uint64_t>(mod)) - mod / 2;
}

inline uint16_t FloatToBf16Exact(float f) {  // exact for the small integers used here
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}

inline float Bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

const char* TypeName(ncclDataType_t t) {
  switch (t) {
    case ncclFloat32:
      return "float32";
    case ncclBfloat16:
      return "bfloat16";
    case ncclUint32:
      return "uint32";
    case ncclInt8:
      return "int8";
    default:
      return "?";
  }
}

// One all-reduce (sum) correctness check, `rounds` times on the same buffers with new data.
void CheckAllReduce(Rank& r, size_t count, ncclDataType_t type, bool in_place, int rounds) {
  const size_t esize = (type == ncclBfloat16) ? 2 : 4;
  const size_t bytes = count * esize;
  // bfloat16 holds integers exactly up to 256: keep n * mod/2 within that.
  int mod = 17;
  if (type == ncclBfloat16) mod = (r.nranks <= 32) ? 17 : (r.nranks <= 128 ? 5 : 1);
  char name[160];
  std::snprintf(name, sizeof(name), "allreduce %s count=%zu (%s) %s", TypeName(type), count,
                FormatBytes(bytes).c_str(), in_place ? "in-place" : "out-of-place");

  DevBuf send(bytes);
  DevBuf recv_buf(in_place ? 0 : bytes);
  void* recv = in_place ? send.p : recv_buf.p;
  std::vector<unsigned char> host(bytes);
  std::vector<unsigned char> got(bytes);
  int bad_rounds = 0;

  for (int round = 0; round < rounds; ++round) {
    const int seed = static_cast<int>(count % 1000) + 100 * round + (in_place ? 50 : 0);
    g_check = std::string(name) + " round " + std::to_string(round + 1);
    for (size_t i = 0; i < count; ++i) {
      float v = static_cast<float>(AllReduceValue(r.rank, i, seed, mod));
      if (type == ncclBfloat16) {
        uint16_t h = FloatToBf16Exact(v);
        std::memcpy(&host[i * 2], &h, 2);
      } else {
        std::memcpy(&host[i * 4], &v, 4);
      }
    }
    CUDA_OK(cudaMemcpy(send.p, host.data(), bytes, cudaMemcpyHostToDevice));
    if (!in_place) CUDA_OK(cudaMemset(recv, 0xff, bytes));  // NaN: catches untouched output
    CUDA_OK(cudaDeviceSynchronize());
    NCCL_OK(ncclAllReduce(send.p, recv, count, type, ncclSum, r.comm, r.stream));
    WaitStream(r.stream);
    CUDA_OK(cudaMemcpy(got.data(), recv, bytes, cudaMemcpyDeviceToHost));

    size_t wrong = 0;
    for (size_t i = 0; i < count; ++i) {
      int expect = 0;
      for (int q = 0; q < r.nranks; ++q) expect += AllReduceValue(q, i, seed, mod);
      float g;
      if (type == ncclBfloat16) {
        uint16_t h;
        std::memcpy(&h, &got[i * 2], 2);
        g = Bf16ToFloat(h);
      } else {
        std::memcpy(&g, &got[i * 4], 4);
      }
      if (!(g == static_cast<float>(expect))) {
        if (wrong < 3) {
          RankFailf("element %zu is %g, expected %d", i, static_cast<double>(g), expect);
        }
        ++wrong;
      }
    }
    if (wrong != 0) {
      RankFailf("%zu of %zu elements wrong", wrong, count);
      ++bad_rounds;
    }
  }
  if (bad_rounds != 0) {
    ++r.failures;
  } else if (r.rank == 0) {
    std::printf("[rank 0] ok   %s x%d\n", name, rounds);
  }
}

// --- all-to-all values ------------------------------------------------------------------------

inline uint32_t Mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h;
}

// Element j of the block that rank src sends to rank dst.
inline uint32_t AllToAllValue(int src, int dst, uint64_t j, int seed) {
  uint32_t h = Mix32(static_cast<uint32_t>(src) * 0x9e3779b1u + static_cast<uint32_t>(seed));
  h = Mix32(h ^ (static_cast<uint32_t>(dst) * 0x85ebca77u));
  return Mix32(h ^ static_cast<uint32_t>(j) ^ static_cast<uint32_t>(j >> 32) * 0xc2b2ae3du);
}

// All-to-all from grouped ncclSend/ncclRecv; counts[s * n + d] elements (uint32) go from s to d.
void CheckAllToAll(Rank& r, const std::vector<size_t>& counts, const char* what, int rounds) {
  const int n = r.nranks;
  std::vector<size_t> send_off(n + 1, 0), recv_off(n + 1, 0);
  for (int p = 0; p < n; ++p) {
    send_off[p + 1] = send_off[p] + counts[static_cast<size_t>(r.rank) * n + p];
    recv_off[p + 1] = recv_off[p] + counts[static_cast<size_t>(p) * n + r.rank];
  }
  const size_t send_n = send_off[n], recv_n = recv_off[n];
  size_t all_n = 0;
  for (size_t c : counts) all_n += c;
  char name[160];
  std::snprintf(name, sizeof(name), "alltoall uint32 %s (%s sent by rank %d)", what,
                FormatBytes(send_n * 4).c_str(), r.rank);

  DevBuf send(send_n * 4);
  DevBuf recv(recv_n * 4);
  std::vector<uint32_t> host(send_n);
  std::vector<uint32_t> got(recv_n);
  int bad_rounds = 0;

  for (int round = 0; round < rounds; ++round) {
    // The same on every rank: senders and receivers must agree on the data.
    const int seed = 7 + 1000 * round + static_cast<int>(all_n % 997);
    g_check = std::string(name) + " round " + std::to_string(round + 1);
    for (int d = 0; d < n; ++d) {
      for (size_t j = 0; j < send_off[d + 1] - send_off[d]; ++j) {
        host[send_off[d] + j] = AllToAllValue(r.rank, d, j, seed);
      }
    }
    CUDA_OK(cudaMemcpy(send.p, host.data(), send_n * 4, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(recv.p, 0xa5, recv_n * 4));
    CUDA_OK(cudaDeviceSynchronize());
    uint32_t* sp = static_cast<uint32_t*>(send.p);
    uint32_t* rp = static_cast<uint32_t*>(recv.p);
    NCCL_OK(ncclGroupStart());
    for (int p = 0; p < n; ++p) {
      NCCL_OK(ncclSend(sp + send_off[p], send_off[p + 1] - send_off[p], ncclUint32, p, r.comm,
                       r.stream));
      NCCL_OK(ncclRecv(rp + recv_off[p], recv_off[p + 1] - recv_off[p], ncclUint32, p, r.comm,
                       r.stream));
    }
    NCCL_OK(ncclGroupEnd());
    WaitStream(r.stream);
    CUDA_OK(cudaMemcpy(got.data(), recv.p, recv_n * 4, cudaMemcpyDeviceToHost));

    size_t wrong = 0;
    for (int s = 0; s < n; ++s) {
      for (size_t j = 0; j < recv_off[s + 1] - recv_off[s]; ++j) {
        uint32_t expect = AllToAllValue(s, r.rank, j, seed);
        uint32_t g = got[recv_off[s] + j];
        if (g != expect) {
          if (wrong < 3) {
            RankFailf("from rank %d element %zu is 0x%08x, expected 0x%08x", s, j, g, expect);
          }
          ++wrong;
        }
      }
    }
    if (wrong != 0) {
      RankFailf("%zu of %zu received elements wrong", wrong, recv_n);
      ++bad_rounds;
    }
  }
  if (bad_rounds != 0) {
    ++r.failures;
  } else if (r.rank == 0) {
    std::printf("[rank 0] ok   %s x%d\n", name, rounds);
  }
}

}  // namespace

void RunChecks(Rank& r) {
  const int kRounds = 2;
  // float32: 4 B, 1 KiB, an odd count, 1 MiB (out-of-place and in-place), 64 MiB.
  CheckAllReduce(r, 1, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 256, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 12345, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 262144, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 262144, ncclFloat32, true, kRounds);
  CheckAllReduce(r, 16777216, ncclFloat32, false, kRounds);
  CheckAllReduce(r, 524288, ncclBfloat16, false, kRounds);  // 1 MiB

  const int n = r.nranks;
  const size_t nn = static_cast<size_t>(n) * n;
  CheckAllToAll(r, std::vector<size_t>(nn, 1), "4 B per peer", kRounds);
  CheckAllToAll(r, std::vector<size_t>(nn, 1000), "4000 B per peer", kRounds);
  CheckAllToAll(r, std::vector<size_t>(nn, 262144), "1 MiB per peer", kRounds);
  CheckAllToAll(r, std::vector<size_t>(nn, 1048576), "4 MiB per peer", kRounds);
  std::vector<size_t> uneven(nn);
  for (int s = 0; s < n; ++s) {
    for (int d = 0; d < n; ++d) {
      const size_t step = static_cast<size_t>((s * 5 + d * 3 + 1) % 7);
      uneven[static_cast<size_t>(s) * n + d] = 1 + step * 40009;
    }
  }
  CheckAllToAll(r, uneven, "uneven 4 B..0.9 MiB per peer", kRounds);
}

}  // namespace epyard::nccl_check
