// One interface over the four net plugin ABI versions the plugin exports (v8 to v11), so every
// conformance case is written once and runs against each exported table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "abi/net_common.h"

namespace epyard::nettest {

inline constexpr int kAbiVersions[] = {8, 9, 10, 11, 12};

// getProperties of any version, widened to the v11 field set. Fields a version lacks keep the
// values below; has_v9_fields / has_v11_fields / has_v12_fields say which ones the plugin filled.
struct NetProperties {
  std::string name;
  bool name_is_null = true;
  std::string pci_path;
  uint64_t guid = 0;
  int ptr_support = 0;
  int reg_is_global = 0;
  int force_flush = 0;
  int speed = 0;
  int port = 0;
  float latency = 0;
  int max_comms = 0;
  int max_recvs = 0;
  int net_device_type = 0;
  int net_device_version = 0;
  bool has_v9_fields = false;
  size_t max_p2p_bytes = 0;
  size_t max_coll_bytes = 0;
  bool has_v11_fields = false;
  int max_multi_request_size = 0;
  bool has_v12_fields = false;
  int rail_id = 0, plane_id = 0;
};

// Calls into one exported ncclNet_vN_t table. The arguments a version adds that these tests do
// not exercise are filled here: v10 connect gets a config with trafficClass -1, v10/v11
// isend/irecv get NULL profiler handles, v11 init's context is kept and passed to
// listen/connect. Sizes that a version cannot express (v8: over INT_MAX) make the adapter
// return ncclInvalidArgument without calling the plugin.
class NetApi {
 public:
  virtual ~NetApi() = default;

  virtual int version() const = 0;
  // The table's name field; empty when it is NULL.
  virtual std::string name() const = 0;

  virtual ncclResult_t init(ncclDebugLogger_t logger, ncclProfilerCallback_t profiler) = 0;
  // v11: finalize(ctx) once init succeeded. Older versions have no finalize: ncclSuccess.
  virtual ncclResult_t finalize() = 0;
  virtual ncclResult_t devices(int* ndev) = 0;
  virtual ncclResult_t getProperties(int dev, NetProperties* props) = 0;
  virtual ncclResult_t listen(int dev, void* handle, void** listen_comm) = 0;
  virtual ncclResult_t connect(int dev, void* handle, void** send_comm) = 0;
  virtual ncclResult_t accept(void* listen_comm, void** recv_comm) = 0;
  virtual ncclResult_t regMr(void* comm, void* data, size_t size, int type, void** mhandle) = 0;
  virtual ncclResult_t deregMr(void* comm, void* mhandle) = 0;
  virtual ncclResult_t isend(void* send_comm, void* data, size_t size, int tag, void* mhandle,
                             void** request) = 0;
  virtual ncclResult_t irecv(void* recv_comm, int n, void** data, const size_t* sizes, int* tags,
                             void** mhandles, void** request) = 0;
  virtual ncclResult_t iflush(void* recv_comm, int n, void** data, int* sizes, void** mhandles,
                              void** request) = 0;
  virtual ncclResult_t test(void* request, int* done, int* sizes) = 0;
  virtual ncclResult_t closeSend(void* send_comm) = 0;
  virtual ncclResult_t closeRecv(void* recv_comm) = 0;
  virtual ncclResult_t closeListen(void* listen_comm) = 0;
  // v9+: a virtual device over `devs`; v8 has no such entry (ncclInvalidUsage).
  virtual ncclResult_t makeVDevice(int* dev, int ndevs, const int* devs) = 0;
};

// A dlopen'ed plugin. Never dlclose'd: libfabric and the plugin's threads may outlive any point
// at which unloading would be safe, and each test process exits right after using it.
class PluginLibrary {
 public:
  // RTLD_NOW | RTLD_LOCAL. On failure returns false and puts dlerror() text in *error.
  bool open(const std::string& path, std::string* error);
  void* handle() const { return handle_; }

 private:
  void* handle_ = nullptr;
};

// Resolves "ncclNetPlugin_v<version>" in an opened plugin. Returns nullptr and sets *error when
// the symbol is missing or the version is not one of kAbiVersions.
std::unique_ptr<NetApi> resolveNetApi(const PluginLibrary& lib, int version, std::string* error);

// "ncclSuccess", "ncclSystemError", ... ; "ncclResult(<n>)" for values outside the enum.
std::string resultName(ncclResult_t result);

}  // namespace epyard::nettest
