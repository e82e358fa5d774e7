"""Raw recorder state (private): copies, sums, statistics, and the cross-process merge.

A raw state is a dict of tensors: ``s1`` / ``s2`` float64 ``(N, T)`` sums of ``p`` and
``p**2``, ``correct`` int32 ``(N, T)``, ``seen`` int64 ``(N,)`` updates per sample and
``missing`` int32 ``(N, T)`` masked labels (``None`` until a mask is used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

if TYPE_CHECKING:  # pragma: no cover
    from stgmtl.recorder import DataMapRecorder

RAW_KEYS = ("s1", "s2", "correct", "seen", "missing")
Raw = dict[str, torch.Tensor | None]


def clone(raw: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
    return {k: (None if raw.get(k) is None else raw[k].clone()) for k in RAW_KEYS}  # type: ignore[union-attr]


def zeros_like(raw: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
    return {k: (None if raw.get(k) is None else torch.zeros_like(raw[k])) for k in RAW_KEYS}  # type: ignore[arg-type]


def add_(a: dict[str, torch.Tensor | None], b: dict[str, torch.Tensor | None]) -> dict:
    """a += b in place (a missing-label count absent on one side counts as zero)."""
    for k in RAW_KEYS:
        x, y = a.get(k), b.get(k)
        if y is not None:
            if x is None:
                a[k] = y.clone()
            else:
                x.add_(y)
    return a


def statistics(raw: dict[str, torch.Tensor | None], ddof: int, dtype: Any) -> tuple:
    """(T, N) numpy confidence, variability, correctness, count from raw sums."""
    s1, s2, seen, miss = raw["s1"], raw["s2"], raw["seen"], raw.get("missing")
    assert s1 is not None and s2 is not None and seen is not None and raw["correct"] is not None
    n = seen.unsqueeze(1).expand_as(raw["correct"])
    if miss is not None:
        n = n - miss
    nf = n.to(torch.float64)
    conf = s1 / nf  # NaN where never observed
    m2 = (s2 - s1 * conf).clamp_(min=0.0)
    denom = (nf - ddof).clamp_(min=1.0)  # ddof=1 and one observation -> variability 0
    var = (m2 / denom).sqrt_().masked_fill_(nf <= 1, 0.0).masked_fill_(nf == 0, float("nan"))
    corr = raw["correct"].to(torch.float64) / nf

    def out(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.T.cpu().numpy(), dtype=dtype)

    return out(conf), out(var), out(corr), np.ascontiguousarray(n.T.to(torch.int32).cpu().numpy())


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce(
    raws: list[dict[str, torch.Tensor | None]], targets: torch.Tensor, rec: DataMapRecorder
) -> None:
    """Sum raw states (and max targets) over all ranks, after checking they are compatible."""
    dev = raws[0]["s1"].device  # type: ignore[union-attr]
    header = torch.tensor(
        [rec.epoch, len(raws), rec.num_tasks, rec._rows, sum(rec._snapshots),
         -1 if rec.num_classes is None else rec.num_classes],
        dtype=torch.int64,
        device=dev,
    )  # fmt: skip
    lo, hi = header.clone(), header.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo[:5], hi[:5]):
        raise RuntimeError(
            "sync: ranks disagree on (epochs, states, tasks, rows, snapshot epochs): "
            f"min {lo[:5].tolist()} max {hi[:5].tolist()}; call end_epoch() equally on every rank"
        )
    if rec.num_classes is None and int(hi[5]) >= 0:
        rec.num_classes = int(hi[5])
    flags = torch.tensor([r["missing"] is not None for r in raws], dtype=torch.int64, device=dev)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    for raw, flag in zip(raws, flags.tolist(), strict=True):
        if flag and raw["missing"] is None:
            raw["missing"] = torch.zeros_like(raw["correct"])  # type: ignore[arg-type]
        for k in RAW_KEYS:
            if raw[k] is not None:
                dist.all_reduce(raw[k], op=dist.ReduceOp.SUM)  # type: ignore[arg-type]
    wide = targets.to(torch.int32)  # gloo has no int16 reductions
    dist.all_reduce(wide, op=dist.ReduceOp.MAX)
    targets.copy_(wide)


def scratch_buffer(
    scratch: dict[str, torch.Tensor],
    name: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Reused per-step scratch (fresh large allocations cost page faults every step)."""
    buf = scratch.get(name)
    need = int(np.prod(shape))
    if buf is None or buf.numel() < need or buf.dtype != dtype or buf.device != device:
        buf = torch.empty(need, dtype=dtype, device=device)
        scratch[name] = buf
    return buf[:need].view(shape)


def accumulate(
    state: Raw,
    targets: torch.Tensor,
    scratch: dict[str, torch.Tensor],
    z: torch.Tensor,
    y: torch.Tensor,
    rows: torch.Tensor,
    m: torch.Tensor | None,
    yb: torch.Tensor | None = None,
) -> None:
    """Add a validated batch: a few elementwise passes, then one scatter per state tensor.

    The whole batch is processed at once: chunking it (to stay in cache) was slower when
    the CPU is shared, as every small parallel region waits for a descheduled thread.
    """
    dev = z.device
    r, t = rows.shape[0], targets.shape[1]
    p = scratch_buffer(scratch, "p", (r, t), torch.float64, dev)
    cnt = scratch_buffer(scratch, "cnt", (r, t), torch.int32, dev)
    if z.ndim == 2:  # binary: p = sigmoid(z) if y = 1 else sigmoid(-z)
        if y.dtype == torch.bool:
            yb = y
        elif yb is None:  # else computed by the value check (same where the mask is True)
            yb = scratch_buffer(scratch, "yb", (r, t), torch.bool, dev)
            torch.gt(y, 0.5, out=yb)
        f = scratch_buffer(scratch, "f", (r, t), z.dtype, dev)
        torch.neg(z, out=f)
        if y.dtype == z.dtype:  # -z + y * 2z: lerp is a cheaper pass than where
            torch.lerp(f, z, y, out=f)
        else:
            torch.where(yb, z, f, out=f)
        f.sigmoid_()
        p.copy_(f)
        ok = scratch_buffer(scratch, "ok", (r, t), torch.bool, dev)
        torch.gt(z, 0, out=ok)
        torch.eq(ok, yb, out=cnt)  # right iff (z > 0) == y
        tgt = yb.view(torch.int8) if targets.dtype == torch.int8 else yb.to(torch.int8)
    else:  # multi-class: p = softmax(z)[y], right iff argmax(z) == y
        yl = y.long() if m is None else torch.where(m, y.long(), 0)
        zy = z.gather(2, yl.unsqueeze(2)).squeeze(2)
        torch.exp(zy - torch.logsumexp(z, dim=2), out=p)
        torch.eq(z.argmax(dim=2), yl, out=cnt)
        tgt = yl.to(targets.dtype)
    if m is not None:
        p.mul_(m)
        cnt.mul_(m)
        tgt = tgt.masked_fill(~m, -1)
        miss = state["missing"]
        assert miss is not None
        miss.index_put_((rows,), (~m).to(miss.dtype), accumulate=True)
    p2 = scratch_buffer(scratch, "p2", (r, t), torch.float64, dev)
    torch.mul(p, p, out=p2)  # exact when p came from float32: the product fits a float64
    state["seen"].index_put_((rows,), torch.ones_like(rows), accumulate=True)  # type: ignore[union-attr]
    if dev.type == "cuda":  # atomics are fastest on GPU; index_put_ is robust on CPU
        state["s1"].index_add_(0, rows, p)  # type: ignore[union-attr]
        state["s2"].index_add_(0, rows, p2)  # type: ignore[union-attr]
        state["correct"].index_add_(0, rows, cnt)  # type: ignore[union-attr]
    else:
        state["s1"].index_put_((rows,), p, accumulate=True)  # type: ignore[union-attr]
        state["s2"].index_put_((rows,), p2, accumulate=True)  # type: ignore[union-attr]
        state["correct"].index_put_((rows,), cnt, accumulate=True)  # type: ignore[union-attr]
    if m is None:  # every target observed: plain (cheaper) scatter
        targets.index_put_((rows,), tgt)
    else:  # keep earlier targets where this batch's are missing (-1)
        targets.scatter_reduce_(0, rows.view(-1, 1).expand(r, t), tgt, "amax")
