"""MoE dispatch and combine for torch tensors, over epyard's EP C API (nccl_ep.h).

    pg = dist.new_group(backend="epyard")             # or the default group if it uses epyard
    group = epyard.ep.Group(pg, num_experts=256, max_tokens_per_rank=128, hidden=7168)
    handle = group.handle(top_k=8)                     # layout="expert_major" | "rank_major"
    handle.update(topk_idx)                            # int64 [T, K], -1 = no expert
    out = handle.dispatch(x, topk_weights, fp8=True)   # x bf16 [T, H]
    y = handle.combine(expert_out, topk_weights)       # bf16 [T, H]

Low-latency mode only for now; algorithm="high_throughput" raises. The work runs on the
current CUDA stream. Eager calls go straight to the C++ functions; under torch.compile the same
code runs as torch.library ops (epyard::ep_*, which write into given outputs) with fake kernels
for tracing. CUDA graphs capture update + dispatch + combine. dispatch(out=...) and
combine(out=...) reuse output tensors (handle.new_dispatch_output) instead of allocating.
"""

import torch
import torch.distributed as dist

from . import _C

__all__ = ["Group", "Handle", "DispatchOutput"]


class DispatchOutput:
    """What dispatch returns. The counters share one int32 tensor; each is a view made on use.
    The fields are read-only: passed back as dispatch(out=...), the C structs built for them the
    first time are reused."""

    __slots__ = ("tokens", "scales", "topk_idx", "topk_weights", "counters", "_l", "_r", "_prepared")

    def __init__(self, tokens, scales, topk_idx, topk_weights, counters, local_experts, num_ranks):
        init = object.__setattr__
        init(self, "tokens", tokens)                # expert-major [L, R*B, H]; rank-major [R, B, H]
        init(self, "scales", scales)                # float32 [..., H/128] when fp8, else None
        init(self, "topk_idx", topk_idx)            # rank-major: int64 [R, B, K] local ids, -1 elsewhere
        init(self, "topk_weights", topk_weights)    # rank-major with weights: float32 [R, B, K]
        init(self, "counters", counters)            # int32 [2L + R + 1], the four below in a row
        init(self, "_l", local_experts)
        init(self, "_r", num_ranks)
        init(self, "_prepared", None)

    def __setattr__(self, name, value):
        raise AttributeError(f"epyard.ep.DispatchOutput.{name} is read-only; make another output with "
                             "handle.new_dispatch_output()")

    def _prepare(self):
        """The C++ side of dispatch(out=self): built on first use, then reused."""
        p = _C.PreparedDispatch(self.tokens, self.scales, self.topk_idx, self.topk_weights, self.counters,
                                self._l, self._r)
        object.__setattr__(self, "_prepared", p)
        return p

    @property
    def expert_counters(self):                # int32 [L]: valid rows per local expert
        return self.counters[: self._l]

    @property
    def src_rank_counters(self):              # int32 [R]: tokens from each rank
        return self.counters[self._l: self._l + self._r]

    @property
    def expert_offsets(self):                 # int32 [L]
        return self.counters[self._l + self._r: 2 * self._l + self._r]

    @property
    def recv_total(self):                     # int32 [1]
        return self.counters[2 * self._l + self._r:]


# Eager calls go straight to the C++ functions; traced ones (torch.compile) through torch.ops.
_compiling = torch.compiler.is_compiling


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
        self._pending = None
        self._combine_out = self._combine_prepared = None   # the last combine(out=) target

    def update(self, topk_idx):
        if topk_idx.dim() != 2 or topk_idx.size(1) != self.top_k:
            raise ValueError(f"epyard.ep: topk_idx must be [tokens, {self.top_k}], got {list(topk_idx.shape)}")
        self.num_tokens = topk_idx.size(0)
        op = torch.ops.epyard.ep_update if _compiling() else _C.ep_update
        op(self._id, topk_idx.to(torch.int64).contiguous(), self._state)

    def _rows(self):
        g = self.group
        return (g.num_ranks, g.max_tokens) if self.rank_major else (g.local_experts, g.num_ranks * g.max_tokens)

    def new_dispatch_output(self, hidden, *, fp8=False, with_weights=False, device=None):
        """Output tensors for dispatch(out=...): reused, they save the allocations of each call
        (the previous call's results are overwritten)."""
        g, (d0, d1) = self.group, self._rows()
        dev = device if device is not None else g.device
        rm = self.rank_major
        return DispatchOutput(
            torch.empty(d0, d1, hidden, dtype=torch.float8_e4m3fn if fp8 else torch.bfloat16, device=dev),
            torch.empty(d0, d1, hidden // 128, dtype=torch.float32, device=dev) if fp8 else None,
            torch.empty(d0, d1, self.top_k, dtype=torch.int64, device=dev) if rm else None,
            torch.empty(d0, d1, self.top_k, dtype=torch.float32, device=dev) if rm and with_weights else None,
            torch.empty(2 * g.local_experts + g.num_ranks + 1, dtype=torch.int32, device=dev),
            g.local_experts, g.num_ranks)

    def dispatch(self, x, topk_weights=None, *, fp8=False, round_scales=False, send_only=False, out=None):
        """Sends each token to its experts' ranks. Returns a DispatchOutput (new tensors, or
        `out` from new_dispatch_output, written in place)."""
        if self.num_tokens is None:
            raise RuntimeError("epyard.ep: call update(topk_idx) before dispatch")
        if out is not None and (out.scales is not None) != fp8:
            raise ValueError(f"epyard.ep: out was made for fp8={not fp8}, this dispatch has fp8={fp8}")
        g = self.group
        if not _compiling():
            if out is None:
                dims = [*self._rows(), x.size(-1), self.top_k, g.local_experts, g.num_ranks, int(self.rank_major)]
                out = DispatchOutput(*_C.ep_dispatch_new(self._id, x, topk_weights, dims, fp8, round_scales,
                                                         send_only), g.local_experts, g.num_ranks)
            else:
                (out._prepared or out._prepare()).run(self._id, x, topk_weights, round_scales, send_only)
        else:
            if out is None:
                out = self.new_dispatch_output(x.size(-1), fp8=fp8, with_weights=topk_weights is not None,
                                               device=x.device)
            torch.ops.epyard.ep_dispatch(self._id, self._state, x, topk_weights, out.tokens, out.scales,
                                         out.topk_idx, out.topk_weights, out.counters, g.local_experts,
                                         g.num_ranks, round_scales, send_only)
        self._pending = out.tokens if send_only else None
        return out

    def combine(self, expert_out, topk_weights=None, *, send_only=False, out=None):
        """Brings the experts' rows back to their tokens: bf16 [T, H] (new, or `out`)."""
        if self.num_tokens is None:
            raise RuntimeError("epyard.ep: call update() and dispatch() before combine")
        w = None if self.rank_major else topk_weights
        if not _compiling():
            if out is None:
                out = _C.ep_combine_new(self._id, expert_out, w, self.num_tokens, send_only)
            else:
                if out is not self._combine_out:
                    self._combine_prepared = _C.PreparedCombine(out)
                    self._combine_out = out
                self._combine_prepared.run(self._id, expert_out, w, send_only)
        else:
            if out is None:
                out = expert_out.new_empty(self.num_tokens, expert_out.size(-1), dtype=torch.bfloat16)
            torch.ops.epyard.ep_combine(self._id, expert_out, w, out, send_only)
        self._pending = out if send_only else None
        return out

    def complete(self):
        """Finishes a send_only dispatch or combine (its outputs are written by then)."""
        anchor = self._pending
        if anchor is None:
            raise RuntimeError("epyard.ep: no send_only dispatch or combine to complete")
        op = torch.ops.epyard.ep_complete if _compiling() else _C.ep_complete
        op(self._id, anchor)
        self._pending = None

    def close(self):
        if self._id:
            _C.ep_handle_destroy(self._id)
            self._id = 0


# Fake (Meta) kernels for tracing: the ops only write into tensors they are given.
for _name in ("ep_update", "ep_dispatch", "ep_combine", "ep_complete"):
    torch.library.register_fake(f"epyard::{_name}")(lambda *args, **kwargs: None)
