"""Save and load data maps as parquet tables plus a checksummed JSON manifest.

Layout of a saved folder::

    manifest.json      format "stgmtl.datamaps", format_version, stgmtl version, task names,
                       shapes, dtypes, ddof, snapshot epochs and kind, task type, recording
                       mode, epochs, num_classes, the file of each table and its sha256
    final.parquet      one row per (task, sample), task-major: task (int32 position),
                       sample_id (int64), confidence, variability, correctness (float),
                       count (int32), target (int32)
    snapshots.parquet  one row per (snapshot, task, sample): epoch (int32), task, sample_id,
                       confidence, variability, correctness (only when there are snapshots)

The folder is written through :func:`stgmtl._io.atomic_dir` (a crash never leaves a half-written
data map under ``path``) and read back with every checksum verified. Values round-trip bitwise.
This module works on the fields of a ``DataMaps`` (duck-typed on save, a dict on load), so it
does not import the class.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl._io import atomic_dir, read_manifest, read_parquet, verified_file, write_manifest
from stgmtl._version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "load_datamaps", "save_datamaps"]

FORMAT = "stgmtl.datamaps"
FORMAT_VERSION = 1
_STATS = ("confidence", "variability", "correctness")


def save_datamaps(dm: Any, path: str | os.PathLike[str]) -> Path:
    """Write the data maps ``dm`` to the folder ``path`` (replacing an earlier saved one).

    Raises
    ------
    FileExistsError
        If ``path`` exists and is neither an empty folder nor a saved folder.
    """
    path = Path(path)
    with atomic_dir(path, what="DataMaps") as tmp:
        t, n = dm.num_tasks, dm.num_samples
        task = np.repeat(np.arange(t, dtype=np.int32), n)
        sample = np.tile(dm.sample_ids, t)
        final = {"task": task, "sample_id": sample}
        final.update({s: getattr(dm, s).ravel() for s in _STATS})
        final["count"] = dm.count.ravel()
        final["target"] = dm.targets.ravel()
        pl.DataFrame(final).write_parquet(tmp / "final.parquet", statistics=False)
        del final
        files = {"final": "final.parquet"}
        s = len(dm.snapshot_epochs)
        if s:
            snaps = {
                "epoch": np.repeat(np.asarray(dm.snapshot_epochs, dtype=np.int32), t * n),
                "task": np.tile(task, s),
                "sample_id": np.tile(sample, s),
            }
            snaps.update({st: getattr(dm, f"snapshot_{st}").ravel() for st in _STATS})
            pl.DataFrame(snaps).write_parquet(tmp / "snapshots.parquet", statistics=False)
            files["snapshots"] = "snapshots.parquet"
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "stgmtl_version": __version__,
            "task_names": list(dm.task_names),
            "num_tasks": t,
            "num_samples": n,
            "num_snapshots": s,
            "snapshot_epochs": [int(e) for e in dm.snapshot_epochs],
            "snapshot_kind": dm.snapshot_kind,
            "ddof": int(dm.ddof),
            "task_type": dm.task_type,
            "recording": dm.recording,
            "epochs": int(dm.epochs),
            "num_classes": dm.num_classes,
            "dtypes": {
                "stats": str(dm.confidence.dtype),
                "count": str(dm.count.dtype),
                "targets": str(dm.targets.dtype),
            },
        }
        write_manifest(tmp, manifest, files)
    return path


def _column(df: pl.DataFrame, name: str, dtype: str, shape: tuple[int, ...], f: str) -> np.ndarray:
    if name not in df.columns:
        raise ValueError(f"path: {f} has no column {name!r}")
    arr = df.get_column(name).to_numpy()
    if str(arr.dtype) != dtype:
        raise ValueError(f"path: {f} column {name!r} has dtype {arr.dtype}, manifest says {dtype}")
    return arr.reshape(shape)


def _header(manifest: dict[str, Any], mf: Path) -> tuple[int, int, int, dict[str, str]]:
    """Counts and dtypes of the manifest, type-checked."""
    try:
        t, n, s = (int(manifest[k]) for k in ("num_tasks", "num_samples", "num_snapshots"))
        dtypes = {k: str(manifest["dtypes"][k]) for k in ("stats", "count", "targets")}
        names, epochs = manifest["task_names"], manifest["snapshot_epochs"]
        for key in ("snapshot_kind", "ddof", "task_type", "recording", "epochs", "num_classes"):
            manifest[key]  # noqa: B018 - presence check
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"path: {mf} is not a valid DataMaps manifest: missing or bad {exc}"
        ) from exc
    if min(t, n, s) < 0 or not isinstance(names, list) or not isinstance(epochs, list):
        raise ValueError(f"path: {mf} is not a valid DataMaps manifest (counts or lists)")
    if len(names) != t or len(epochs) != s:
        raise ValueError(f"path: {mf} is inconsistent (task names or snapshot epochs vs counts)")
    if dtypes["stats"] not in ("float32", "float64"):
        raise ValueError(f"path: {mf} has stats dtype {dtypes['stats']!r}, expected a float")
    return t, n, s, dtypes


def load_datamaps(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a folder written by :func:`save_datamaps`; returns the ``DataMaps`` fields.

    Raises
    ------
    FileNotFoundError
        If ``path`` or its manifest does not exist.
    ValueError
        If the manifest or a table is damaged or does not match the manifest.
    """
    path = Path(path)
    manifest = read_manifest(path, what="DataMaps", formats={FORMAT: (FORMAT_VERSION,)})
    mf = path / "manifest.json"
    t, n, s, dtypes = _header(manifest, mf)
    f = verified_file(path, manifest, "final")
    fin = read_parquet(f)
    if fin.height != t * n:
        raise ValueError(f"path: {f} has {fin.height} rows, expected {t} x {n}")
    task = _column(fin, "task", "int32", (t, n), f.name)
    sample = _column(fin, "sample_id", "int64", (t, n), f.name)
    if t and (
        not (task == np.arange(t, dtype=np.int32)[:, None]).all() or not (sample == sample[0]).all()
    ):
        raise ValueError(f"path: {f} rows are not in (task, sample) order")
    arrays = {st: _column(fin, st, dtypes["stats"], (t, n), f.name) for st in _STATS}
    arrays["count"] = _column(fin, "count", dtypes["count"], (t, n), f.name)
    arrays["targets"] = _column(fin, "target", dtypes["targets"], (t, n), f.name)
    sample_ids = sample[0].copy() if t else np.empty(0, np.int64)
    if s:
        g = verified_file(path, manifest, "snapshots")
        sn = read_parquet(g)
        if sn.height != s * t * n:
            raise ValueError(f"path: {g} has {sn.height} rows, expected {s} x {t} x {n}")
        ep = _column(sn, "epoch", "int32", (s, t * n), g.name)
        if not (ep == np.asarray(manifest["snapshot_epochs"], np.int32)[:, None]).all():
            raise ValueError(f"path: {g} epochs do not match the manifest")
        for st in _STATS:
            arrays[f"snapshot_{st}"] = _column(sn, st, dtypes["stats"], (s, t, n), g.name)
    return {
        "task_names": list(manifest["task_names"]),
        "sample_ids": sample_ids,
        "snapshot_epochs": list(manifest["snapshot_epochs"]),
        "snapshot_kind": manifest["snapshot_kind"],
        "ddof": manifest["ddof"],
        "task_type": manifest["task_type"],
        "recording": manifest["recording"],
        "epochs": manifest["epochs"],
        "num_classes": manifest["num_classes"],
        **arrays,
    }
