"""CPU-side checks of the epyard torch backend (CI: no GPU). The package must import, register
backend "epyard" for CUDA, let process groups be created with it (alone or beside gloo), and
answer wrong use with errors that name the problem."""
import datetime
import os
import tempfile

import pytest
import torch
import torch.distributed as dist

import epyard


def _init(backend):
    store = dist.FileStore(tempfile.mktemp(prefix="epyard-store-"), 1)
    dist.init_process_group(backend, store=store, rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=30))


@pytest.fixture
def group():
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_registered_for_cuda():
    assert "epyard" in dist.Backend.backend_list
    assert dist.Backend.backend_capability["epyard"] == ["cuda"]
    assert epyard.nccl_version() >= 22807


def test_beside_gloo(group):
    _init("cpu:gloo,cuda:epyard")
    t = torch.ones(4)
    dist.all_reduce(t)  # CPU tensor: gloo's part of the group
    assert t.tolist() == [1.0] * 4
    assert dist.get_backend() == "cpu:gloo,cuda:epyard"


def test_alone_and_new_group(group):
    _init("epyard")
    sub = dist.new_group(backend="epyard")
    assert dist.get_backend(sub) == "epyard"


def _epyard_backend():
    return dist.distributed_c10d._get_default_group()._get_backend(torch.device("cuda"))


def test_cpu_tensor_is_refused_by_name(group):
    _init("cpu:gloo,cuda:epyard")
    backend = _epyard_backend()
    with pytest.raises(RuntimeError, match="handles CUDA tensors"):
        backend.allreduce([torch.ones(2)])


def test_unsupported_collective_is_named(group):
    _init("cpu:gloo,cuda:epyard")
    backend = _epyard_backend()
    with pytest.raises(RuntimeError, match="gather"):
        backend.gather([[torch.ones(2)]], [torch.ones(2)])


def test_coalescing_blocks_open_close_and_do_not_nest(group):
    _init("cpu:gloo,cuda:epyard")
    backend = _epyard_backend()
    assert backend.supports_coalescing
    backend._start_coalescing()
    with pytest.raises(RuntimeError, match="do not nest"):
        backend._start_coalescing()
    # A collective that copies after its NCCL call, or hands it a temporary, cannot join the
    # block; it is refused by name.
    with pytest.raises(RuntimeError, match="allgather cannot run inside a coalescing block"):
        backend.allgather([[torch.ones(2)]], [torch.ones(2)])
    with pytest.raises(RuntimeError, match="reduce_scatter cannot run inside a coalescing block"):
        backend.reduce_scatter([torch.ones(2)], [[torch.ones(2)]])
    assert backend._end_coalescing() is None  # nothing was queued: no Work, as ProcessGroupNCCL
    with pytest.raises(RuntimeError, match="without startCoalescing"):
        backend._end_coalescing()


def test_ep_ops_are_registered_with_fake_kernels():
    import epyard.ep  # noqa: F401
    for name in ("ep_update", "ep_dispatch", "ep_combine", "ep_complete"):
        assert hasattr(torch.ops.epyard, name)
    # On meta tensors (what torch.compile traces with) the ops accept their arguments.
    L, R, B, H, K = 4, 2, 8, 256, 3
    meta = dict(device="meta")
    x = torch.empty(5, H, dtype=torch.bfloat16, **meta)
    state = torch.empty(1, dtype=torch.int32, **meta)
    tokens = torch.empty(L, R * B, H, dtype=torch.float8_e4m3fn, **meta)
    scales = torch.empty(L, R * B, H // 128, **meta)
    counters = torch.empty(2 * L + R + 1, dtype=torch.int32, **meta)
    torch.ops.epyard.ep_dispatch(0, state, x, None, tokens, scales, None, None, counters, L, R, True, False)
    y = torch.empty(5, H, dtype=torch.bfloat16, **meta)
    torch.ops.epyard.ep_combine(0, tokens, None, y, False)


def test_dispatch_output_counters_are_views_of_one_tensor():
    from epyard.ep import DispatchOutput
    L, R = 3, 2
    out = DispatchOutput(None, None, None, None, torch.arange(2 * L + R + 1, dtype=torch.int32), L, R)
    assert out.expert_counters.tolist() == [0, 1, 2]
    assert out.src_rank_counters.tolist() == [3, 4]
    assert out.expert_offsets.tolist() == [5, 6, 7]
    assert out.recv_total.tolist() == [8]


def test_dispatch_output_is_read_only():
    from epyard.ep import DispatchOutput
    out = DispatchOutput(None, None, None, None, torch.zeros(5, dtype=torch.int32), 1, 2)
    with pytest.raises(AttributeError, match="tokens is read-only"):
        out.tokens = torch.zeros(1)


def test_prepared_outputs_must_be_cuda():
    from epyard import _C
    tokens = torch.zeros(1, 4, 128, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="out_tokens must be a CUDA tensor"):
        _C.PreparedDispatch(tokens, None, None, None, torch.zeros(5, dtype=torch.int32), 1, 2)
    with pytest.raises(RuntimeError, match="out must be a CUDA tensor"):
        _C.PreparedCombine(torch.zeros(4, 128, dtype=torch.bfloat16))


def test_ep_modes_not_available_raise(group):
    _init("cpu:gloo,cuda:epyard")
    with pytest.raises(NotImplementedError, match="high_throughput"):
        epyard.ep.Group(num_experts=8, max_tokens_per_rank=16, hidden=128, algorithm="high_throughput")


def test_ep_needs_cuda_or_an_epyard_group(group):
    _init("gloo")
    with pytest.raises((RuntimeError, ValueError), match="CUDA|epyard"):
        epyard.ep.Group(num_experts=8, max_tokens_per_rank=16, hidden=128)


def test_reference_is_bound_and_places_rows():
    # 2 ranks, 4 experts, 3 tokens each, hidden 128, top-2; rank r's token t names experts t, t+1.
    from epyard import _C
    routings = []
    for r in range(2):
        x = torch.full((3, 128), 0, dtype=torch.bfloat16)
        x[:, 0] = r
        x[:, 1] = torch.arange(3, dtype=torch.bfloat16)
        idx = torch.tensor([[t, t + 1] for t in range(3)], dtype=torch.int64)
        routings.append([x.view(torch.int16), idx, torch.full((3, 2), 0.5)])
    out = _C.ep_reference_dispatch(2, 4, 3, 128, 2, routings, False, False, False, [])
    # Expert 1 (rank 0, local 1) gets token 0 (slot 1) and token 1 (slot 0) from each rank.
    assert out[0]["expert_counters"].tolist() == [2, 4]
    assert out[1]["expert_counters"].tolist() == [4, 2]
    rows = out[0]["tokens"].view(torch.bfloat16).view(2, 2 * 3, 128)
    assert rows[1, 0, 0].item() == 0 and rows[1, 2, 0].item() == 1, "rank 0's rows first"
    comb = _C.ep_reference_combine(2, 4, 3, 128, 2, routings, False,
                                   [o["tokens"] for o in out], [])
    # Identity experts, weights 0.5 + 0.5: each token comes back as itself.
    for r in range(2):
        assert torch.equal(comb[r].view(torch.bfloat16).view(3, 128), routings[r][0].view(torch.bfloat16))


def test_alltoall_row_shapes_must_match(group):
    # Review finding 3: receives were sized from the input's rows, so an output with narrower
    # rows was overrun on the GPU. The check comes before any device work, so CPU tensors show it.
    _init("cpu:gloo,cuda:epyard")
    backend = _epyard_backend()
    big = torch.full((4 + 64,), -1.0)
    out = big[:4].view(2, 2)
    with pytest.raises(RuntimeError, match=r"trailing shape \[8\] but output rows have \[2\]"):
        backend.alltoall_base(out, torch.ones(2, 8), [], [], dist.AllToAllOptions())
    assert (big == -1).all()
    with pytest.raises(RuntimeError, match="first \\(row\\) dimension"):
        backend.alltoall_base(torch.ones(()), torch.ones(()), [], [], dist.AllToAllOptions())
