"""Save and load :class:`~stgmtl.datamaps.DataMaps` as parquet tables plus a JSON manifest.

Layout of a saved directory::

    manifest.json      format, stgmtl version, task names, shapes, dtypes, ddof, snapshot
                       epochs and kind, task type, recording mode, sha256 of each table
    final.parquet      one row per (task, sample), task-major: task (int32 position),
                       sample_id, confidence, variability, correctness, count, target
    snapshots.parquet  one row per (snapshot, task, sample): epoch, task, sample_id,
                       confidence, variability, correctness

The directory is written to a temporary sibling and renamed into place, so a crash never
leaves a half-written data map under ``path``. Values round-trip bitwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl.datamaps import DataMaps

__all__ = ["save_datamaps", "load_datamaps"]

FORMAT = "stgmtl.datamaps"
FORMAT_VERSION = 1
_STATS = ("confidence", "variability", "correctness")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version() -> str:
    try:
        from stgmtl import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def save_datamaps(dm: DataMaps, path: str | Path) -> Path:
    """Write ``dm`` to the directory ``path`` (replacing an earlier data-map directory).

    Raises
    ------
    FileExistsError
        If ``path`` exists and is neither an empty directory nor a saved data map.
    """
    path = Path(path)
    if path.exists() and not (
        path.is_dir() and (not any(path.iterdir()) or (path / "manifest.json").exists())
    ):
        raise FileExistsError(f"path: {path} exists and is not a saved DataMaps directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
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
            "stgmtl_version": _version(),
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
            "files": files,
            "sha256": {k: _sha256(tmp / v) for k, v in files.items()},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "d")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _read(path: Path, name: str, manifest: dict[str, Any]) -> pl.DataFrame:
    f = path / manifest["files"][name]
    if not f.exists():
        raise ValueError(f"path: {path} is missing {f.name} listed in its manifest")
    if _sha256(f) != manifest["sha256"][name]:
        raise ValueError(f"path: {f} is corrupt (its sha256 does not match the manifest)")
    try:
        return pl.read_parquet(f)
    except Exception as exc:  # polars raises several error types for bad files
        raise ValueError(f"path: cannot read {f}: {exc}") from exc


def _column(df: pl.DataFrame, name: str, dtype: str, shape: tuple[int, ...], f: str) -> np.ndarray:
    if name not in df.columns:
        raise ValueError(f"{f}: missing column {name!r}")
    arr = df.get_column(name).to_numpy()
    if str(arr.dtype) != dtype:
        raise ValueError(f"{f}: column {name!r} has dtype {arr.dtype}, manifest says {dtype}")
    return arr.reshape(shape)


def load_datamaps(path: str | Path) -> DataMaps:
    """Read a directory written by :func:`save_datamaps`.

    Raises
    ------
    FileNotFoundError
        If ``path`` or its manifest does not exist.
    ValueError
        If the manifest or a table is corrupt or does not match the manifest.
    """
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.exists():
        raise FileNotFoundError(f"path: {path} has no manifest.json (not a saved DataMaps)")
    try:
        manifest = json.loads(mf.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"format_version {manifest.get('format_version')}, expected {FORMAT_VERSION}"
            )
        t, n, s = manifest["num_tasks"], manifest["num_samples"], manifest["num_snapshots"]
        dtypes = manifest["dtypes"]
        names = manifest["task_names"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"path: {mf} is not a valid DataMaps manifest: {exc}") from exc
    if len(names) != t or len(manifest["snapshot_epochs"]) != s:
        raise ValueError(f"path: {mf} is inconsistent (task names or snapshot epochs vs counts)")
    fin = _read(path, "final", manifest)
    if fin.height != t * n:
        raise ValueError(f"path: final.parquet has {fin.height} rows, expected {t} x {n}")
    task = _column(fin, "task", "int32", (t, n), "final.parquet")
    sample = _column(fin, "sample_id", "int64", (t, n), "final.parquet")
    if t and (
        not (task == np.arange(t, dtype=np.int32)[:, None]).all() or not (sample == sample[0]).all()
    ):
        raise ValueError("path: final.parquet rows are not in (task, sample) order")
    arrays = {st: _column(fin, st, dtypes["stats"], (t, n), "final.parquet") for st in _STATS}
    arrays["count"] = _column(fin, "count", dtypes["count"], (t, n), "final.parquet")
    arrays["targets"] = _column(fin, "target", dtypes["targets"], (t, n), "final.parquet")
    sample_ids = sample[0].copy() if t else np.empty(0, np.int64)
    snaps: dict[str, np.ndarray] = {}
    if s:
        sn = _read(path, "snapshots", manifest)
        if sn.height != s * t * n:
            raise ValueError(f"path: snapshots.parquet has {sn.height} rows, expected {s}x{t}x{n}")
        ep = _column(sn, "epoch", "int32", (s, t * n), "snapshots.parquet")
        if not (ep == np.asarray(manifest["snapshot_epochs"], np.int32)[:, None]).all():
            raise ValueError("path: snapshots.parquet epochs do not match the manifest")
        for st in _STATS:
            snaps[f"snapshot_{st}"] = _column(
                sn, st, dtypes["stats"], (s, t, n), "snapshots.parquet"
            )
    return DataMaps(
        task_names=list(names),
        sample_ids=sample_ids,
        snapshot_epochs=[int(e) for e in manifest["snapshot_epochs"]],
        snapshot_kind=manifest["snapshot_kind"],
        ddof=int(manifest["ddof"]),
        task_type=manifest["task_type"],
        recording=manifest["recording"],
        epochs=int(manifest["epochs"]),
        num_classes=manifest["num_classes"],
        **arrays,
        **snaps,
    )
