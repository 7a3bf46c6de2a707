// Optional progress threads (EPYARD_NET_PROGRESS_THREADS). With manual-progress providers
// such as tcp, polling an endpoint is what moves its bytes; one NCCL proxy thread polling every
// rail serialises all of that. These threads each poll a share of the rails of connected comms
// and dispatch completions under the comm's mutex, so rails move data in parallel.
#pragma once

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace epyard::net {

class Comm;

class ProgressThreads {
 public:
  // The process-wide pool, started on first use with `count` threads; nullptr when count is 0.
  static ProgressThreads* instance();
  static void configure(int count);
  // Stops and joins the threads (at unload); comms still attached are no longer progressed.
  static void shutdown();

  void attach(Comm* comm);
  // Returns once no thread polls `comm` any more. Call without holding comm->mutex().
  void detach(Comm* comm);

 private:
  struct Entry {
    Comm* comm;
    int rail;
  };
  struct Worker {
    std::mutex mutex;  // held while the worker walks `entries`
    std::vector<Entry> entries;
    std::thread thread;
  };
  explicit ProgressThreads(int count);
  void run(Worker* w);

  std::vector<Worker*> workers_;
  std::atomic<unsigned> next_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace epyard::net
