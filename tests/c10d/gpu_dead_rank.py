"""A rank that dies makes the others raise within the group's timeout instead of hanging:

    torchrun --nproc-per-node 2 tests/c10d/gpu_dead_rank.py

The last rank exits right after the group is up; the others start an all_reduce that can never
finish. The backend's watchdog aborts the communicator after the 10 s timeout, the Work then
reports completion and wait() raises naming the collective and the timeout."""
import datetime
import os
import sys
import time

import torch
import torch.distributed as dist

import epyard  # noqa: F401
import placement

RANK, WORLD = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
torch.cuda.set_device(placement.place()[0])
dist.init_process_group("cpu:gloo,cuda:epyard", timeout=datetime.timedelta(seconds=10))
t = torch.ones(1 << 20, device="cuda")
dist.all_reduce(t)  # the communicator exists on every rank
torch.cuda.synchronize()
dist.barrier(device_ids=[torch.cuda.current_device()])
if RANK == WORLD - 1:
    print(f"[rank {RANK}] exiting without a word", flush=True)
    os._exit(0)
time.sleep(1)
start = time.time()
work = dist.all_reduce(t, async_op=True)
while not work.is_completed():
    if time.time() - start > 60:
        print(f"[rank {RANK}] FAIL: still waiting after 60 s", flush=True)
        os._exit(1)
    time.sleep(0.1)
try:
    work.wait()
    print(f"[rank {RANK}] FAIL: wait() returned without an error", flush=True)
    os._exit(1)
except RuntimeError as e:
    took = time.time() - start
    ok = "allreduce" in str(e) and took < 40
    print(f"[rank {RANK}] {'PASS' if ok else 'FAIL'}: raised after {took:.1f} s: {e}", flush=True)
    os._exit(0 if ok else 1)
