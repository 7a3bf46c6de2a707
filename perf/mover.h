// A "mover" moves messages from rank 1 to rank 0 (and back, for latency): the perf loops are
// written once against this interface and run over the plugin or over raw libfabric.
#pragma once

#include <cstddef>
#include <string>

#include "perf_common.h"

namespace epyard::perf {

class Mover {
 public:
  virtual ~Mover() = default;
  virtual const char* name() const = 0;
  // Connects the two ranks (both directions) and registers max_bytes of buffer each way.
  virtual bool setup(int rank, Channel& ch, size_t max_bytes, std::string* error) = 0;
  // Posts a send of `size` bytes to the peer; *slot = -1 when the transport says "later".
  virtual bool postSend(size_t size, int* slot, std::string* error) = 0;
  // Posts a receive of up to `size` bytes from the peer; *slot = -1 for "later".
  virtual bool postRecv(size_t size, int* slot, std::string* error) = 0;
  // Whether the operation in `slot` finished (the slot is free again once true).
  virtual bool test(int slot, bool* done, std::string* error) = 0;
  virtual void teardown() = 0;
};

Mover* makePluginMover(const char* plugin_path);
Mover* makeRawOfiMover(const char* provider);

}  // namespace epyard::perf
