// The C++ compatibility program through nvcc, as NCCL EP's own examples (.cu files) are built.
#include "nccl_ep_compat_cxx.cc"
