"""The compact state layout of a :class:`~stgmtl.DataMapRecorder`: 8 bytes per (sample, task).

Each (sample, task) cell is one int64 word of three integer sums and, for binary tasks, the
target bit::

    bit 63       target (binary tasks): 1 once a positive label was observed
    bits 29..62  S2 = sum q**2   (34 bits)
    bits  8..28  S1 = sum q      (21 bits)
    bits  0..7   right predictions (8 bits)

where ``q = floor(p * M + 1/2)`` is the true-label probability ``p`` in fixed point,
``M = 2**13 - 1 = 8191`` (``0 <= q <= M``). A cell holds at most :data:`MAX_UPDATES` = 255
observations, so no field can carry into the next: ``255 * M < 2**21`` and
``255 * M**2 < 2**34``. One update adds ``right + (q << 8) + (q**2 << 29)`` to the word (and
sets the target bit): integer sums, so merges over processes, resumes and epochs are exact and
order-independent, and a refused batch is undone exactly by subtracting what it added.

Error bound against the float64 reference (:func:`stgmtl.datamaps.stats.moments_to_stats` on
float64 ``p``): every stored ``q / M`` is within ``1 / (2M) = 6.104e-5`` of ``p`` (plus the
``p`` error of the computation: below ``1e-7`` for float32 logits, see
:mod:`stgmtl.record.native`), so

* confidence (a mean of the ``q / M``) is within :data:`BOUND` = ``6.2e-5``;
* variability (``ddof=0``: the standard deviation is a norm, so it moves by at most the largest
  per-observation change) is within :data:`BOUND`; with ``ddof=1`` within
  ``sqrt(n / (n - 1)) * BOUND <= sqrt(2) * BOUND`` (:data:`BOUND_DDOF1` = ``8.8e-5``);
* correctness and counts are exact (the same ``(z > 0) == y`` as the float64 layout).

The statistics are then evaluated exactly in integers (``n * S2 - S1**2 < 2**53``) and rounded
once to float64, so there is no cancellation error when the variability is 0.

Multi-class tasks use the same word (the target bit unused) plus the int16 target of the float64
layout: 10 bytes a cell. A mask adds a uint8 missing-label count (1 byte a cell).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stgmtl.record.state import LOW, Field, State, StateSpec, chunk_rows

__all__ = ["BOUND", "BOUND_DDOF1", "LEVELS", "MAX_UPDATES", "compact_state", "increment",
           "packed_statistics", "packed_targets"]  # fmt: skip

#: Fixed-point levels of ``p``: ``q = floor(p * LEVELS + 1/2)``.
LEVELS = (1 << 13) - 1
#: Largest number of observations of one sample (the 8-bit counters' limit).
MAX_UPDATES = 255
#: Error bound of confidence and (``ddof=0``) variability against the float64 layout.
BOUND = 6.2e-5
#: Error bound of the variability with ``ddof=1``.
BOUND_DDOF1 = 8.8e-5
S1_SHIFT, S2_SHIFT = 8, 29
_S1_MASK, _S2_MASK, _RIGHT_MASK = (1 << 21) - 1, (1 << 34) - 1, (1 << 8) - 1


def compact_state(task_type: str) -> StateSpec:
    """The declared compact state (``rows`` x ``tasks``).

    ``packed``: int64 words (sums and target bit, merged by :func:`packed_merge_`); ``seen``:
    int64 updates per row; ``missing``: uint8 masked labels (optional); multi-class only:
    ``targets`` int16 class ids (``-1`` not observed), merged by maximum.
    """
    rt = ("rows", "tasks")
    fields = [
        Field("packed", rt, torch.int64, "packed"),
        Field("seen", ("rows",), torch.int64, "sum"),
        Field("missing", rt, torch.uint8, "sum", optional=True),
    ]
    if task_type != "binary":
        fields.append(Field("targets", rt, torch.int16, "max", fill=-1, snapshot=False))
    return StateSpec(fields)


def increment(p: torch.Tensor, right: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    """int64 words to add for probabilities ``p`` and right predictions (0 / 1), masked by ``m``."""
    q = torch.floor(p * LEVELS + 0.5).clamp_(0, LEVELS).to(torch.int64)
    inc = (q * q).bitwise_left_shift_(S2_SHIFT)
    inc.add_(q.bitwise_left_shift_(S1_SHIFT)).add_(right.to(torch.int64))
    if m is not None:
        inc.mul_(m)
    return inc


def _chunk_stats(w: np.ndarray, n: np.ndarray, ddof: int) -> tuple[np.ndarray, ...]:
    """float64 confidence, variability, correctness of packed words ``w`` with counts ``n``."""
    right = (w & _RIGHT_MASK).astype(np.float64)
    s1 = (w >> S1_SHIFT) & _S1_MASK
    s2 = (w >> S2_SHIFT) & _S2_MASK
    num = n * s2 - s1 * s1  # exact: n * S2 < 2**42, S1**2 < 2**42
    nf = n.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = s1 / (nf * LEVELS)
        var = np.sqrt(np.maximum(num, 0) / (nf * np.maximum(nf - ddof, 1.0))) / LEVELS
        corr = right / nf
    var[n <= 1] = 0.0
    var[n == 0] = np.nan
    return conf, var, corr


def packed_statistics(raw: State, ddof: int, dtype: Any) -> tuple[np.ndarray, ...]:
    """(T, N) confidence, variability, correctness (``dtype``) and int32 count of a state.

    Row chunks of the sample-major state are decoded at a time, so the temporaries stay small
    next to the ``(T, N)`` outputs.
    """
    w, seen, missing = raw["packed"], raw["seen"], raw.get("missing")
    assert w is not None and seen is not None
    rows, tasks = w.shape
    out = [np.empty((tasks, rows), dtype=dtype) for _ in range(3)]
    count = np.empty((tasks, rows), dtype=np.int32)
    step = chunk_rows(w)
    for i in range(0, rows, step):
        j = min(rows, i + step)
        wc = w[i:j].cpu().numpy() & LOW
        n = np.broadcast_to(seen[i:j].cpu().numpy()[:, None], wc.shape)
        if missing is not None:
            n = n - missing[i:j].cpu().numpy()
        count[:, i:j] = n.T
        for o, s in zip(out, _chunk_stats(wc, n.astype(np.int64), ddof), strict=True):
            o[:, i:j] = s.T
    return (*out, count)


def packed_targets(raw: State) -> np.ndarray:
    """(T, N) int32 targets of a binary compact state: 1, 0, or -1 where never observed."""
    w, seen, missing = raw["packed"], raw["seen"], raw.get("missing")
    assert w is not None and seen is not None
    rows, tasks = w.shape
    out = np.empty((tasks, rows), dtype=np.int32)
    step = chunk_rows(w)
    for i in range(0, rows, step):
        j = min(rows, i + step)
        t = w[i:j].lt(0).to(torch.int32)
        n = seen[i:j].unsqueeze(1).expand_as(t)
        if missing is not None:
            n = n - missing[i:j]
        out[:, i:j] = torch.where(n > 0, t, -1).T.cpu().numpy()
    return out
