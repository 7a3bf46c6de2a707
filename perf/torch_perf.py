"""Perf of the epyard torch backend beside ProcessGroupNCCL, one process per GPU:

    torchrun --nproc-per-node 4 perf/torch_perf.py [--sizes-mib 1,16,64,256] [--iters 20]

Table 1, collectives: all_reduce (float32, sum) and all_to_all_single through a process group
whose CUDA backend is "epyard" and through one with "nccl", in the same run, on the same
buffers, alternating (epyard, nccl, epyard, nccl) and keeping each backend's better round.
Time = CUDA events around --iters back-to-back calls, the slowest rank's. Bus bandwidth as
nccl-tests: all_reduce bytes/t x 2(n-1)/n, all-to-all bytes/t x (n-1)/n.

Table 2, EP (low latency, 128 tokens per rank, hidden 7168, top-8, 256 experts, FP8 dispatch,
BF16 combine): host microseconds to issue one dispatch + combine through the C API from a C++
loop (epyard._C.ep_c_api_issue_loop, outputs preallocated), through epyard.ep with new output
tensors per call, and through epyard.ep with out= (reused outputs, like the C loop); --ep-iters
calls each with the GPU busy behind them; the differences are the Python-level overhead. Also
the GPU time per dispatch + combine of the Python loop (issue + drain)."""
import argparse
import os
import time

import torch
import torch.distributed as dist

import epyard
from epyard import _C

RANK, WORLD = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
DEV = torch.device("cuda", int(os.environ.get("LOCAL_RANK", RANK)))


def slowest(seconds):
    t = torch.tensor([seconds], device=DEV)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=NCCL)
    return t.item()


def timed(fn, iters):
    fn()  # warm-up
    torch.cuda.synchronize()
    dist.barrier(group=NCCL, device_ids=[DEV.index])
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return slowest(start.elapsed_time(end) / 1000.0 / iters)


def collectives(sizes_mib, iters):
    print(f"# collectives, {WORLD} ranks, float32; busbw GB/s (time us); best of 2 rounds each")
    print(f"# {'op':<14} {'MiB':>6} | {'epyard busbw':>12} {'us':>9} | {'nccl busbw':>10} {'us':>9} | {'ep/nccl':>7}")
    for op in ("all_reduce", "all_to_all"):
        for mib in sizes_mib:
            n = mib * (1 << 20) // 4
            x = torch.ones(n, device=DEV)
            y = torch.empty_like(x)
            best = {}
            for _ in range(2):
                for name, group in (("epyard", EPYARD), ("nccl", NCCL)):
                    if op == "all_reduce":
                        t = timed(lambda: dist.all_reduce(x, group=group), iters)
                    else:
                        t = timed(lambda: dist.all_to_all_single(y, x, group=group), iters)
                    best[name] = min(best.get(name, t), t)
            factor = 2 * (WORLD - 1) / WORLD if op == "all_reduce" else (WORLD - 1) / WORLD
            bw = {k: n * 4 / v * factor / 1e9 for k, v in best.items()}
            if RANK == 0:
                print(f"  {op:<14} {mib:>6} | {bw['epyard']:>12.2f} {best['epyard'] * 1e6:>9.1f} | "
                      f"{bw['nccl']:>10.2f} {best['nccl'] * 1e6:>9.1f} | {bw['epyard'] / bw['nccl']:>7.3f}",
                      flush=True)


def ep_overhead(iters):
    E, B, H, K = 256, 128, 7168, 8
    group = epyard.ep.Group(EPYARD, num_experts=E, max_tokens_per_rank=B, hidden=H)
    h = group.handle(top_k=K)
    g = torch.Generator().manual_seed(1 + RANK)
    idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(B)]).to(DEV)
    x = torch.randn(B, H, generator=g).to(torch.bfloat16).to(DEV)
    w = torch.rand(B, K, generator=g).to(DEV)
    expert_out = torch.zeros(E // WORLD, WORLD * B, H, dtype=torch.bfloat16, device=DEV)
    h.update(idx)
    out = h.dispatch(x, w, fp8=True, round_scales=True)
    y = h.combine(expert_out, w)
    torch.cuda.synchronize()

    reuse, y_reuse = h.new_dispatch_output(H, fp8=True), torch.empty_like(y)

    def python_loop(reuse_outputs):
        dist.barrier(group=NCCL, device_ids=[DEV.index])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        if reuse_outputs:
            for _ in range(iters):
                h.dispatch(x, w, fp8=True, round_scales=True, out=reuse)
                h.combine(expert_out, w, out=y_reuse)
        else:
            for _ in range(iters):
                h.dispatch(x, w, fp8=True, round_scales=True)
                h.combine(expert_out, w)
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        return (t1 - t0) / iters, (time.perf_counter() - t0) / iters

    def c_loop():
        dist.barrier(group=NCCL, device_ids=[DEV.index])
        torch.cuda.synchronize()
        return _C.ep_c_api_issue_loop(h._id, x, w, out.tokens, out.scales, expert_out, y, WORLD, iters)

    py, py_out, c, gpu = [], [], [], []
    for _ in range(3):
        issue, total = python_loop(False)
        py.append(issue)
        gpu.append(total)
        py_out.append(python_loop(True)[0])
        c.append(c_loop())
    py_us, out_us, c_us, gpu_us = (slowest(min(v)) * 1e6 for v in (py, py_out, c, gpu))
    if RANK == 0:
        print(f"# EP low latency, {WORLD} ranks, {B} tokens, hidden {H}, top-{K}, {E} experts, FP8 dispatch / "
              f"BF16 combine; host us to issue one dispatch + combine, best of 3 x {iters} (slowest rank)")
        print(f"  C API from C++ {c_us:7.2f} | epyard.ep, new outputs {py_us:7.2f} (overhead {py_us - c_us:6.2f}) | "
              f"epyard.ep, out= {out_us:7.2f} (overhead {out_us - c_us:6.2f}) | GPU us per dispatch+combine "
              f"{gpu_us:7.2f}", flush=True)
    group.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes-mib", default="1,16,64,256")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--ep-iters", type=int, default=100)
    args = ap.parse_args()
    torch.cuda.set_device(DEV)
    dist.init_process_group("cpu:gloo,cuda:epyard")
    EPYARD = dist.group.WORLD
    NCCL = dist.new_group(backend="nccl")
    collectives([int(s) for s in args.sizes_mib.split(",")], args.iters)
    ep_overhead(args.ep_iters)
    dist.destroy_process_group()
