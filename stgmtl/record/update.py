"""The recorder's update kernel: a validated batch added to the state in cache-sized chunks.

Binary tasks: ``p = sigmoid(z)`` where ``y = 1`` and ``sigmoid(-z)`` where ``y = 0`` (the same
value as ``1 - sigmoid(z)`` without cancellation); right iff ``(z > 0) == y``. Multi-class tasks:
``p = softmax(z)[y]``; right iff ``argmax(z) == y`` (first maximum). The state's fields are
declared in :mod:`stgmtl.record.recorder` (float64 layout: ``s1``, ``s2``, ``correct``, ``seen``,
``missing``, ``targets``) or :mod:`stgmtl.record.compact` (``packed`` words, ``seen``,
``missing``, multi-class ``targets``).
"""

from __future__ import annotations

import numpy as np
import torch

from stgmtl.record.compact import increment
from stgmtl.record.state import State

__all__ = ["CHUNK_ELEMENTS", "accumulate", "scratch_buffer"]


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


# Elements (rows x tasks x classes) per chunk of a batch: the chunk's intermediates stay in
# the CPU's L2 / L3 cache, so each elementwise pass after the first costs cache, not memory,
# bandwidth (at T = 10,000, B = 256 the whole-batch passes were ~2.5x slower per element).
CHUNK_ELEMENTS = 1 << 18


def accumulate(
    state: State,
    targets: torch.Tensor | None,
    scratch: dict[str, torch.Tensor],
    z: torch.Tensor,
    y: torch.Tensor,
    rows: torch.Tensor,
    m: torch.Tensor | None,
    yb: torch.Tensor | None = None,
    *,
    count: bool = True,
) -> None:
    """Add a validated batch, in row chunks of about ``CHUNK_ELEMENTS`` values.

    Each chunk takes a few elementwise passes (in cache), then one scatter per state tensor.
    Chunks are processed in order, so duplicate indices accumulate as in one pass. ``targets``
    is ``None`` for the compact layout's binary tasks (target bits in the packed words);
    ``count=False`` leaves ``seen`` alone (the caller counted the rows already).
    """
    if count:
        state["seen"].index_put_((rows,), torch.ones_like(rows), accumulate=True)  # type: ignore[union-attr]
    r = rows.shape[0]
    per_row = max(1, int(np.prod(z.shape[1:])))
    step = r if z.device.type == "cuda" else max(1, CHUNK_ELEMENTS // per_row)
    for i in range(0, r, step):
        j = min(r, i + step)
        _accumulate_chunk(
            state, targets, scratch, z[i:j], y[i:j], rows[i:j],
            None if m is None else m[i:j], None if yb is None else yb[i:j],
        )  # fmt: skip


def _accumulate_chunk(
    state: State,
    targets: torch.Tensor | None,
    scratch: dict[str, torch.Tensor],
    z: torch.Tensor,
    y: torch.Tensor,
    rows: torch.Tensor,
    m: torch.Tensor | None,
    yb: torch.Tensor | None,
) -> None:
    dev = z.device
    r, t = rows.shape[0], z.shape[1]
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
        tgt = yb.view(torch.int8)
    else:  # multi-class: p = softmax(z)[y], right iff argmax(z) == y
        yl = y.long() if m is None else torch.where(m, y.long(), 0)
        zy = z.gather(2, yl.unsqueeze(2)).squeeze(2)
        torch.exp(zy - torch.logsumexp(z, dim=2), out=p)
        torch.eq(z.argmax(dim=2), yl, out=cnt)
        tgt = yl.to(torch.int16)
    if m is not None:
        p.mul_(m)
        cnt.mul_(m)
        tgt = tgt.masked_fill(~m, -1)
        miss = state["missing"]
        assert miss is not None
        miss.index_put_((rows,), (~m).to(miss.dtype), accumulate=True)
    if "packed" in state:
        _add_packed(state, targets, p, cnt, tgt, rows, m)
        return
    assert targets is not None
    p2 = scratch_buffer(scratch, "p2", (r, t), torch.float64, dev)
    torch.mul(p, p, out=p2)  # exact when p came from float32: the product fits a float64
    # float sums: on one CPU thread index_add_ (a deterministic loop of vectorised row adds,
    # faster than index_put_ there; its multi-threaded CPU path was up to 40x slower); on CUDA
    # index_add_ (atomics: sums may differ in the last bits between runs). int32 counts and
    # multi-threaded CPU: index_put_ (deterministic; CPU index_add_ on int32 is not vectorised)
    if dev.type == "cuda":
        state["s1"].index_add_(0, rows, p)  # type: ignore[union-attr]
        state["s2"].index_add_(0, rows, p2)  # type: ignore[union-attr]
        state["correct"].index_add_(0, rows, cnt)  # type: ignore[union-attr]
    else:
        if torch.get_num_threads() == 1:
            state["s1"].index_add_(0, rows, p)  # type: ignore[union-attr]
            state["s2"].index_add_(0, rows, p2)  # type: ignore[union-attr]
        else:
            state["s1"].index_put_((rows,), p, accumulate=True)  # type: ignore[union-attr]
            state["s2"].index_put_((rows,), p2, accumulate=True)  # type: ignore[union-attr]
        state["correct"].index_put_((rows,), cnt, accumulate=True)  # type: ignore[union-attr]
    if m is None:  # every target observed: plain (cheaper) scatter
        targets.index_put_((rows,), tgt)
    else:  # keep earlier targets where this batch's are missing (-1)
        targets.scatter_reduce_(0, rows.view(-1, 1).expand(r, t), tgt, "amax")


def _add_packed(
    state: State,
    targets: torch.Tensor | None,
    p: torch.Tensor,
    right: torch.Tensor,
    tgt: torch.Tensor,
    rows: torch.Tensor,
    m: torch.Tensor | None,
) -> None:
    """Compact layout: add the fixed-point words (integer, exact), then the targets.

    Binary target bits are set by a minimum over the words gathered after the sum: a word with
    bit 63 set is negative, so ``min(w, w | bit)`` sets it, once for any duplicate row.
    """
    words = state["packed"]
    assert words is not None
    inc = increment(p, right, None)  # p and right are 0 where masked
    if p.device.type == "cuda":
        words.index_add_(0, rows, inc)  # integer atomics: exact and deterministic
    else:
        words.index_put_((rows,), inc, accumulate=True)
    idx = rows.view(-1, 1).expand(tgt.shape)
    if targets is None:  # binary: bit 63 where a positive label is observed
        cand = words[rows]
        new = tgt.eq(1).logical_and_(cand.ge(0))  # positive, bit not yet set
        # on CPU skip the scatter when no bit is new (after a sample's first epoch); on CUDA
        # always scatter (no host sync)
        if p.device.type == "cuda" or bool(new.any()):
            cand.bitwise_or_(new.to(torch.int64).bitwise_left_shift_(63))
            words.scatter_reduce_(0, idx, cand, "amin")
    elif m is None:
        targets.index_put_((rows,), tgt.to(targets.dtype))
    else:
        targets.scatter_reduce_(0, idx, tgt.to(targets.dtype), "amax")
