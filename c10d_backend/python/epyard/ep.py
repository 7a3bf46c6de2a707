"""MoE dispatch and combine for torch tensors, over epyard's EP C API (nccl_ep.h).

    pg = dist.new_group(backend="epyard")             # or the default group if it uses epyard
    group = epyard.ep.Group(pg, num_experts=256, max_tokens_per_rank=128, hidden=7168)
    handle = group.handle(top_k=8)                     # layout="expert_major" | "rank_major"
    handle.update(topk_idx)                            # int64 [T, K], -1 = no expert
    out = handle.dispatch(x, topk_weights, fp8=True)   # x bf16 [T, H]
    y = handle.combine(expert_out, topk_weights)       # bf16 [T, H]

Low-latency mode only for now; algorithm="high_throughput" raises. The work runs on the
current CUDA stream through torch.library ops (epyard::ep_*), with Meta kernels so
torch.compile traces them and CUDA graphs capture update + dispatch + combine.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from . import _C

__all__ = ["Group", "Handle", "DispatchOutput"]


@dataclass
class DispatchOutput:
    tokens: torch.Tensor                   # expert-major [L, R*B, H]; rank-major [R, B, H]
    scales: Optional[torch.Tensor]         # float32 [..., H/128] when fp8
    topk_idx: Optional[torch.Tensor]       # rank-major: int64 [R, B, K] local ids, -1 elsewhere
    topk_weights: Optional[torch.Tensor]   # rank-major: float32 [R, B, K]
    expert_counters: torch.Tensor          # int32 [L]: valid rows per local expert
    src_rank_counters: torch.Tensor        # int32 [R]: tokens from each rank
    expert_offsets: torch.Tensor           # int32 [L]
    recv_total: torch.Tensor               # int32 [1]


class Group:
    """An EP group on a process group whose CUDA backend is epyard (collective to create)."""

    def __init__(self, pg=None, *, num_experts, max_tokens_per_rank, hidden,
                 algorithm="low_latency", enable_mask=False, timeout_ms=0, max_num_sms=0):
        if algorithm != "low_latency":
            raise NotImplementedError(
                f"epyard.ep: algorithm={algorithm!r} is not available yet; use 'low_latency'")
        pg = pg if pg is not None else dist.group.WORLD
        if not torch.cuda.is_available():
            raise RuntimeError("epyard.ep: EP groups need a CUDA device")
        try:
            backend = pg._get_backend(torch.device("cuda"))
        except RuntimeError as e:
            raise ValueError("epyard.ep: the process group has no CUDA backend; create it with "
                             "backend 'epyard' (e.g. dist.new_group(backend='epyard'))") from e
        self.num_ranks = pg.size()
        self.num_experts = num_experts
        self.max_tokens = max_tokens_per_rank
        self.hidden = hidden
        self.device = torch.device("cuda", torch.cuda.current_device())
        self._id = _C.ep_group_create(backend, self.device.index, num_experts, max_tokens_per_rank,
                                      2 * hidden, enable_mask, timeout_ms, max_num_sms)
        self._handles = []

    @property
    def local_experts(self):
        return self.num_experts // self.num_ranks

    def handle(self, top_k, layout="expert_major"):
        if layout not in ("expert_major", "rank_major"):
            raise ValueError(f"epyard.ep: layout must be 'expert_major' or 'rank_major', not {layout!r}")
        h = Handle(self, top_k, layout == "rank_major")
        self._handles.append(h)
        return h

    def close(self):
        """Destroys the handles and the group (collective)."""
        for h in self._handles:
            h.close()
        self._handles = []
        if self._id:
            _C.ep_group_destroy(self._id)
            self._id = 0


class Handle:
    """Routing state of one batch; update() per step, then dispatch() and combine()."""

    def __init__(self, group, top_k, rank_major):
        self.group, self.top_k, self.rank_major = group, top_k, rank_major
        self._id = _C.ep_handle_create(group._id, rank_major, top_k)
        self._state = torch.zeros(1, dtype=torch.int32, device=group.device)
        self.num_tokens = None

    def update(self, topk_idx):
        if topk_idx.dim() != 2 or topk_idx.size(1) != self.top_k:
            raise ValueError(f"epyard.ep: topk_idx must be [tokens, {self.top_k}], got {list(topk_idx.shape)}")
        self.num_tokens = topk_idx.size(0)
        torch.ops.epyard.ep_update(self._id, topk_idx.to(torch.int64).contiguous(), self._state)

    def _rows(self):
        g = self.group
        return (g.num_ranks, g.max_tokens) if self.rank_major else (g.local_experts, g.num_ranks * g.max_tokens)

    def dispatch(self, x, topk_weights=None, *, fp8=False, round_scales=False, send_only=False):
        if self.num_tokens is None:
            raise RuntimeError("epyard.ep: call update(topk_idx) before dispatch")
        g, (d0, d1) = self.group, self._rows()
        dev, hidden = x.device, x.size(-1)
        i32 = dict(dtype=torch.int32, device=dev)
        out = DispatchOutput(
            tokens=torch.empty(d0, d1, hidden, dtype=torch.float8_e4m3fn if fp8 else torch.bfloat16, device=dev),
            scales=torch.empty(d0, d1, hidden // 128, dtype=torch.float32, device=dev) if fp8 else None,
            topk_idx=torch.empty(d0, d1, self.top_k, dtype=torch.int64, device=dev) if self.rank_major else None,
            topk_weights=(torch.empty(d0, d1, self.top_k, dtype=torch.float32, device=dev)
                          if self.rank_major and topk_weights is not None else None),
            expert_counters=torch.empty(g.local_experts, **i32),
            src_rank_counters=torch.empty(g.num_ranks, **i32),
            expert_offsets=torch.empty(g.local_experts, **i32),
            recv_total=torch.empty(1, **i32))
        torch.ops.epyard.ep_dispatch(self._id, self._state, x, topk_weights, out.tokens, out.scales,
                                     out.topk_idx, out.topk_weights, out.expert_counters,
                                     out.src_rank_counters, out.expert_offsets, out.recv_total,
                                     round_scales, send_only)
        self._pending = out.tokens if send_only else None
        return out

    def combine(self, expert_out, topk_weights=None, *, send_only=False):
        if self.num_tokens is None:
            raise RuntimeError("epyard.ep: call update() and dispatch() before combine")
        out = torch.empty(self.num_tokens, expert_out.size(-1), dtype=torch.bfloat16, device=expert_out.device)
        torch.ops.epyard.ep_combine(self._id, expert_out, None if self.rank_major else topk_weights, out, send_only)
        self._pending = out if send_only else None
        return out

    def complete(self):
        """Finishes a send_only dispatch or combine (its outputs are written by then)."""
        anchor = getattr(self, "_pending", None)
        if anchor is None:
            raise RuntimeError("epyard.ep: no send_only dispatch or combine to complete")
        torch.ops.epyard.ep_complete(self._id, anchor)
        self._pending = None

    def close(self):
        if self._id:
            _C.ep_handle_destroy(self._id)
            self._id = 0


# Meta kernels: shapes are decided by the Python API, the ops only write into given tensors.
for _name in ("ep_update", "ep_dispatch", "ep_combine", "ep_complete"):
    torch.library.register_fake(f"epyard::{_name}")(lambda *args, **kwargs: None)
