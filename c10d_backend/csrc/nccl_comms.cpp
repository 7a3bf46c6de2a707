#include "nccl_comms.hpp"

#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <vector>

namespace epyard::c10d_backend {

DeviceComm::DeviceComm(ncclComm_t c, c10::cuda::CUDAStream s, c10::DeviceIndex d)
    : state(c, [](ncclComm_t comm, bool aborted) { aborted ? ncclCommAbort(comm) : ncclCommDestroy(comm); }),
      stream(s),
      device(d) {}

NcclComms::NcclComms(c10::intrusive_ptr<::c10d::Store> store, int rank, int size,
                     std::string prefix, std::chrono::milliseconds timeout)
    : store_(std::move(store)), rank_(rank), size_(size), prefix_(std::move(prefix)), timeout_(timeout) {}

std::shared_ptr<DeviceComm> NcclComms::get(c10::DeviceIndex device) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = comms_.find(device);
  if (it != comms_.end()) {
    std::shared_ptr<Slot> slot = it->second;
    // Another thread is creating it: its store wait is bounded by the timeout, NCCL's init is not.
    TORCH_CHECK(made_.wait_for(lock, timeout_ + std::chrono::seconds(5), [&] { return slot->done; }),
                "epyard: waited ", timeout_.count(), " ms for another thread to create the communicator "
                "on cuda:", int(device));
    TORCH_CHECK(slot->error.empty(), "epyard: the communicator on cuda:", int(device),
                " could not be created: ", slot->error);
    TORCH_CHECK(!slot->dc->state.aborted(), "epyard: the communicator on cuda:", int(device),
                " was aborted: ", slot->dc->state.reason());
    return slot->dc;
  }
  auto slot = std::make_shared<Slot>();
  comms_.emplace(device, slot);
  // The key counts the communicators this group has begun: each rank drives its own device, so
  // the device index differs between ranks while the order of creation is the same everywhere.
  const std::string key = prefix_ + "/nccl_unique_id/" + std::to_string(created_++);
  lock.unlock();
  std::shared_ptr<DeviceComm> dc;
  std::string error;
  try {
    dc = create(device, key);
  } catch (const std::exception& e) {
    error = e.what();
  }
  lock.lock();
  slot->dc = dc;
  slot->error = error;
  slot->done = true;
  const std::string aborted = abort_reason_;
  lock.unlock();
  made_.notify_all();
  TORCH_CHECK(error.empty(), error);
  if (!aborted.empty()) dc->state.abort(aborted);  // abortAll ran while it was being made
  TORCH_CHECK(!dc->state.aborted(), "epyard: the communicator on cuda:", int(device),
              " was aborted: ", dc->state.reason());
  return dc;
}

std::shared_ptr<DeviceComm> NcclComms::create(c10::DeviceIndex device, const std::string& key) {
  // Rank 0 makes the id; everybody reads it from the store.
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
  return std::make_shared<DeviceComm>(comm, c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device), device);
}

void NcclComms::abortAll(const std::string& reason) {
  std::vector<std::shared_ptr<DeviceComm>> made;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (abort_reason_.empty()) abort_reason_ = reason;
    for (auto& [device, slot] : comms_)
      if (slot->dc != nullptr) made.push_back(slot->dc);
  }
  // Outside the lock: ncclCommAbort takes a while, and get() must not wait on it.
  for (auto& dc : made) {
    const int waiting = dc->state.abort(reason);
    if (waiting > 0)
      TORCH_WARN("epyard: the communicator on cuda:", int(dc->device), " is freed once ", waiting,
                 " user(s) let go of it (a call in progress, an open coalescing block or an "
                 "epyard.ep group: destroy it)");
  }
}

std::vector<std::shared_ptr<DeviceComm>> NcclComms::all() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<DeviceComm>> out;
  for (auto& [device, slot] : comms_)
    if (slot->dc != nullptr) out.push_back(slot->dc);
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
