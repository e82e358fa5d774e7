"""Save and load data maps as parquet tables plus a checksummed JSON manifest.

Layout of a saved folder::

    manifest.json      format "stgmtl.datamaps", format_version, stgmtl version, task names,
                       shapes, dtypes, ddof, snapshot epochs and kind, task type, recording
                       mode, epochs, num_classes, state layout, the file of each table and
                       its sha256
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

from stgmtl._checks import check_choice, check_int, fail
from stgmtl._io import atomic_dir, read_manifest, read_parquet, verified_file, write_manifest
from stgmtl._version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "load_datamaps", "save_datamaps"]

FORMAT = "stgmtl.datamaps"
#: Version 2 (stgmtl 0.2) adds the manifest's own checksum; version 3 (stgmtl 0.3) the recorder's
#: ``state_layout``. Version 1 and 2 folders still load (as ``state_layout="float64"``, the only
#: layout before 0.3).
FORMAT_VERSION = 3
_STATS = ("confidence", "variability", "correctness")
_DTYPES = {
    "stats": ("float32", "float64"),
    "count": ("int32", "int64"),
    "targets": ("int8", "int16", "int32", "int64"),
}


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
            "state_layout": getattr(dm, "state_layout", "float64"),
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
        t, n, s = (check_int(k, manifest[k], low=0)
                   for k in ("num_tasks", "num_samples", "num_snapshots"))  # fmt: skip
        dt = manifest["dtypes"]
        if not isinstance(dt, dict):
            raise fail("dtypes", "an object with stats, count and targets", dt, error=TypeError)
        dtypes = {k: check_choice(f"dtypes.{k}", dt.get(k), _DTYPES[k]) for k in _DTYPES}
        names, epochs = manifest["task_names"], manifest["snapshot_epochs"]
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise fail("task_names", "a list of strings", names, error=TypeError)
        if not isinstance(epochs, list):
            raise fail("snapshot_epochs", "a list of ints", epochs, error=TypeError)
        for key in ("snapshot_kind", "ddof", "task_type", "recording", "epochs", "num_classes"):
            manifest[key]  # noqa: B018 - presence check
    except KeyError as exc:
        raise ValueError(f"path: {mf} is not a valid DataMaps manifest: no {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"path: {mf} is not a valid DataMaps manifest: {exc}") from exc
    if len(names) != t or len(epochs) != s:
        raise ValueError(f"path: {mf} is inconsistent (task names or snapshot epochs vs counts)")
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
    manifest = read_manifest(
        path, what="DataMaps", formats={FORMAT: (1, 2, FORMAT_VERSION)}, unsigned=[(FORMAT, 1)]
    )
    mf = path / "manifest.json"
    t, n, s, dtypes = _header(manifest, mf)
    version = manifest["format_version"]
    if version >= 3 and "state_layout" not in manifest:
        raise ValueError(f"path: {mf} is not a valid DataMaps manifest: no 'state_layout'")
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
        "state_layout": manifest["state_layout"] if version >= 3 else "float64",
        **arrays,
    }
