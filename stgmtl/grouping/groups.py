"""The result of grouping: :class:`TaskGroups` (memberships, labels, groups; verified save/load).

Saved layout (format ``stgmtl.TaskGroups``, version 3)::

    manifest.json        format, format_version, n_groups, num_tasks, m, method, inertia,
                         reduction, refined, has_embedding, the files and their sha256, and
                         the sha256 of the manifest's own content
    memberships.parquet  one row per task: task (str), label (int64), membership_0 ..
                         membership_{k-1} (float64)
    centroids.parquet    (k, d) float64 as columns dim_0 .. dim_{d-1}
    embedding.parquet    (T, d) float32 as columns dim_0 .. (when ``has_embedding``)

Folders written by earlier versions still load: version 2 (no manifest checksum) and format
``stgmtl.TaskGroups/1`` (no checksums at all). Every manifest field is validated as the
constructor validates its argument (no coercion: ``"m": "1.07"`` or ``"refined": "no"`` is
refused), and any problem is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import check_bool, check_choice, check_float, check_int, check_names, fail
from stgmtl._io import atomic_dir, read_manifest, read_parquet, verified_file, write_manifest

__all__ = ["TaskGroups"]

_FORMAT = "stgmtl.TaskGroups"
_FORMAT_VERSION = 3  # 3: the manifest carries its own checksum
_FORMAT_V1 = "stgmtl.TaskGroups/1"
_METHODS = ("kmeans", "fcm", "hard")
_REDUCTIONS = ("none", "pca", "rpca", "projection")


@dataclass
class TaskGroups:
    """Soft assignment of ``T`` tasks to ``k`` groups.

    Attributes
    ----------
    task_names : list[str]
    membership : np.ndarray
        ``(T, k)`` float64, rows sum to 1.
    centroids : np.ndarray
        ``(k, d)`` float64 group centres in the reduced feature space.
    embedding : np.ndarray or None
        ``(T, d)`` float32 reduced task features the groups were found in.
    m : float
        Fuzzifier used for the memberships.
    method : str
        ``"kmeans"``, ``"fcm"`` or ``"hard"``.
    inertia : float
        Sum of squared distances of tasks to their nearest centroid (reduced space).
    reduction : str
        Reduction used: ``"none"``, ``"pca"``, ``"rpca"`` or ``"projection"``.
    refined : bool
        Whether k-means was refined in the full feature space (then ``membership``, ``labels``
        and ``inertia`` come from full-space distances, and ``centroids`` are the group means of
        ``embedding``).
    labels : np.ndarray
        ``(T,)`` int64, ``argmax`` of each membership row (derived).
    groups : list[list[str]]
        Task names per group, by label (derived; a group can be empty).
    """

    task_names: list[str]
    membership: np.ndarray
    centroids: np.ndarray
    embedding: np.ndarray | None = None
    m: float = 1.07
    method: str = "kmeans"
    inertia: float = float("nan")
    reduction: str = "none"
    refined: bool = False
    labels: np.ndarray = field(init=False, repr=False)
    groups: list[list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.membership = np.asarray(self.membership, dtype=np.float64)
        if self.membership.ndim != 2 or min(self.membership.shape) < 1:
            raise fail("membership", "a (T, k) matrix with T, k >= 1", self.membership.shape)
        t, k = self.membership.shape
        self.task_names = check_names("task_names", self.task_names, t)
        w = self.membership
        if not np.isfinite(w).all() or (w < 0).any() or not np.allclose(w.sum(1), 1.0, atol=1e-6):
            raise fail("membership", "finite, non-negative rows summing to 1", "other values")
        self.centroids = np.asarray(self.centroids, dtype=np.float64)
        if self.centroids.ndim != 2 or self.centroids.shape[0] != k:
            raise fail("centroids", f"a ({k}, d) matrix", self.centroids.shape)
        if self.embedding is not None:
            self.embedding = np.asarray(self.embedding)
            if self.embedding.shape != (t, self.centroids.shape[1]):
                raise fail("embedding", f"shape ({t}, {self.centroids.shape[1]})",
                           self.embedding.shape)  # fmt: skip
        self.m = check_float("m", self.m, low=1.0, low_open=True)
        check_choice("method", self.method, _METHODS)
        self.inertia = _check_inertia(self.inertia)
        check_choice("reduction", self.reduction, _REDUCTIONS)
        self.refined = check_bool("refined", self.refined)
        self.labels = np.argmax(self.membership, axis=1).astype(np.int64)
        self.groups = [
            [self.task_names[i] for i in np.flatnonzero(self.labels == j)] for j in range(k)
        ]

    @property
    def n_groups(self) -> int:
        """Number of groups ``k``."""
        return int(self.membership.shape[1])

    @property
    def num_tasks(self) -> int:
        """Number of tasks ``T``."""
        return int(self.membership.shape[0])

    def to_frame(self) -> pl.DataFrame:
        """One row per task: ``task``, ``label``, ``membership_0`` ... ``membership_{k-1}``."""
        cols: dict[str, Any] = {"task": self.task_names, "label": self.labels}
        for j in range(self.n_groups):
            cols[f"membership_{j}"] = self.membership[:, j]
        return pl.DataFrame(cols)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to folder ``path`` (parquet tables + checksummed ``manifest.json``), atomically.

        The folder is built under a temporary name and swapped into place; an existing
        ``TaskGroups`` folder at ``path`` is replaced, and stays intact if the save dies.
        """
        path = Path(path)
        with atomic_dir(path, what="TaskGroups") as tmp:
            files = {"memberships": "memberships.parquet", "centroids": "centroids.parquet"}
            self.to_frame().write_parquet(tmp / files["memberships"])
            _matrix_frame(self.centroids).write_parquet(tmp / files["centroids"])
            if self.embedding is not None:
                files["embedding"] = "embedding.parquet"
                _matrix_frame(self.embedding).write_parquet(tmp / files["embedding"])
            meta = {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "n_groups": self.n_groups,
                "num_tasks": self.num_tasks,
                "m": self.m,
                "method": self.method,
                "inertia": self.inertia,
                "reduction": self.reduction,
                "refined": self.refined,
                "has_embedding": self.embedding is not None,
            }
            write_manifest(tmp, meta, files)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaskGroups:
        """Read a folder written by :meth:`save` (any format version).

        Raises
        ------
        FileNotFoundError
            If ``path`` or its manifest does not exist.
        ValueError
            If a file is damaged, fails its checksum or disagrees with the manifest; the message
            names the file.
        """
        path = Path(path)
        meta = read_manifest(
            path,
            what="TaskGroups",
            formats={_FORMAT: (2, _FORMAT_VERSION), _FORMAT_V1: None},
            unsigned=[(_FORMAT, 2), (_FORMAT_V1, None)],
        )
        mf = path / "manifest.json"
        if meta["format"] == _FORMAT_V1:  # no file list or checksums in version 1
            meta = {**meta, "n_groups": meta.get("k"), "files": _V1_FILES}
        try:
            k = check_int("n_groups", meta["n_groups"], low=1)
            t = check_int("num_tasks", meta["num_tasks"], low=1)
            has_embedding = check_bool("has_embedding", meta["has_embedding"])
            inertia = meta["inertia"]
            scalars = {"m": meta["m"], "method": meta["method"], "reduction": meta["reduction"],
                       "refined": meta.get("refined", False),
                       "inertia": float("nan") if inertia is None else inertia}  # fmt: skip
        except KeyError as exc:
            raise ValueError(f"path: {mf} is not a valid TaskGroups manifest: no {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path: {mf} is not a valid TaskGroups manifest: {exc}") from exc
        signed = meta["format"] != _FORMAT_V1
        f = verified_file(path, meta, "memberships", checksums=signed)
        frame = read_parquet(f)
        cols = ["task"] + [f"membership_{j}" for j in range(k)]
        n_cols = sum(c.startswith("membership_") for c in frame.columns)
        if frame.height != t or n_cols != k or any(c not in frame.columns for c in cols):
            raise ValueError(f"path: {f} does not hold {t} tasks x {k} memberships")
        emb = None
        if has_embedding:
            emb = read_parquet(verified_file(path, meta, "embedding", checksums=signed)).to_numpy()
        centroids = read_parquet(verified_file(path, meta, "centroids", checksums=signed))
        try:
            return cls(
                task_names=frame["task"].to_list(),
                membership=frame.select(cols[1:]).to_numpy(),
                centroids=centroids.to_numpy(),
                embedding=emb,
                **scalars,  # type: ignore[arg-type]
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path: {mf} is invalid or disagrees with its tables: {exc}") from exc


_V1_FILES = {
    "memberships": "memberships.parquet",
    "centroids": "centroids.parquet",
    "embedding": "embedding.parquet",
}


def _check_inertia(value: Any) -> float:
    """A finite number >= 0, or NaN (unknown)."""
    if isinstance(value, float | np.floating) and np.isnan(value):
        return float("nan")
    return check_float("inertia", value, low=0.0)


def _matrix_frame(a: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({f"dim_{j}": a[:, j] for j in range(a.shape[1])})
