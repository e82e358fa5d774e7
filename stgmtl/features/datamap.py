"""STG-MTL's task feature: each task's data map, flattened (``kind="datamap"``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stgmtl._checks import fail
from stgmtl.datamaps import STATS, DataMaps

__all__ = ["datamap_features", "standardize_columns"]


def datamap_features(
    dm: DataMaps,
    *,
    snapshots: str | Sequence[int | str] = "all",
    stats: Sequence[str] = ("confidence", "variability"),
    samples: Any = None,
    nan_fill: float = 0.0,
) -> np.ndarray:
    """[stats] per sample per snapshot, flattened per task, float32 ``(T, D)``.

    For each chosen snapshot and sample the pair (confidence, variability), flattened per task
    in the order (snapshot, sample, stat), as STG-MTL reshapes its ``(T, epochs, N, 2)`` data map.

    Parameters
    ----------
    dm : DataMaps
    snapshots : "all", "final" or list of epochs and/or "final"
        ``"all"``: every snapshot, or the final state when there are none.
    stats : sequence of str
        Any of confidence, variability, correctness (default the first two).
    samples : array-like of int, optional
        Sample ids to use (default all).
    nan_fill : float
        Value for never-observed entries.

    Returns
    -------
    np.ndarray
        float32, C-contiguous ``(T, D)``.
    """
    if snapshots == "all":
        chosen: list[int | str] = list(dm.snapshot_epochs) or ["final"]
    elif snapshots == "final":
        chosen = ["final"]
    elif isinstance(snapshots, str):
        raise fail("snapshots", "'all', 'final' or a list of epochs", snapshots)
    else:
        chosen = list(snapshots)
    stats = list(stats)
    if not stats or any(s not in STATS for s in stats):
        raise fail("stats", f"a non-empty subset of {STATS}", stats)
    pos = None if samples is None else dm.sample_positions(samples)
    n = dm.num_samples if pos is None else len(pos)
    out = np.empty((dm.num_tasks, len(chosen), n, len(stats)), dtype=np.float32)
    for i, snap in enumerate(chosen):
        for j, name in enumerate(stats):
            src = dm.stat(name, snap)
            out[:, i, :, j] = src if pos is None else src[:, pos]
    flat = out.reshape(dm.num_tasks, -1)  # a view: (snapshot, sample, stat) per task
    np.nan_to_num(flat, copy=False, nan=nan_fill)
    return flat


def standardize_columns(out: np.ndarray) -> np.ndarray:
    """Z-score the columns of ``out`` in place (zero-spread columns are centred); returns it.

    float64 moments accumulated row by row, so temporaries hold one row only.
    """
    if not out.size:
        return out
    mean = np.zeros(out.shape[1])
    sq = np.zeros(out.shape[1])
    for row in out:
        r = row.astype(np.float64)
        mean += r
        sq += r * r
    mean /= out.shape[0]
    std = np.sqrt(np.maximum(sq / out.shape[0] - mean * mean, 0.0))
    std[std < 1e-12] = 1.0
    inv, shift = (1.0 / std).astype(out.dtype), mean.astype(out.dtype)
    for row in out:
        row -= shift
        row *= inv
    return out
