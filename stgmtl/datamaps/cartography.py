"""Export to and import from Dataset Cartography's training-dynamics JSONL layout.

Dataset Cartography (Swayamdipta et al., 2020) writes, per epoch ``e`` (0-based), a file
``training_dynamics/dynamics_epoch_{e}.jsonl`` with one line per example::

    {"guid": 17, "logits_epoch_0": [-1.2, 0.8], "gold": 1}

For several tasks we use one such model folder per task: ``root/<task_name>/...``.

What Cartography's own reader accepts
-------------------------------------
Its ``read_training_dynamics`` counts the files of the ``training_dynamics`` folder (any file),
requires ``dynamics_epoch_0.jsonl`` to ``dynamics_epoch_{E-1}.jsonl`` to exist, reads them in
order, takes each example's gold label from epoch 0 and asserts that no example appears first
after epoch 0; its metrics then take each example's list of per-epoch logits as aligned by
epoch. So an export must hold nothing but files numbered ``0 .. E-1`` without gaps and give
every example exactly once in every file.

What is preserved, and what is not
----------------------------------
* Export needs per-epoch snapshots (``snapshot_kind="epoch"``). The ``S`` snapshot epochs become
  ``dynamics_epoch_0`` .. ``dynamics_epoch_{S-1}`` in order (renumbered: with snapshots at
  epochs 2..5, epoch 2 is file 0). Per task, only samples observed in *every* snapshot epoch are
  written: a ``DataLoader(shuffle=True, drop_last=True)`` drops a different remainder each
  epoch, and a sample missing from one epoch would break Cartography's reader, so such samples
  are dropped (with the never-observed ones). The written logits are chosen so that
  ``softmax(logits)[gold]`` equals that epoch's confidence (mean true-label probability,
  clipped to ``[1e-15, 1 - 1e-15]``); the wrong classes share the rest equally. So the
  true-label probability per epoch and the gold label survive, and with one observation per
  sample and epoch Cartography's confidence and variability are reproduced. Not preserved: the
  model's real logits, how probability spreads over wrong classes, correctness where it
  disagrees with ``argmax`` of the written logits, the original epoch numbers, epochs without a
  snapshot, samples not observed in every snapshot epoch, counts beyond one per epoch.
* Import computes, per task and sample, the softmax true-label probability and
  ``argmax == gold`` per epoch, and from them confidence, variability (``ddof``, default 0 as
  in Cartography; the same formula as the recorder, :mod:`stgmtl.datamaps.stats`) and
  correctness, plus per-epoch snapshots. ``guid`` must be integers. Two-class tasks become
  ``task_type="binary"``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import check_choice, fail
from stgmtl._io import atomic_dir
from stgmtl.datamaps.stats import moments_to_stats

__all__ = ["export_cartography", "import_cartography"]

_EPOCH_FILE = re.compile(r"dynamics_epoch_(\d+)\.jsonl$")
_CLIP = 1e-15


def _is_dynamics_folder(folder: Path) -> bool:
    """A folder that holds only ``dynamics_epoch_*.jsonl`` files (an earlier export)."""
    return folder.is_dir() and all(
        f.is_file() and _EPOCH_FILE.fullmatch(f.name) for f in folder.iterdir()
    )


def _check_folder_name(name: str) -> None:
    if name in ("", ".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
        raise fail("dm.task_names", "names usable as folder names (no '/', '\\', '..')", name)


def export_cartography(dm: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``dm``'s per-epoch snapshots as Cartography training dynamics under ``path``.

    Each task's ``training_dynamics`` folder is written atomically and holds exactly the files
    ``dynamics_epoch_0.jsonl`` .. ``dynamics_epoch_{S-1}.jsonl`` (Cartography's reader counts
    the files of the folder): an earlier export there is replaced, stale epochs included.
    Dropped, as the module docstring says: samples not observed in every snapshot epoch (and
    never-observed ones), the original epoch numbers, epochs without a snapshot.

    Parameters
    ----------
    dm : DataMaps
        Data maps with per-epoch snapshots.
    path : path
        Root folder; task ``t`` goes to ``path/<task name>/training_dynamics/``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        Without per-epoch snapshots, for a task with no sample observed in every snapshot
        epoch, or a task name that is not a plain folder name; nothing is written then.
    FileExistsError
        If a task's ``training_dynamics`` folder holds other files than an earlier export.
    """
    if dm.snapshot_kind != "epoch" or not dm.snapshot_epochs:
        raise fail(
            "dm",
            "data maps with per-epoch snapshots (record with snapshot_kind='epoch' and "
            "snapshot_epochs)",
            f"kind {dm.snapshot_kind!r} with epochs {dm.snapshot_epochs}",
        )
    c = 2 if dm.task_type == "binary" else max(2, int(dm.num_classes or dm.targets.max() + 1))
    root = Path(path)
    snap_conf = np.asarray(dm.snapshot_confidence)
    kept = []
    for t, name in enumerate(dm.task_names):
        _check_folder_name(name)
        keep = (dm.targets[t] >= 0) & np.isfinite(snap_conf[:, t]).all(axis=0)
        if not keep.any():
            raise fail(
                "dm",
                f"task {name!r} with samples observed in every snapshot epoch {dm.snapshot_epochs}",
                "none",
            )
        kept.append(keep)
    for t, name in enumerate(dm.task_names):
        keep = kept[t]
        gold = dm.targets[t, keep].astype(np.int64)
        folder = root / name / "training_dynamics"
        with atomic_dir(folder, what="Cartography export", is_saved=_is_dynamics_folder) as tmp:
            for s in range(len(dm.snapshot_epochs)):
                p = np.clip(snap_conf[s, t, keep], _CLIP, 1 - _CLIP)
                logits = np.repeat(np.log((1 - p) / (c - 1))[:, None], c, axis=1)
                logits[np.arange(len(gold)), gold] = np.log(p)
                frame = pl.DataFrame(
                    {"guid": dm.sample_ids[keep], f"logits_epoch_{s}": logits.tolist(),
                     "gold": gold},
                )  # fmt: skip
                frame.write_ndjson(tmp / f"dynamics_epoch_{s}.jsonl")
    return root


def _task_dirs(root: Path) -> list[tuple[str, Path]]:
    def dyn(d: Path) -> Path | None:
        for cand in (d / "training_dynamics", d):
            if cand.is_dir() and any(_EPOCH_FILE.search(f.name) for f in cand.iterdir()):
                return cand
        return None

    if not root.is_dir():
        raise FileNotFoundError(f"path: expected a folder, got {str(root)!r} (not a folder)")
    single = dyn(root)
    if single is not None:
        return [(root.name or "task_0", single)]
    found = [(d.name, dd) for d in sorted(root.iterdir()) if d.is_dir() and (dd := dyn(d))]
    if not found:
        raise fail("path", "a folder with dynamics_epoch_*.jsonl files", str(root))
    return found


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
        raise ValueError(f"path: {f}: expected integer guids ({exc})") from exc
    logits = np.asarray(df.get_column(key).to_list(), dtype=np.float64)
    gold = df.get_column("gold").cast(pl.Int64).to_numpy()
    if logits.ndim != 2 or (len(gold) and (gold.min() < 0 or gold.max() >= logits.shape[1])):
        raise ValueError(f"path: {f}: expected logits as lists of equal length covering gold")
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    rows = np.arange(len(gold))
    return guid, np.stack([prob[rows, gold], logits.argmax(axis=1) == gold]), gold, logits.shape[1]


def import_cartography(path: str | os.PathLike[str], *, ddof: int = 0) -> dict[str, Any]:
    """Read Cartography training dynamics (one model folder, or one per task).

    Returns
    -------
    dict
        The fields of a :class:`~stgmtl.DataMaps` (``DataMaps.from_cartography`` builds it).
    """
    check_choice("ddof", ddof, (0, 1))
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
    p0 = np.where(seen, prob, 0.0)
    conf, var, corr = moments_to_stats(
        p0.sum(axis=0), (p0 * p0).sum(axis=0), np.where(seen, right, 0.0).sum(axis=0), count, ddof
    )
    binary = classes <= 2
    return {
        "task_names": [name for name, _ in tasks],
        "sample_ids": ids.astype(np.int64),
        "confidence": conf,
        "variability": var,
        "correctness": corr,
        "count": count,
        "targets": targets,
        "snapshot_epochs": [e + 1 for e in epochs],
        "snapshot_confidence": prob,
        "snapshot_variability": np.where(seen, 0.0, np.nan),
        "snapshot_correctness": right,
        "snapshot_kind": "epoch",
        "ddof": ddof,
        "task_type": "binary" if binary else "multiclass",
        "recording": "cartography",
        "epochs": max(epochs) + 1 if epochs else 0,
        "num_classes": None if binary else classes,
    }
