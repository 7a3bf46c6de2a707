"""The backend's threads against the caller's (review finding 8), on the GPU:

    torchrun --nproc-per-node 2 tests/c10d/gpu_races.py

1. A CUDA graph captures dist.all_reduce while the watchdog polls (an eager all_reduce is still
   being watched, and the capture sleeps 0.3 s, three watchdog rounds); replays give the right
   sums. Before the fix the watchdog queried the captured work's event, which invalidates a
   global-mode capture.
   dist.barrier inside a capture raises (it blocks the CPU, which a capture cannot).
2. One thread loops all_reduce while the main thread aborts the group: the loop ends with an
   error naming the abort, the GPU drains, nothing crashes (the abort used to free the
   communicator under a launch in progress).
3. Where the ranks are one NVLink team (one rank, or one rank per GPU): an epyard.ep group made
   before the abort keeps the communicator alive until it is closed (it used to hold the raw
   communicator the abort freed), closes cleanly, and a group made after the abort raises.

    torchrun --nproc-per-node 1 tests/c10d/gpu_races.py    # all three on one GPU"""
import datetime
import os
import threading
import time

import torch
import torch.distributed as dist

import epyard
import epyard.ep
import placement

RANK, WORLD = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
failed = False


def report(ok, what):
    global failed
    failed |= not ok
    print(f"[rank {RANK}] {'PASS' if ok else 'FAIL'}: {what}", flush=True)


def check_capture():
    big = torch.ones(16 << 20, device="cuda")
    dist.all_reduce(big, async_op=True)  # watched while the capture runs
    src = torch.empty(1 << 16, device="cuda")
    x = torch.empty_like(src)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(side):
        with torch.cuda.graph(graph):
            x.copy_(src)
            dist.all_reduce(x)
            time.sleep(0.3)
    torch.cuda.current_stream().wait_stream(side)
    for i in range(3):
        src.fill_(RANK + 1 + i)
        graph.replay()
        torch.cuda.synchronize()
        want = WORLD * (WORLD + 1) / 2 + WORLD * i
        got = x[0].item(), x[-1].item()
        if got != (want, want):
            report(False, f"graph replay {i}: all_reduce gave {got}, expected {want}")
            return
    torch.cuda.synchronize()
    report(True, "all_reduce captured in a CUDA graph while the watchdog runs; 3 replays correct")


def check_barrier_refuses_capture():
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.stream(side):
            with torch.cuda.graph(graph):
                dist.barrier(device_ids=[torch.cuda.current_device()])
        report(False, "dist.barrier was captured into a CUDA graph (it blocks the CPU)")
    except RuntimeError as e:
        report("capture" in str(e), f"dist.barrier inside a capture raises: {e}")
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()


def check_abort_during_calls():
    t = torch.ones(1 << 18, device="cuda")
    errors, calls = [], [0]

    def loop():
        try:
            while True:
                dist.all_reduce(t, async_op=True).wait()
                calls[0] += 1
        except RuntimeError as e:
            errors.append(str(e))

    worker = threading.Thread(target=loop)
    worker.start()
    time.sleep(0.5)
    backend = dist.group.WORLD._get_backend(torch.device("cuda"))
    backend.abort()
    worker.join(timeout=30)
    if worker.is_alive():
        report(False, "the calling thread did not stop within 30 s of the abort")
        os._exit(1)
    torch.cuda.synchronize()
    ok = len(errors) == 1 and "abort" in errors[0]
    report(ok, f"abort during {calls[0]} calls on another thread: "
               f"{errors[0] if errors else 'the loop ended without an error'}")


device, shares_gpu = placement.place()
torch.cuda.set_device(device)
dist.init_process_group("cpu:gloo,cuda:epyard", timeout=datetime.timedelta(seconds=60))
t0 = torch.ones(4, device="cuda")
dist.all_reduce(t0)
torch.cuda.synchronize()
ep_group = None
if not shares_gpu:
    ep_group = epyard.ep.Group(num_experts=8 * WORLD, max_tokens_per_rank=16, hidden=256)
check_capture()
check_barrier_refuses_capture()
check_abort_during_calls()
if ep_group is None:
    print(f"[rank {RANK}] SKIPPED: the EP checks (ranks sharing a GPU are not one NVLink team)", flush=True)
else:
    try:
        ep_group.close()
        report(True, "an epyard.ep group made before the abort closes cleanly after it")
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        report(False, f"closing an epyard.ep group after the abort raised: {e}")
    try:
        epyard.ep.Group(num_experts=8 * WORLD, max_tokens_per_rank=16, hidden=256)
        report(False, "an epyard.ep group was made on an aborted communicator")
    except RuntimeError as e:
        report("abort" in str(e), f"an epyard.ep group after the abort raises: {e}")
print(f"[rank {RANK}] {'FAIL' if failed else 'PASS'}: gpu_races.py", flush=True)
os._exit(1 if failed else 0)
