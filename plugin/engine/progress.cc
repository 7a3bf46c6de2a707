#include "engine/progress.h"

#include <algorithm>
#include <chrono>

#include "engine/comm.h"

namespace epyard::net {
namespace {
std::atomic<int> g_count{0};
std::atomic<ProgressThreads*> g_pool{nullptr};  // set once instance() has started the threads

// The plugin is dlclose()d by NCCL: no thread may still run its code afterwards.
__attribute__((destructor)) void stopThreadsOnUnload() { ProgressThreads::shutdown(); }
}  // namespace

void ProgressThreads::configure(int count) { g_count.store(count); }

ProgressThreads* ProgressThreads::instance() {
  static ProgressThreads* pool = [] {
    ProgressThreads* p = g_count.load() > 0 ? new ProgressThreads(g_count.load()) : nullptr;
    g_pool.store(p);
    return p;
  }();
  return pool;  // never freed; shutdown() stops its threads at unload
}

ProgressThreads::ProgressThreads(int count) {
  for (int i = 0; i < count; ++i) {
    auto* w = new Worker;
    w->thread = std::thread([this, w] { run(w); });
    workers_.push_back(w);
  }
}

void ProgressThreads::shutdown() {
  ProgressThreads* pool = g_pool.load();  // never starts threads just to stop them
  if (pool == nullptr || pool->stop_.exchange(true)) return;
  for (Worker* w : pool->workers_) w->thread.join();
}

void ProgressThreads::attach(Comm* comm) {
  for (int r = 0; r < comm->numRails(); ++r) {
    Worker* w = workers_[next_.fetch_add(1) % workers_.size()];
    std::lock_guard<std::mutex> lock(w->mutex);
    w->entries.push_back({comm, r});
  }
}

void ProgressThreads::detach(Comm* comm) {
  for (Worker* w : workers_) {
    std::lock_guard<std::mutex> lock(w->mutex);
    w->entries.erase(std::remove_if(w->entries.begin(), w->entries.end(),
                                    [comm](const Entry& e) { return e.comm == comm; }),
                     w->entries.end());
  }
}

void ProgressThreads::run(Worker* w) {
  Completion completions[16];
  int idle_passes = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    bool any = false;
    {
      std::lock_guard<std::mutex> lock(w->mutex);
      for (const Entry& e : w->entries) {
        e.comm->postQueued(e.rail);
        int n = e.comm->railEndpoint(e.rail)->poll(completions, 16);
        if (n == 0) continue;
        any = true;
        std::lock_guard<std::mutex> comm_lock(e.comm->mutex());
        if (n < 0) {
          Completion failed;
          failed.kind = Completion::Kind::kError;
          failed.error = e.comm->railEndpoint(e.rail)->lastError();
          e.comm->dispatch(e.rail, &failed, 1);
        } else {
          e.comm->dispatch(e.rail, completions, n);
        }
      }
    }
    // Spin while there is traffic; back off to short sleeps when there has been none.
    idle_passes = any ? 0 : idle_passes + 1;
    if (idle_passes > 20000) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

}  // namespace epyard::net
