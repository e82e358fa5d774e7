"""Export to and import from Dataset Cartography's training-dynamics JSONL layout.

Dataset Cartography (Swayamdipta et al., 2020) writes, per epoch ``e`` (0-based), a file
``training_dynamics/dynamics_epoch_{e}.jsonl`` with one line per example::

    {"guid": 17, "logits_epoch_0": [-1.2, 0.8], "gold": 1}

For several tasks we use one such model directory per task: ``root/<task_name>/...``.

What is preserved, and what is not
----------------------------------
* Export needs per-epoch snapshots (``snapshot_kind="epoch"``): each snapshot epoch ``e``
  (1-based in stgmtl) becomes ``dynamics_epoch_{e-1}.jsonl``. The written logits are chosen so
  that ``softmax(logits)[gold]`` equals that epoch's confidence (mean true-label probability,
  clipped to ``[1e-15, 1 - 1e-15]``); the wrong classes share the rest equally. So the
  true-label probability per epoch and the gold label survive, and with one observation per
  sample and epoch Cartography's confidence and variability are reproduced. Not preserved:
  the model's real logits, how probability spreads over wrong classes, correctness where it
  disagrees with ``argmax`` of the written logits, epochs without a snapshot, samples never
  observed (skipped), counts beyond one per epoch.
* Import computes, per task and sample, the softmax true-label probability and
  ``argmax == gold`` per epoch, and from them confidence, variability (``ddof``, default 0 as
  in Cartography) and correctness, plus per-epoch snapshots. ``guid`` must be integers.
  Two-class tasks become ``task_type="binary"``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl.datamaps import DataMaps

__all__ = ["export_cartography", "import_cartography"]

_EPOCH_FILE = re.compile(r"dynamics_epoch_(\d+)\.jsonl$")
_CLIP = 1e-15


def export_cartography(dm: DataMaps, path: str | Path) -> Path:
    """Write ``dm``'s per-epoch snapshots as Cartography training dynamics under ``path``."""
    if dm.snapshot_kind != "epoch" or not dm.snapshot_epochs:
        raise ValueError(
            "dm: Cartography export needs per-epoch snapshots (record with "
            f"snapshot_kind='epoch' and snapshot_epochs); got kind {dm.snapshot_kind!r} "
            f"with epochs {dm.snapshot_epochs}"
        )
    c = 2 if dm.task_type == "binary" else int(dm.num_classes or dm.targets.max() + 1)
    root = Path(path)
    snap_conf = dm.snapshot_confidence
    assert snap_conf is not None
    for t, name in enumerate(dm.task_names):
        folder = root / name / "training_dynamics"
        folder.mkdir(parents=True, exist_ok=True)
        gold = dm.targets[t].astype(np.int64)
        for s, epoch in enumerate(dm.snapshot_epochs):
            p = snap_conf[s, t]
            keep = (gold >= 0) & np.isfinite(p)
            p = np.clip(p[keep], _CLIP, 1 - _CLIP)
            g = gold[keep]
            logits = np.repeat(np.log((1 - p) / (c - 1))[:, None], c, axis=1)
            logits[np.arange(len(g)), g] = np.log(p)
            key = f"logits_epoch_{epoch - 1}"
            frame = pl.DataFrame(
                {"guid": dm.sample_ids[keep], key: logits.tolist(), "gold": g},
            )
            out = folder / f"dynamics_epoch_{epoch - 1}.jsonl"
            tmp = out.with_suffix(".jsonl.tmp")
            frame.write_ndjson(tmp)
            tmp.replace(out)
    return root


def _task_dirs(root: Path) -> list[tuple[str, Path]]:
    def dyn(d: Path) -> Path | None:
        for cand in (d / "training_dynamics", d):
            if cand.is_dir() and any(_EPOCH_FILE.search(f.name) for f in cand.iterdir()):
                return cand
        return None

    if not root.is_dir():
        raise FileNotFoundError(f"path: {root} is not a directory")
    single = dyn(root)
    if single is not None:
        return [(root.name or "task_0", single)]
    tasks = [(d.name, dyn(d)) for d in sorted(root.iterdir()) if d.is_dir()]
    found = [(n, d) for n, d in tasks if d is not None]
    if not found:
        raise ValueError(f"path: no dynamics_epoch_*.jsonl files under {root}")
    return found  # type: ignore[return-value]


def _read_epoch(f: Path, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    try:
        df = pl.read_ndjson(f)
    except Exception as exc:
        raise ValueError(f"path: cannot read {f}: {exc}") from exc
    key = f"logits_epoch_{epoch}"
    for col in ("guid", key, "gold"):
        if col not in df.columns:
            raise ValueError(f"path: {f} has no {col!r} field")
    try:
        guid = df.get_column("guid").cast(pl.Int64).to_numpy()
    except Exception as exc:
        raise ValueError(f"path: {f}: guid must be integers ({exc})") from exc
    logits = np.asarray(df.get_column(key).to_list(), dtype=np.float64)
    gold = df.get_column("gold").cast(pl.Int64).to_numpy()
    if logits.ndim != 2 or (len(gold) and (gold.min() < 0 or gold.max() >= logits.shape[1])):
        raise ValueError(f"path: {f}: logits must be lists of equal length covering gold")
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    rows = np.arange(len(gold))
    return guid, np.stack([prob[rows, gold], logits.argmax(axis=1) == gold]), gold, logits.shape[1]


def import_cartography(path: str | Path, *, ddof: int = 0) -> DataMaps:
    """Read Cartography training dynamics (one model directory, or one per task) into DataMaps."""
    if ddof not in (0, 1):
        raise ValueError(f"ddof: expected 0 or 1, got {ddof!r}")
    tasks = _task_dirs(Path(path))
    per_task: list[dict[int, Any]] = []
    all_epochs: set[int] = set()
    classes = 0
    for _, d in tasks:
        files = {int(m.group(1)): f for f in d.iterdir() if (m := _EPOCH_FILE.search(f.name))}
        data = {}
        for e in sorted(files):
            guid, vals, gold, c = _read_epoch(files[e], e)
            data[e] = (guid, vals, gold)
            classes = max(classes, c)
        per_task.append(data)
        all_epochs |= set(files)
    ids = np.unique(np.concatenate([g for data in per_task for g, _, _ in data.values()]))
    epochs = sorted(all_epochs)
    t, n, s = len(tasks), len(ids), len(epochs)
    prob = np.full((s, t, n), np.nan)
    right = np.full((s, t, n), np.nan)
    targets = np.full((t, n), -1, dtype=np.int32)
    for ti, data in enumerate(per_task):
        for e, (guid, vals, gold) in data.items():
            pos = np.searchsorted(ids, guid)
            si = epochs.index(e)
            prob[si, ti, pos], right[si, ti, pos] = vals[0], vals[1]
            targets[ti, pos] = gold
    seen = np.isfinite(prob)
    count = seen.sum(axis=0).astype(np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.nansum(prob, axis=0) / count
        dev = np.where(seen, prob - conf, 0.0)
        var = np.sqrt((dev**2).sum(axis=0) / np.maximum(count - ddof, 1))
        var[count == 0] = np.nan
        corr = np.nansum(right, axis=0) / count
    zeros = np.where(seen, 0.0, np.nan)
    binary = classes <= 2
    return DataMaps(
        task_names=[name for name, _ in tasks],
        sample_ids=ids.astype(np.int64),
        confidence=conf,
        variability=var,
        correctness=corr,
        count=count,
        targets=targets,
        snapshot_epochs=[e + 1 for e in epochs],
        snapshot_confidence=prob,
        snapshot_variability=zeros,
        snapshot_correctness=right,
        snapshot_kind="epoch",
        ddof=ddof,
        task_type="binary" if binary else "multiclass",
        recording="cartography",
        epochs=max(epochs) + 1 if epochs else 0,
        num_classes=None if binary else classes,
    )
