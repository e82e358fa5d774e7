"""Save and load task-affinity matrices: parquet tables plus a checksummed JSON manifest.

Layout of a saved folder::

    manifest.json      format "stgmtl.affinity", format_version 2, stgmtl version, signal,
                       orientation, task names, num_tasks, snapshot epochs, meta (the
                       recording's settings), has_counts, the files and their sha256, and the
                       sha256 of the manifest's own text (version 1 had none; it still loads)
    values.parquet     T rows (sources, in task order): "task" (str), then "to_0" ..
                       "to_{T-1}" (float64): values[i, j] in row i, column "to_j"
    counts.parquet     the same layout, int64 (when has_counts)
    snapshots.parquet  S * T rows: "epoch" (int32), "task", "to_0" .. "to_{T-1}" (float64),
                       snapshot by snapshot (when there are snapshots)

Written through :func:`stgmtl._io.atomic_dir`; values round-trip bitwise. This module works on
the fields of a ``TaskAffinity`` (duck-typed on save, a dict on load).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import check_bool, check_int, fail
from stgmtl._io import atomic_dir, read_manifest, read_parquet, verified_file, write_manifest
from stgmtl._version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "load_affinity", "save_affinity"]

FORMAT = "stgmtl.affinity"
FORMAT_VERSION = 2  # 2: the manifest carries its own checksum


def _frame(names: list[str], m: np.ndarray, epoch: int | None = None) -> pl.DataFrame:
    cols: dict[str, Any] = {} if epoch is None else {"epoch": np.full(len(names), epoch, np.int32)}
    cols["task"] = names
    cols.update({f"to_{j}": m[:, j] for j in range(m.shape[1])})
    return pl.DataFrame(cols)


def save_affinity(aff: Any, path: str | os.PathLike[str]) -> Path:
    """Write the affinity ``aff`` to folder ``path`` (replacing an earlier saved one)."""
    path = Path(path)
    names = list(aff.task_names)
    with atomic_dir(path, what="TaskAffinity") as tmp:
        files = {"values": "values.parquet"}
        _frame(names, aff.values).write_parquet(tmp / files["values"])
        if aff.counts is not None:
            files["counts"] = "counts.parquet"
            _frame(names, aff.counts).write_parquet(tmp / files["counts"])
        if len(aff.snapshot_epochs):
            files["snapshots"] = "snapshots.parquet"
            pl.concat(
                [
                    _frame(names, m, e)
                    for e, m in zip(aff.snapshot_epochs, aff.snapshots, strict=True)
                ]
            ).write_parquet(tmp / files["snapshots"])
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "stgmtl_version": __version__,
            "signal": aff.signal,
            "orientation": aff.orientation,
            "task_names": names,
            "num_tasks": len(names),
            "snapshot_epochs": [int(e) for e in aff.snapshot_epochs],
            "has_counts": aff.counts is not None,
            "meta": aff.meta,
        }
        write_manifest(tmp, manifest, files)
    return path


def _matrix(df: pl.DataFrame, t: int, dtype: str, f: Path) -> np.ndarray:
    cols = [f"to_{j}" for j in range(t)]
    missing = [c for c in ["task", *cols] if c not in df.columns]
    if missing:
        raise ValueError(f"path: {f} lacks columns {missing[:5]}")
    m = df.select(cols).to_numpy()
    if str(m.dtype) != dtype:
        raise ValueError(f"path: {f} holds {m.dtype}, expected {dtype}")
    return m


def load_affinity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a folder written by :func:`save_affinity`; returns the ``TaskAffinity`` fields.

    Raises
    ------
    FileNotFoundError
        If ``path`` or its manifest does not exist.
    ValueError
        If a file is damaged, fails its checksum, or disagrees with the manifest.
    """
    path = Path(path)
    manifest = read_manifest(
        path, what="TaskAffinity", formats={FORMAT: (1, FORMAT_VERSION)}, unsigned=[(FORMAT, 1)]
    )
    mf = path / "manifest.json"
    try:  # every field as the constructor takes it: no coercion of strings or floats
        names = manifest["task_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise fail("task_names", "a list of strings", names, error=TypeError)
        t = check_int("num_tasks", manifest["num_tasks"], low=1)
        epochs = manifest["snapshot_epochs"]
        if not isinstance(epochs, list) or not all(
            isinstance(e, int) and not isinstance(e, bool) for e in epochs
        ):
            raise fail("snapshot_epochs", "a list of ints", epochs, error=TypeError)
        fields = {k: manifest[k] for k in ("signal", "orientation", "meta")}
        has_counts = check_bool("has_counts", manifest["has_counts"])
    except KeyError as exc:
        raise ValueError(f"path: {mf} is not a valid TaskAffinity manifest: no {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"path: {mf} is not a valid TaskAffinity manifest: {exc}") from exc
    if len(names) != t:
        raise ValueError(f"path: {mf} lists {len(names)} task names for num_tasks={t}")
    f = verified_file(path, manifest, "values")
    df = read_parquet(f)
    if df.height != t or df["task"].to_list() != names:
        raise ValueError(f"path: {f} rows do not match the manifest's tasks")
    out: dict[str, Any] = {"task_names": names, "values": _matrix(df, t, "float64", f), **fields}
    if has_counts:
        g = verified_file(path, manifest, "counts")
        out["counts"] = _matrix(read_parquet(g), t, "int64", g)
    out["snapshot_epochs"] = epochs
    if epochs:
        g = verified_file(path, manifest, "snapshots")
        sn = read_parquet(g)
        if sn.height != len(epochs) * t or "epoch" not in sn.columns:
            raise ValueError(f"path: {g} has {sn.height} rows, expected {len(epochs)} x {t}")
        if sn["epoch"].to_list() != [e for e in epochs for _ in range(t)]:
            raise ValueError(f"path: {g} epochs do not match the manifest")
        out["snapshots"] = _matrix(sn, t, "float64", g).reshape(len(epochs), t, t)
    return out
