"""GPU checks of the epyard torch backend, one process per GPU (torchrun):

    torchrun --nproc-per-node 4 tests/c10d/gpu_collectives.py

Every collective runs on the same inputs through "epyard" and through ProcessGroupNCCL and the
results must be equal (inputs are small integers, so sums are exact in every dtype); then a few
DDP steps of a small model give the same parameters with both backends; unsupported dtypes and
ops raise errors naming them. Prints PASS lines; exits non-zero on the first difference."""
import datetime
import os
import sys

import torch
import torch.distributed as dist

import epyard  # noqa: F401  (registers "epyard")
import placement

RANK = int(os.environ["RANK"])
WORLD = int(os.environ["WORLD_SIZE"])
DEV, SHARES_GPU = placement.place()
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.int8, torch.uint8]


def fail(msg):
    print(f"[rank {RANK}] FAIL: {msg}", flush=True)
    sys.exit(1)


def same(a, b, what):
    if isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{what}[{i}]")
        return
    if not torch.equal(a, b):
        fail(f"{what}: epyard {a.flatten()[:8].tolist()} vs nccl {b.flatten()[:8].tolist()}")


def data(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed * 131 + RANK)
    hi = 3 if dtype in (torch.int8, torch.uint8) else 8
    return torch.randint(0, hi, shape, generator=g).to(dtype).to(DEV)


def both(fn, make):
    """Runs fn(group, *tensors) on epyard and on nccl with identical fresh inputs."""
    a, b = make(), make()
    fn(EP, *a)
    fn(NC, *b)
    torch.cuda.synchronize()
    return a, b


def check_collectives():
    n = 1000
    for dtype in DTYPES:
        ops = [dist.ReduceOp.SUM, dist.ReduceOp.MIN, dist.ReduceOp.MAX, dist.ReduceOp.PRODUCT]
        if dtype.is_floating_point:
            ops.append(dist.ReduceOp.AVG)
        for op in ops:
            small = op == dist.ReduceOp.PRODUCT
            mk = lambda: [data((n,), dtype, 1).clamp(max=1 if small else 100) + (1 if small else 0)]
            a, b = both(lambda g, t: dist.all_reduce(t, op=op, group=g), mk)
            same(a, b, f"all_reduce {dtype} {op}")
        a, b = both(lambda g, t: dist.broadcast(t, src=WORLD - 1, group=g), lambda: [data((n,), dtype, 2)])
        same(a, b, f"broadcast {dtype}")
        a, b = both(lambda g, t: dist.reduce(t, dst=0, group=g), lambda: [data((n,), dtype, 3)])
        if RANK == 0:
            same(a, b, f"reduce {dtype}")
        mk = lambda: [[torch.empty(n, dtype=dtype, device=DEV) for _ in range(WORLD)], data((n,), dtype, 4)]
        a, b = both(lambda g, outs, t: dist.all_gather(outs, t, group=g), mk)
        same(a[0], b[0], f"all_gather {dtype}")
        mk = lambda: [torch.empty(n * WORLD, dtype=dtype, device=DEV), data((n,), dtype, 5)]
        a, b = both(lambda g, out, t: dist.all_gather_into_tensor(out, t, group=g), mk)
        same(a[0], b[0], f"all_gather_into_tensor {dtype}")
        mk = lambda: [torch.empty(n, dtype=dtype, device=DEV), [data((n,), dtype, 6 + r) for r in range(WORLD)]]
        a, b = both(lambda g, out, ins: dist.reduce_scatter(out, ins, group=g), mk)
        same(a[0], b[0], f"reduce_scatter {dtype}")
        mk = lambda: [torch.empty(n, dtype=dtype, device=DEV), data((n * WORLD,), dtype, 7)]
        a, b = both(lambda g, out, t: dist.reduce_scatter_tensor(out, t, group=g), mk)
        same(a[0], b[0], f"reduce_scatter_tensor {dtype}")
        mk = lambda: [torch.empty(n * WORLD, dtype=dtype, device=DEV), data((n * WORLD,), dtype, 8)]
        a, b = both(lambda g, out, t: dist.all_to_all_single(out, t, group=g), mk)
        same(a[0], b[0], f"all_to_all_single {dtype}")
        ins = [r + 1 for r in range(WORLD)]               # rows this rank sends to rank r
        outs = [RANK + 1] * WORLD                          # rows it gets from each rank
        mk = lambda: [torch.empty(sum(outs), 3, dtype=dtype, device=DEV), data((sum(ins), 3), dtype, 9)]
        a, b = both(lambda g, out, t: dist.all_to_all_single(out, t, outs, ins, group=g), mk)
        same(a[0], b[0], f"all_to_all_single with splits {dtype}")
        mk = lambda: [[torch.empty(n, dtype=dtype, device=DEV) for _ in range(WORLD)],
                      [data((n,), dtype, 10 + r) for r in range(WORLD)]]
        a, b = both(lambda g, outs_, ins_: dist.all_to_all(outs_, ins_, group=g), mk)
        same(a[0], b[0], f"all_to_all {dtype}")
    print(f"[rank {RANK}] PASS collectives x {len(DTYPES)} dtypes", flush=True)


def check_coalesced_p2p_barrier():
    outs = [torch.empty(10 * WORLD, device=DEV) for _ in range(3)]
    ins = [data((10,), torch.float32, 20 + i) for i in range(3)]
    with dist._coalescing_manager(group=EP, device=DEV, async_ops=True) as cm:
        for o, i in zip(outs, ins):
            dist.all_gather_into_tensor(o, i, group=EP)
    cm.wait()
    for o, i in zip(outs, ins):
        ref = torch.empty_like(o)
        dist.all_gather_into_tensor(ref, i, group=NC)
        same(o, ref, "coalesced all_gather_into_tensor")
    sums = [data((10,), torch.float32, 25 + i) for i in range(3)]
    refs = [x.clone() for x in sums]
    with dist._coalescing_manager(group=EP, device=DEV, async_ops=True) as cm:
        for x in sums:
            dist.all_reduce(x, group=EP)
    cm.wait()
    for x, r in zip(sums, refs):
        dist.all_reduce(r, group=NC)
        same(x, r, "coalesced all_reduce")
    # batch_isend_irecv (one coalesced NCCL group): a ring, each rank sends to the next.
    send = data((32,), torch.float32, 40)
    got = torch.empty_like(send)
    ops = [dist.P2POp(dist.isend, send, (RANK + 1) % WORLD, group=EP),
           dist.P2POp(dist.irecv, got, (RANK - 1) % WORLD, group=EP)]
    for w in dist.batch_isend_irecv(ops):
        w.wait()
    g = torch.Generator().manual_seed(40 * 131 + (RANK - 1) % WORLD)
    same(got, torch.randint(0, 8, (32,), generator=g).float().to(DEV), "batch_isend_irecv ring")
    t = data((64,), torch.float32, 30)
    if RANK % 2 == 0 and RANK + 1 < WORLD:
        dist.send(t, RANK + 1, group=EP)
    elif RANK % 2 == 1:
        got = torch.empty_like(t)
        dist.recv(got, RANK - 1, group=EP)
        g = torch.Generator().manual_seed(30 * 131 + RANK - 1)
        same(got, torch.randint(0, 8, (64,), generator=g).float().to(DEV), "send/recv")
    dist.barrier(group=EP)
    print(f"[rank {RANK}] PASS coalesced (all_gather, all_reduce, batch_isend_irecv), send/recv, barrier", flush=True)


def check_errors():
    # (complex tensors would pass: torch hands them to backends as real views)
    backend = EP._get_backend(DEV)
    cases = [
        ("bool through the backend", "does not support dtype Bool",
         lambda: backend.allreduce([torch.zeros(4, device=DEV, dtype=torch.bool)]).wait()),
        ("bool through dist.all_reduce", "does not support dtype Bool",
         lambda: dist.all_reduce(torch.zeros(4, device=DEV, dtype=torch.bool), group=EP)),
        ("BAND through dist.all_reduce", "ReduceOp",
         lambda: dist.all_reduce(torch.ones(4, device=DEV, dtype=torch.int32), op=dist.ReduceOp.BAND, group=EP)),
    ]
    for what, needle, call in cases:
        print(f"[rank {RANK}] errors: {what}", flush=True)
        try:
            call()
            fail(f"{what} did not raise")
        except RuntimeError as e:
            if needle not in str(e):
                fail(f"{what}: the error does not say {needle!r}: {e}")
    print(f"[rank {RANK}] PASS errors", flush=True)


def check_ddp():
    def train(group):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).to(DEV)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[DEV.index], process_group=group)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(100 + RANK)
        for _ in range(3):
            x = torch.randn(16, 32, generator=g).to(DEV)
            loss = ddp(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    a, b = train(EP), train(NC)
    for i, (x, y) in enumerate(zip(a, b)):
        if not torch.allclose(x, y, rtol=0, atol=1e-6):
            fail(f"DDP parameter {i} differs: max {(x - y).abs().max().item()}")
    print(f"[rank {RANK}] PASS DDP (3 steps, same parameters as nccl)", flush=True)


if __name__ == "__main__":
    torch.cuda.set_device(DEV)
    dist.init_process_group("cpu:gloo,cuda:epyard", timeout=datetime.timedelta(seconds=120))
    EP = dist.group.WORLD
    NC = dist.new_group(backend="nccl")
    check_collectives()
    check_coalesced_p2p_barrier()
    check_ddp()
    check_errors()
    dist.barrier(group=EP)
    dist.destroy_process_group()
    print(f"[rank {RANK}] ALL PASSED", flush=True)
