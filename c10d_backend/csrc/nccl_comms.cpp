#include "nccl_comms.hpp"

#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <vector>

namespace epyard::c10d_backend {

NcclComms::NcclComms(c10::intrusive_ptr<::c10d::Store> store, int rank, int size,
                     std::string prefix, std::chrono::milliseconds timeout)
    : store_(std::move(store)), rank_(rank), size_(size), prefix_(std::move(prefix)), timeout_(timeout) {}

NcclComms::~NcclComms() {
  for (auto& [device, dc] : comms_) {
    if (dc->comm == nullptr) continue;
    if (dc->aborted) {
      ncclCommAbort(dc->comm);
    } else {
      ncclCommDestroy(dc->comm);
    }
  }
}

std::shared_ptr<DeviceComm> NcclComms::get(c10::DeviceIndex device) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = comms_.find(device);
  if (it != comms_.end()) {
    TORCH_CHECK(!it->second->aborted, "epyard: the communicator on cuda:", int(device),
                " was aborted: ", it->second->abort_reason);
    return it->second;
  }
  // Rank 0 makes the id; everybody reads it from the store. The key counts the communicators
  // this group has made: each rank drives its own device, so the device index differs between
  // ranks while the order of creation is the same everywhere.
  const std::string key = prefix_ + "/nccl_unique_id/" + std::to_string(created_++);
  ncclUniqueId id;
  if (rank_ == 0) {
    EPYARD_NCCL(nullptr, ncclGetUniqueId(&id));
    std::vector<uint8_t> bytes(reinterpret_cast<uint8_t*>(&id), reinterpret_cast<uint8_t*>(&id) + sizeof(id));
    store_->set(key, bytes);
  } else {
    try {
      store_->wait({key}, timeout_);
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "epyard: rank ", rank_, " waited ", timeout_.count(),
                  " ms for rank 0's ncclUniqueId (store key ", key,
                  "); is rank 0 alive and using the same process group? (", e.what(), ")");
    }
    std::vector<uint8_t> bytes = store_->get(key);
    TORCH_CHECK(bytes.size() == sizeof(id), "epyard: the store's ", key, " holds ", bytes.size(),
                " bytes, not an ncclUniqueId");
    std::memcpy(&id, bytes.data(), sizeof(id));
  }
  c10::cuda::CUDAGuard guard(device);
  ncclComm_t comm = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  EPYARD_NCCL(nullptr, ncclCommInitRankConfig(&comm, size_, id, rank_, &config));
  auto dc = std::make_shared<DeviceComm>(comm, c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device), device);
  comms_.emplace(device, dc);
  return dc;
}

void NcclComms::abortAll(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [device, dc] : comms_) {
    if (dc->aborted.exchange(true)) continue;
    dc->abort_reason = reason;
    ncclCommAbort(dc->comm);
    dc->comm = nullptr;
  }
}

std::vector<std::shared_ptr<DeviceComm>> NcclComms::all() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<DeviceComm>> out;
  for (auto& [device, dc] : comms_) out.push_back(dc);
  return out;
}

ncclDataType_t toNcclType(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kDouble: return ncclFloat64;
    case at::kChar: return ncclInt8;
    case at::kByte: return ncclUint8;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    default:
      TORCH_CHECK(false, "epyard: ", op, " does not support dtype ", t.scalar_type(),
                  " (supported: float32, float16, bfloat16, float64, int8, uint8, int32, int64)");
  }
}

ncclRedOp_t toNcclOp(const ::c10d::ReduceOp& op, const at::Tensor& t, const char* what) {
  switch (op.op_) {
    case ::c10d::ReduceOp::SUM: return ncclSum;
    case ::c10d::ReduceOp::PRODUCT: return ncclProd;
    case ::c10d::ReduceOp::MIN: return ncclMin;
    case ::c10d::ReduceOp::MAX: return ncclMax;
    case ::c10d::ReduceOp::AVG:
      TORCH_CHECK(at::isFloatingType(t.scalar_type()), "epyard: ", what,
                  " with ReduceOp.AVG needs a floating-point tensor, not ", t.scalar_type());
      return ncclAvg;
    default:
      TORCH_CHECK(false, "epyard: ", what, " does not support this ReduceOp (",
                  int(op.op_), "); supported: SUM, PRODUCT, MIN, MAX, AVG");
  }
}

void throwNccl(ncclResult_t r, ncclComm_t comm, const char* call) {
  const char* detail = ncclGetLastError(comm);
  TORCH_CHECK(false, "epyard: ", call, " failed: ", ncclGetErrorString(r),
              detail != nullptr && *detail ? std::string(" (") + detail + ")" : std::string());
}

}  // namespace epyard::c10d_backend
