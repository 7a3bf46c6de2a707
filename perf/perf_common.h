// Shared pieces of the perf binaries: argument parsing, timing, the two-process launcher and
// the out-of-band channel (a socketpair) the two processes use to exchange handles and acks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace epyard::perf {

double nowUs();

// Parses "64", "4K", "1M", "1G" (powers of two). False on anything else.
bool parseBytes(const char* text, size_t* out);

// Parses a comma-separated list: "1,32,128" -> {1, 32, 128}; "store,copy" -> {"store", "copy"}.
std::vector<int> parseIntList(const char* text);
std::vector<std::string> parseWordList(const char* text);

// A bidirectional byte channel between the two processes.
struct Channel {
  int fd = -1;
  bool sendAll(const void* data, size_t len);
  bool recvAll(void* data, size_t len, int timeout_ms = 60000);
};

// Forks; runs fn(rank=0) in the parent and fn(rank=1) in the child, connected by a Channel.
// Returns the process exit status: 0 when both sides returned 0.
int runTwoProcesses(int (*fn)(int rank, Channel& ch, void* arg), void* arg, int timeout_s);

}  // namespace epyard::perf
