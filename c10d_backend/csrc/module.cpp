// epyard._C: the creator torch.distributed calls for backend "epyard".
#include <pybind11/chrono.h>
#include <torch/csrc/utils/pybind.h>

#include "process_group.hpp"

PYBIND11_MODULE(_C, m) {
  m.doc() = "epyard's torch.distributed backend (NCCL through epyard)";
  m.def("create_backend", &epyard::c10d_backend::ProcessGroupEpyard::create, pybind11::arg("store"),
        pybind11::arg("rank"), pybind11::arg("size"), pybind11::arg("timeout"),
        "Creates the epyard backend of a process group (called by torch.distributed).");
  m.def("nccl_version", [] {
    int v = 0;
    ncclGetVersion(&v);
    return v;
  });
}
