// epyard._C: the creator torch.distributed calls for backend "epyard".
#include <pybind11/chrono.h>
#include <torch/csrc/utils/pybind.h>

#include "ep_ops.hpp"

namespace epyard::c10d_backend {
void bindReference(pybind11::module& m);
void bindBench(pybind11::module& m);
void bindEpOps(pybind11::module& m);
}
#include "process_group.hpp"

PYBIND11_MODULE(_C, m) {
  m.doc() = "epyard's torch.distributed backend (NCCL through epyard)";
  m.def("create_backend", &epyard::c10d_backend::ProcessGroupEpyard::create, pybind11::arg("store"),
        pybind11::arg("rank"), pybind11::arg("size"), pybind11::arg("timeout"),
        "Creates the epyard backend of a process group (called by torch.distributed).");
  m.def("ep_group_create", &epyard::c10d_backend::epGroupCreate);
  m.def("ep_group_destroy", &epyard::c10d_backend::epGroupDestroy);
  m.def("ep_handle_create", &epyard::c10d_backend::epHandleCreate);
  m.def("ep_handle_destroy", &epyard::c10d_backend::epHandleDestroy);
  epyard::c10d_backend::bindReference(m);
  epyard::c10d_backend::bindBench(m);
  epyard::c10d_backend::bindEpOps(m);
  m.def("nccl_version", [] {
    int v = 0;
    ncclGetVersion(&v);
    return v;
  });
}
