// Prints the layout of ncclGin_v11_t and the GIN constants: built once against epyard's
// declaration (plugin/abi/gin_v11.h) and once against NCCL's own (its source tree's
// src/include/plugin/nccl_net.h, -DNCCL_SOURCE_HEADERS); scripts/check_abi.sh compares the two.
#include <cstddef>
#include <cstdio>

#ifdef NCCL_SOURCE_HEADERS
#include "plugin/nccl_net.h"
#else
#include "abi/gin_v11.h"
#endif

#define FIELD(f) std::printf("ncclGin_v11_t.%s %zu\n", #f, offsetof(ncclGin_v11_t, f))

int main() {
  FIELD(name);
  FIELD(init);
  FIELD(devices);
  FIELD(getProperties);
  FIELD(listen);
  FIELD(connect);
  FIELD(createContext);
  FIELD(regMrSym);
  FIELD(regMrSymDmaBuf);
  FIELD(deregMrSym);
  FIELD(destroyContext);
  FIELD(closeColl);
  FIELD(closeListen);
  FIELD(iput);
  FIELD(iputSignal);
  FIELD(test);
  FIELD(ginProgress);
  FIELD(queryLastError);
  FIELD(finalize);
  std::printf("sizeof(ncclGin_v11_t) %zu\n", sizeof(ncclGin_v11_t));
  std::printf("NCCL_NET_SIGNAL_OP_INC %d\nNCCL_NET_SIGNAL_OP_ADD %d\nNCCL_NET_MR_FLAG_FORCE_SO %d\n",
              NCCL_NET_SIGNAL_OP_INC, NCCL_NET_SIGNAL_OP_ADD, NCCL_NET_MR_FLAG_FORCE_SO);
  return 0;
}
