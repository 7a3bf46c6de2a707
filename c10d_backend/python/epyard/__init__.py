"""epyard: communication for Mixture-of-Experts models on the NCCL that PyTorch ships.

Importing this package registers the torch.distributed backend ``"epyard"`` for CUDA tensors:

    import epyard, torch.distributed as dist
    dist.init_process_group("cpu:gloo,cuda:epyard")   # or backend="epyard", or new_group(backend="epyard")

Collectives run through NCCL on a stream of the backend's own (and through NCCL's net plugin,
epyard's when NCCL_NET_PLUGIN=epyard).
"""
import torch
import torch.distributed as dist

from . import _C
from . import ep  # noqa: E402  (EP dispatch/combine for torch tensors)

__all__ = ["BACKEND_NAME", "nccl_version", "ep"]

BACKEND_NAME = "epyard"


def nccl_version():
    """The NCCL version code the backend runs on (e.g. 22809 for 2.28.9)."""
    return _C.nccl_version()


def _register():
    if getattr(dist.Backend, BACKEND_NAME.upper(), None) is not None:
        return  # already registered (module imported twice under different names)
    dist.Backend.register_backend(BACKEND_NAME, _C.create_backend, devices=["cuda"])


_register()
