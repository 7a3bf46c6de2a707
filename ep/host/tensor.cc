// ncclEpTensorAlloc / ncclEpTensorDestroy: a descriptor, its sizes and the device memory in one
// host allocation that remembers the allocator that made the memory.
#include <cstddef>
#include <cstring>
#include <new>

#include "host/api_check.h"
#include "host/api_impl.h"
#include "host/errors.h"
#include "host/group.h"

namespace epyard::ep {
namespace {

constexpr unsigned kMaxDims = 8;
constexpr uint64_t kOwnedTag = 0x657079617264544eull;  // marks descriptors made here

struct OwnedTensor {
  ncclEpTensor_t tensor;  // first: the pointer handed out is this struct's address
  size_t sizes[kMaxDims];
  Allocator alloc;
  uint64_t tag;
};

size_t elementBytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 0;
  }
}

}  // namespace

ncclResult_t tensorAlloc(ncclEpTensor_t** tensor, unsigned ndim, int type_value,
                         const size_t* sizes, const ncclEpTensorAllocConfig_t* config) {
  if (tensor == nullptr) return fail(nullptr, ncclInvalidArgument, "tensor (the output pointer) is NULL");
  *tensor = nullptr;
  if (ndim == 0 || ndim > kMaxDims)
    return fail(nullptr, ncclInvalidArgument,
                "ndim (" + std::to_string(ndim) + ") must be in [1, " + std::to_string(kMaxDims) + "]");
  const bool known = type_value >= 0 && type_value < ncclNumTypes;
  const ncclDataType_t datatype = known ? static_cast<ncclDataType_t>(type_value) : ncclInt8;
  const size_t element = known ? elementBytes(datatype) : 0;
  if (element == 0)
    return fail(nullptr, ncclInvalidArgument,
                "datatype (" + std::to_string(type_value) + ") is not an NCCL data type");
  if (sizes == nullptr) return fail(nullptr, ncclInvalidArgument, "sizes is NULL");
  // NCCL EP's ncclEpTensorAllocConfig_t ends before our `alloc` extension: a program built
  // against its header passes that size, and gets the default allocator.
  constexpr unsigned kNcclEpSize = static_cast<unsigned>(offsetof(ncclEpTensorAllocConfig_t, alloc));
  const bool without_alloc = config != nullptr && config->size == kNcclEpSize;
  if (without_alloc) {
    EP_CHECK(checkArg(nullptr, checkStruct(config, kNcclEpSize, NCCL_EP_MAGIC, "config")));
    config = nullptr;
  }
  if (config != nullptr) {
    EP_CHECK(checkArg(nullptr, checkStruct(config, static_cast<unsigned>(sizeof(*config)),
                                           NCCL_EP_MAGIC, "config")));
    if ((config->alloc.alloc_fn == nullptr) != (config->alloc.free_fn == nullptr))
      return fail(nullptr, ncclInvalidArgument, "config.alloc: set both alloc_fn and free_fn, or neither");
  }
  size_t bytes = element;
  for (unsigned i = 0; i < ndim; ++i) {
    if (sizes[i] != 0 && bytes > SIZE_MAX / sizes[i])
      return fail(nullptr, ncclInvalidArgument, "the tensor's byte size overflows size_t");
    bytes *= sizes[i];
  }
  auto* t = new (std::nothrow) OwnedTensor();
  if (t == nullptr) return fail(nullptr, ncclSystemError, "out of host memory");
  if (config != nullptr) t->alloc.fns = config->alloc;
  void* data = nullptr;
  if (bytes > 0 && (t->alloc.allocate(&data, bytes) != ncclSuccess || data == nullptr)) {
    delete t;
    return fail(nullptr, ncclSystemError,
                "allocating " + std::to_string(bytes) + " bytes of device memory failed");
  }
  t->tensor = NCCL_EP_TENSOR_INIT;
  t->tensor.ndim = ndim;
  t->tensor.datatype = datatype;
  t->tensor.data = data;
  std::memcpy(t->sizes, sizes, sizeof(size_t) * ndim);
  t->tensor.sizes = t->sizes;
  t->tag = kOwnedTag;
  *tensor = &t->tensor;
  return ncclSuccess;
}

ncclResult_t tensorDestroy(ncclEpTensor_t* tensor) {
  if (tensor == nullptr) return ncclSuccess;  // as free(NULL), and as NCCL EP documents
  auto* t = reinterpret_cast<OwnedTensor*>(tensor);
  if (tensor->magic != NCCL_EP_TENSOR_MAGIC || tensor->sizes != t->sizes || t->tag != kOwnedTag)
    return fail(nullptr, ncclInvalidArgument,
                "tensor was not made by ncclEpTensorAlloc (or was already destroyed)");
  t->alloc.release(tensor->data);
  t->tag = 0;
  tensor->magic = 0;
  delete t;
  return ncclSuccess;
}

}  // namespace epyard::ep
