#include "net_api.h"

#include <dlfcn.h>

#include <climits>
#include <vector>

#include "abi/net_v10.h"
#include "abi/net_v11.h"
#include "abi/net_v12.h"
#include "abi/net_v8.h"
#include "abi/net_v9.h"

namespace epyard::nettest {
namespace {

template <int kVersion>
struct Abi;
template <>
struct Abi<8> {
  using Table = ncclNet_v8_t;
  using Props = ncclNetProperties_v8_t;
  using VProps = void;
};
template <>
struct Abi<9> {
  using Table = ncclNet_v9_t;
  using Props = ncclNetProperties_v9_t;
  using VProps = ncclNetVDeviceProps_v9_t;
};
template <>
struct Abi<10> {
  using Table = ncclNet_v10_t;
  using Props = ncclNetProperties_v10_t;
  using VProps = ncclNetVDeviceProps_v10_t;
};
template <>
struct Abi<11> {
  using Table = ncclNet_v11_t;
  using Props = ncclNetProperties_v11_t;
  using VProps = ncclNetVDeviceProps_v11_t;
};
template <>
struct Abi<12> {
  using Table = ncclNet_v12_t;
  using Props = ncclNetProperties_v12_t;
  using VProps = ncclNetVDeviceProps_v12_t;
};

// Profiler handles, traffic class and the communicator id are inputs these tests keep fixed.
constexpr uint64_t kCommId = 0x65707961726454ull;

template <int kVersion>
class VersionedNetApi final : public NetApi {
  using Table = typename Abi<kVersion>::Table;
  using Props = typename Abi<kVersion>::Props;
  using VProps = typename Abi<kVersion>::VProps;

 public:
  explicit VersionedNetApi(const Table* table) : table_(table) {
    config_v10_.trafficClass = NCCL_NET_TRAFFIC_CLASS_UNDEF;
    config_v11_.trafficClass = NCCL_NET_TRAFFIC_CLASS_UNDEF;
  }

  int version() const override { return kVersion; }
  std::string name() const override { return table_->name ? table_->name : ""; }

  ncclResult_t init(ncclDebugLogger_t logger, ncclProfilerCallback_t profiler) override {
    if constexpr (kVersion == 8 || kVersion == 9) {
      return table_->init(logger);
    } else if constexpr (kVersion == 10) {
      return table_->init(logger, profiler);
    } else {
      // v12's config is v11's type.
      ncclResult_t result = table_->init(&ctx_, kCommId, &config_v11_, logger, profiler);
      initialized_ = result == ncclSuccess;
      return result;
    }
  }

  ncclResult_t finalize() override {
    if constexpr (kVersion >= 11) {
      if (!initialized_) return ncclSuccess;
      initialized_ = false;
      return table_->finalize(ctx_);
    } else {
      return ncclSuccess;
    }
  }

  ncclResult_t devices(int* ndev) override { return table_->devices(ndev); }

  ncclResult_t getProperties(int dev, NetProperties* out) override {
    Props props{};
    ncclResult_t result = table_->getProperties(dev, &props);
    if (result != ncclSuccess) return result;
    *out = NetProperties{};
    out->name_is_null = props.name == nullptr;
    out->name = props.name ? props.name : "";
    out->pci_path = props.pciPath ? props.pciPath : "";
    out->guid = props.guid;
    out->ptr_support = props.ptrSupport;
    out->reg_is_global = props.regIsGlobal;
    out->speed = props.speed;
    out->port = props.port;
    out->latency = props.latency;
    out->max_comms = props.maxComms;
    out->max_recvs = props.maxRecvs;
    out->net_device_type = props.netDeviceType;
    out->net_device_version = props.netDeviceVersion;
    if constexpr (kVersion >= 9) {
      out->has_v9_fields = true;
      out->force_flush = props.forceFlush;
      out->max_p2p_bytes = props.maxP2pBytes;
      out->max_coll_bytes = props.maxCollBytes;
    }
    if constexpr (kVersion >= 11) {
      out->has_v11_fields = true;
      out->max_multi_request_size = props.maxMultiRequestSize;
    }
    if constexpr (kVersion >= 12) {
      out->has_v12_fields = true;
      out->rail_id = props.railId;
      out->plane_id = props.planeId;
    }
    return ncclSuccess;
  }

  ncclResult_t listen(int dev, void* handle, void** listen_comm) override {
    if constexpr (kVersion >= 11) {
      return table_->listen(ctx_, dev, handle, listen_comm);
    } else {
      return table_->listen(dev, handle, listen_comm);
    }
  }

  ncclResult_t connect(int dev, void* handle, void** send_comm) override {
    // NCCL passes a pointer to a device-handle pointer; NULL in it means "no offload".
    ncclNetDeviceHandle_v8_t* dev_handle = nullptr;
    if constexpr (kVersion >= 11) {
      return table_->connect(ctx_, dev, handle, send_comm, &dev_handle);
    } else if constexpr (kVersion == 10) {
      return table_->connect(dev, &config_v10_, handle, send_comm, &dev_handle);
    } else {
      return table_->connect(dev, handle, send_comm, &dev_handle);
    }
  }

  ncclResult_t accept(void* listen_comm, void** recv_comm) override {
    ncclNetDeviceHandle_v8_t* dev_handle = nullptr;
    return table_->accept(listen_comm, recv_comm, &dev_handle);
  }

  ncclResult_t regMr(void* comm, void* data, size_t size, int type, void** mhandle) override {
    return table_->regMr(comm, data, size, type, mhandle);
  }

  ncclResult_t deregMr(void* comm, void* mhandle) override {
    return table_->deregMr(comm, mhandle);
  }

  ncclResult_t isend(void* send_comm, void* data, size_t size, int tag, void* mhandle,
                     void** request) override {
    if constexpr (kVersion == 8) {
      if (size > static_cast<size_t>(INT_MAX)) return ncclInvalidArgument;
      return table_->isend(send_comm, data, static_cast<int>(size), tag, mhandle, request);
    } else if constexpr (kVersion == 9) {
      return table_->isend(send_comm, data, size, tag, mhandle, request);
    } else {
      return table_->isend(send_comm, data, size, tag, mhandle, nullptr, request);
    }
  }

  ncclResult_t irecv(void* recv_comm, int n, void** data, const size_t* sizes, int* tags,
                     void** mhandles, void** request) override {
    if (n < 0) n = 0;
    if constexpr (kVersion == 8) {
      std::vector<int> int_sizes(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        if (sizes[i] > static_cast<size_t>(INT_MAX)) return ncclInvalidArgument;
        int_sizes[i] = static_cast<int>(sizes[i]);
      }
      return table_->irecv(recv_comm, n, data, int_sizes.data(), tags, mhandles, request);
    } else {
      // The ABI takes a non-const pointer; plugins only read it.
      std::vector<size_t> copy(sizes, sizes + n);
      if constexpr (kVersion == 9) {
        return table_->irecv(recv_comm, n, data, copy.data(), tags, mhandles, request);
      } else {
        std::vector<void*> phandles(static_cast<size_t>(n), nullptr);
        return table_->irecv(recv_comm, n, data, copy.data(), tags, mhandles, phandles.data(),
                             request);
      }
    }
  }

  ncclResult_t iflush(void* recv_comm, int n, void** data, int* sizes, void** mhandles,
                      void** request) override {
    return table_->iflush(recv_comm, n, data, sizes, mhandles, request);
  }

  ncclResult_t test(void* request, int* done, int* sizes) override {
    return table_->test(request, done, sizes);
  }

  ncclResult_t closeSend(void* send_comm) override { return table_->closeSend(send_comm); }
  ncclResult_t closeRecv(void* recv_comm) override { return table_->closeRecv(recv_comm); }
  ncclResult_t closeListen(void* listen_comm) override { return table_->closeListen(listen_comm); }

  ncclResult_t makeVDevice(int* dev, int ndevs, const int* devs) override {
    if constexpr (kVersion == 8) {
      return ncclInvalidUsage;
    } else {
      if (table_->makeVDevice == nullptr || ndevs < 0 || ndevs > NCCL_NET_MAX_DEVS_PER_NIC)
        return ncclInvalidUsage;
      VProps props{};
      props.ndevs = ndevs;
      for (int i = 0; i < ndevs; ++i) props.devs[i] = devs[i];
      return table_->makeVDevice(dev, &props);
    }
  }

 private:
  const Table* table_;
  ncclNetCommConfig_v10_t config_v10_{};
  ncclNetCommConfig_v11_t config_v11_{};
  void* ctx_ = nullptr;
  bool initialized_ = false;
};

template <int kVersion>
std::unique_ptr<NetApi> resolveVersion(void* handle, std::string* error) {
  std::string symbol = "ncclNetPlugin_v" + std::to_string(kVersion);
  dlerror();
  void* address = dlsym(handle, symbol.c_str());
  if (address == nullptr) {
    const char* why = dlerror();
    *error = "dlsym(" + symbol + ") failed: " + (why ? why : "symbol is NULL");
    return nullptr;
  }
  using Table = typename Abi<kVersion>::Table;
  return std::make_unique<VersionedNetApi<kVersion>>(static_cast<const Table*>(address));
}

}  // namespace

bool PluginLibrary::open(const std::string& path, std::string* error) {
  dlerror();
  handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) {
    const char* why = dlerror();
    *error = "dlopen(" + path + ") failed: " + (why ? why : "unknown error");
    return false;
  }
  return true;
}

std::unique_ptr<NetApi> resolveNetApi(const PluginLibrary& lib, int version, std::string* error) {
  switch (version) {
    case 8:
      return resolveVersion<8>(lib.handle(), error);
    case 9:
      return resolveVersion<9>(lib.handle(), error);
    case 10:
      return resolveVersion<10>(lib.handle(), error);
    case 11:
      return resolveVersion<11>(lib.handle(), error);
    case 12:
      return resolveVersion<12>(lib.handle(), error);
    default:
      *error = "net ABI version " + std::to_string(version) + " is not one of 8, 9, 10, 11, 12";
      return nullptr;
  }
}

std::string resultName(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "ncclSuccess";
    case ncclUnhandledCudaError:
      return "ncclUnhandledCudaError";
    case ncclSystemError:
      return "ncclSystemError";
    case ncclInternalError:
      return "ncclInternalError";
    case ncclInvalidArgument:
      return "ncclInvalidArgument";
    case ncclInvalidUsage:
      return "ncclInvalidUsage";
    case ncclRemoteError:
      return "ncclRemoteError";
    case ncclInProgress:
      return "ncclInProgress";
    default:
      return "ncclResult(" + std::to_string(static_cast<int>(result)) + ")";
  }
}

}  // namespace epyard::nettest
