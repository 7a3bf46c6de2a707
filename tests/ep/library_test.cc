// libepyard.so on a machine without a GPU: every entry point that can fail before touching the
// device returns the right code and a message naming the argument (the C boundary never throws,
// asserts or exits), and the version and last-error plumbing work.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "nccl_ep.h"

namespace {

bool says(const char* needle) { return std::strstr(ncclEpGetLastError(nullptr), needle) != nullptr; }

TEST(EpLibrary, Version) {
  int v = 0;
  EXPECT_EQ(ncclEpGetVersion(&v), ncclSuccess);
  EXPECT_EQ(v, NCCL_EP_VERSION_CODE);
  EXPECT_EQ(ncclEpGetVersion(nullptr), ncclInvalidArgument);
  EXPECT_TRUE(says("version is NULL"));
}

TEST(EpLibrary, GroupArguments) {
  ncclEpGroupConfig_t cfg = NCCL_EP_GROUP_CONFIG_INIT;
  ncclEpGroup_t g = reinterpret_cast<ncclEpGroup_t>(0x1);
  EXPECT_EQ(ncclEpCreateGroup(&g, nullptr, &cfg), ncclInvalidArgument);
  EXPECT_EQ(g, nullptr) << "the output is cleared on failure";
  EXPECT_TRUE(says("comm is NULL"));
  EXPECT_EQ(ncclEpCreateGroup(nullptr, nullptr, &cfg), ncclInvalidArgument);
  EXPECT_TRUE(says("output pointer"));
  EXPECT_EQ(ncclEpGroupDestroy(nullptr), ncclInvalidArgument);
  EXPECT_TRUE(says("group is NULL"));
  int err = 0;
  EXPECT_EQ(ncclEpGetAsyncError(nullptr, &err), ncclInvalidArgument);
  EXPECT_EQ(ncclEpMaskClean(nullptr, nullptr), ncclInvalidArgument);
}

TEST(EpLibrary, HandleAndOpArguments) {
  size_t bytes = 0;
  EXPECT_EQ(ncclEpHandleMemSize(nullptr, NCCL_EP_LAYOUT_EXPERT_MAJOR, nullptr, &bytes, 8),
            ncclInvalidArgument);
  EXPECT_TRUE(says("group is NULL"));
  EXPECT_EQ(ncclEpUpdateHandle(nullptr, nullptr, nullptr, nullptr), ncclInvalidArgument);
  EXPECT_TRUE(says("handle is NULL"));
  EXPECT_EQ(ncclEpDispatch(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr), ncclInvalidArgument);
  EXPECT_EQ(ncclEpCombine(nullptr, nullptr, nullptr, nullptr, nullptr), ncclInvalidArgument);
  EXPECT_EQ(ncclEpComplete(nullptr, nullptr, nullptr), ncclInvalidArgument);
  EXPECT_EQ(ncclEpHandleDestroy(nullptr), ncclInvalidArgument);
  // ncclEpCreateHandle reads top_k from topk_idx: a tensor that is not one (no magic) or of the
  // wrong shape is refused by name before that read.
  ncclEpHandle_t h = nullptr;
  ncclEpTensor_t garbage;
  std::memset(&garbage, 0, sizeof(garbage));
  EXPECT_EQ(ncclEpCreateHandle(&h, nullptr, NCCL_EP_LAYOUT_EXPERT_MAJOR, &garbage, nullptr, nullptr, nullptr),
            ncclInvalidArgument);
  EXPECT_TRUE(says("topk_idx"));
  size_t one[1] = {4};
  ncclEpTensor_t flat = NCCL_EP_TENSOR_INIT;
  flat.ndim = 1;
  flat.datatype = ncclInt64;
  flat.sizes = one;
  EXPECT_EQ(ncclEpCreateHandle(&h, nullptr, NCCL_EP_LAYOUT_EXPERT_MAJOR, &flat, nullptr, nullptr, nullptr),
            ncclInvalidArgument);
  EXPECT_TRUE(says("topk_idx has 1 dimensions, expected 2"));
  EXPECT_EQ(h, nullptr);
}

TEST(EpLibrary, TensorArguments) {
  ncclEpTensor_t* t = nullptr;
  size_t sizes[2] = {4, 8};
  EXPECT_EQ(ncclEpTensorAlloc(&t, 0, ncclFloat32, sizes, nullptr), ncclInvalidArgument);
  EXPECT_TRUE(says("ndim (0)"));
  EXPECT_EQ(ncclEpTensorAlloc(&t, 2, static_cast<ncclDataType_t>(99), sizes, nullptr),
            ncclInvalidArgument);
  EXPECT_TRUE(says("datatype (99)"));
  EXPECT_EQ(ncclEpTensorAlloc(&t, 2, ncclFloat32, nullptr, nullptr), ncclInvalidArgument);
  ncclEpTensorAllocConfig_t cfg = NCCL_EP_TENSOR_ALLOC_CONFIG_INIT;
  cfg.magic = 7;
  EXPECT_EQ(ncclEpTensorAlloc(&t, 2, ncclFloat32, sizes, &cfg), ncclInvalidArgument);
  EXPECT_TRUE(says("magic"));
  ncclEpTensor_t mine = NCCL_EP_TENSOR_INIT;
  EXPECT_EQ(ncclEpTensorDestroy(&mine), ncclInvalidArgument) << "not made by ncclEpTensorAlloc";
  EXPECT_TRUE(says("not made by ncclEpTensorAlloc"));
  EXPECT_EQ(t, nullptr);
  EXPECT_EQ(ncclEpTensorDestroy(nullptr), ncclSuccess) << "NULL is accepted, as NCCL EP documents";
}

// A program built against NCCL EP's header passes its smaller ncclEpTensorAllocConfig_t (size
// and magic only): accepted, with the default allocator. (Zero elements: no GPU needed.)
TEST(EpLibrary, TensorAllocAcceptsNcclEpsConfigSize) {
  struct {
    unsigned int size, magic;
  } theirs = {8, NCCL_EP_MAGIC};
  size_t sizes[2] = {0, 8};
  ncclEpTensor_t* t = nullptr;
  ASSERT_EQ(ncclEpTensorAlloc(&t, 2, ncclFloat32, sizes,
                              reinterpret_cast<const ncclEpTensorAllocConfig_t*>(&theirs)),
            ncclSuccess)
      << ncclEpGetLastError(nullptr);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->ndim, 2u);
  EXPECT_EQ(ncclEpTensorDestroy(t), ncclSuccess);
  theirs.size = 12;
  EXPECT_EQ(ncclEpTensorAlloc(&t, 2, ncclFloat32, sizes,
                              reinterpret_cast<const ncclEpTensorAllocConfig_t*>(&theirs)),
            ncclInvalidArgument);
  EXPECT_TRUE(says("config.size is 12"));
}

// ctest runs this once more with another NCCL release first on LD_LIBRARY_PATH
// (EPYARD_TEST_OTHER_NCCL = its version): group creation refuses it, naming both versions,
// before it asks the communicator anything (the comm here is not a real one).
TEST(EpLibrary, RefusesAnNcclItWasNotBuiltFor) {
  const char* other = std::getenv("EPYARD_TEST_OTHER_NCCL");
  if (other == nullptr) GTEST_SKIP() << "EPYARD_TEST_OTHER_NCCL not set (the ctest entry sets it)";
  int loaded = 0;
  ASSERT_EQ(ncclGetVersion(&loaded), ncclSuccess);
  const std::string want = std::to_string(loaded / 10000) + "." + std::to_string(loaded / 100 % 100) +
                           "." + std::to_string(loaded % 100);
  ASSERT_EQ(want, other) << "LD_LIBRARY_PATH did not bring the other NCCL first";
  ncclEpGroupConfig_t cfg = NCCL_EP_GROUP_CONFIG_INIT;
  ncclEpGroup_t g = nullptr;
  EXPECT_EQ(ncclEpCreateGroup(&g, reinterpret_cast<ncclComm_t>(0x1), &cfg), ncclInvalidUsage);
  EXPECT_TRUE(says(("libnccl " + want + " is loaded").c_str())) << ncclEpGetLastError(nullptr);
  EXPECT_TRUE(says("built against NCCL")) << ncclEpGetLastError(nullptr);
  EXPECT_EQ(g, nullptr);
}

TEST(EpLibrary, LastErrorIsPerThread) {
  ncclEpGetVersion(nullptr);
  std::string other;
  std::thread([&] {
    ncclEpHandleDestroy(nullptr);
    other = ncclEpGetLastError(nullptr);
  }).join();
  EXPECT_TRUE(says("version is NULL"));
  EXPECT_NE(other.find("handle is NULL"), std::string::npos);
}

}  // namespace
