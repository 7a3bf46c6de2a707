// Moves messages through the plugin, exactly as NCCL drives it (ncclNet_v11 from dlopen).
#include <dlfcn.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "abi/net_v11.h"
#include "mover.h"

namespace epyard::perf {
namespace {

void logToStderr(ncclDebugLogLevel level, unsigned long, const char* file, int line,
                 const char* fmt, ...) {
  if (level != NCCL_LOG_WARN && getenv("EPYARD_PERF_VERBOSE") == nullptr) return;
  va_list args;
  va_start(args, fmt);
  fprintf(stderr, "[plugin %s:%d] ", file, line);
  vfprintf(stderr, fmt, args);
  fprintf(stderr, "\n");
  va_end(args);
}

class PluginMover final : public Mover {
 public:
  explicit PluginMover(const char* path) : path_(path) {}
  const char* name() const override { return "plugin"; }

  bool setup(int rank, Channel& ch, size_t max_bytes, std::string* error) override {
    void* lib = dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return fail(error, std::string("dlopen: ") + dlerror());
    net_ = static_cast<const ncclNet_v11_t*>(dlsym(lib, "ncclNetPlugin_v11"));
    if (net_ == nullptr) return fail(error, "the plugin exports no ncclNetPlugin_v11");
    ncclNetCommConfig_v11_t config = {-1};
    if (net_->init(&ctx_, 1, &config, logToStderr, nullptr) != ncclSuccess)
      return fail(error, "init failed");
    int ndev = 0;
    if (net_->devices(&ndev) != ncclSuccess || ndev < 1)
      return fail(error, "the plugin found no network device (is libfabric installed?)");
    char handle[NCCL_NET_HANDLE_MAXSIZE] = {}, peer_handle[NCCL_NET_HANDLE_MAXSIZE] = {};
    void* listen = nullptr;
    if (net_->listen(ctx_, 0, handle, &listen) != ncclSuccess) return fail(error, "listen failed");
    if (!ch.sendAll(handle, sizeof(handle)) || !ch.recvAll(peer_handle, sizeof(peer_handle)))
      return fail(error, "handle exchange failed");
    double deadline = nowUs() + 30e6;
    while (send_ == nullptr || recv_ == nullptr) {
      if (send_ == nullptr && net_->connect(ctx_, 0, peer_handle, &send_, nullptr) != ncclSuccess)
        return fail(error, "connect failed");
      if (recv_ == nullptr && net_->accept(listen, &recv_, nullptr) != ncclSuccess)
        return fail(error, "accept failed");
      if (nowUs() > deadline) return fail(error, "connect/accept did not finish in 30 s");
    }
    net_->closeListen(listen);
    if (posix_memalign(&sbuf_, 4096, max_bytes) != 0 || posix_memalign(&rbuf_, 4096, max_bytes))
      return fail(error, "out of memory");
    memset(sbuf_, rank + 1, max_bytes);
    memset(rbuf_, 0, max_bytes);
    if (net_->regMr(send_, sbuf_, max_bytes, NCCL_PTR_HOST, &smr_) != ncclSuccess ||
        net_->regMr(recv_, rbuf_, max_bytes, NCCL_PTR_HOST, &rmr_) != ncclSuccess)
      return fail(error, "regMr failed");
    reqs_.assign(64, nullptr);
    return true;
  }

  bool postSend(size_t size, int* slot, std::string* error) override {
    *slot = freeSlot();
    if (*slot < 0) return true;
    void* req = nullptr;
    if (net_->isend(send_, sbuf_, size, 1, smr_, nullptr, &req) != ncclSuccess)
      return fail(error, "isend failed");
    if (req == nullptr)
      *slot = -1;
    else
      reqs_[*slot] = req;
    return true;
  }

  bool postRecv(size_t size, int* slot, std::string* error) override {
    *slot = freeSlot();
    if (*slot < 0) return true;
    void* req = nullptr;
    void* data = rbuf_;
    int tag = 1;
    if (net_->irecv(recv_, 1, &data, &size, &tag, &rmr_, nullptr, &req) != ncclSuccess)
      return fail(error, "irecv failed");
    if (req == nullptr)
      *slot = -1;
    else
      reqs_[*slot] = req;
    return true;
  }

  bool test(int slot, bool* done, std::string* error) override {
    int d = 0, size = 0;
    if (net_->test(reqs_[slot], &d, &size) != ncclSuccess) return fail(error, "test failed");
    *done = d != 0;
    if (*done) reqs_[slot] = nullptr;
    return true;
  }

  void teardown() override {
    if (net_ == nullptr) return;
    if (send_ && smr_) net_->deregMr(send_, smr_);
    if (recv_ && rmr_) net_->deregMr(recv_, rmr_);
    if (send_) net_->closeSend(send_);
    if (recv_) net_->closeRecv(recv_);
    if (ctx_) net_->finalize(ctx_);
    free(sbuf_);
    free(rbuf_);
    net_ = nullptr;
  }

 private:
  static bool fail(std::string* error, std::string why) {
    *error = std::move(why);
    return false;
  }
  int freeSlot() {
    for (size_t i = 0; i < reqs_.size(); ++i)
      if (reqs_[i] == nullptr) return static_cast<int>(i);
    return -1;
  }

  std::string path_;
  const ncclNet_v11_t* net_ = nullptr;
  void* ctx_ = nullptr;
  void *send_ = nullptr, *recv_ = nullptr, *smr_ = nullptr, *rmr_ = nullptr;
  void *sbuf_ = nullptr, *rbuf_ = nullptr;
  std::vector<void*> reqs_;
};

}  // namespace

Mover* makePluginMover(const char* plugin_path) { return new PluginMover(plugin_path); }

}  // namespace epyard::perf
