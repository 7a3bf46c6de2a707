"""Where a torchrun rank runs when there may be fewer GPUs than ranks (the one-GPU machines).

Rank r uses GPU LOCAL_RANK % GPUs. With more local ranks than GPUs, every rank is told it is a
host of its own (NCCL_HOSTID=epyard-host-<rank>, NCCL_MNNVL_ENABLE=0) before NCCL starts, so NCCL
accepts several ranks on one GPU and connects them through its network transport (Socket, or
the epyard plugin with NCCL_NET_PLUGIN=epyard). Same rule as perf/launch/placement.h."""
import os

import torch


def place():
    """Sets this rank's environment and returns (device, shares_gpu). Call before NCCL starts."""
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    gpus = torch.cuda.device_count()
    if gpus < 1:
        raise RuntimeError("no CUDA device is visible")
    shares = local_world > gpus
    if shares:
        os.environ["NCCL_HOSTID"] = f"epyard-host-{rank}"
        os.environ["NCCL_MNNVL_ENABLE"] = "0"
        if local == 0:
            print(f"[placement] {local_world} ranks on {gpus} GPU(s): each rank its own host "
                  "(NCCL_HOSTID), traffic through the network transport", flush=True)
    return torch.device("cuda", local % gpus), shares
