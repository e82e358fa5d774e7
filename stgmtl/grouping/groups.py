"""The result of grouping: :class:`TaskGroups` (memberships, labels, groups; save/load; plots)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

_FORMAT = "stgmtl.TaskGroups/1"


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
        self.task_names = [str(n) for n in self.task_names]
        self.membership = np.asarray(self.membership, dtype=np.float64)
        self.centroids = np.asarray(self.centroids, dtype=np.float64)
        t, k = self.membership.shape
        if len(self.task_names) != t:
            raise ValueError(f"{len(self.task_names)} task names for {t} membership rows")
        self.labels = np.argmax(self.membership, axis=1).astype(np.int64)
        self.groups = [
            [self.task_names[i] for i in np.flatnonzero(self.labels == j)] for j in range(k)
        ]

    @property
    def k(self) -> int:
        """Number of groups."""
        return int(self.membership.shape[1])

    @property
    def num_tasks(self) -> int:
        """Number of tasks ``T``."""
        return int(self.membership.shape[0])

    def to_frame(self) -> pl.DataFrame:
        """One row per task: ``task``, ``label``, ``membership_0`` ... ``membership_{k-1}``."""
        cols: dict[str, Any] = {"task": self.task_names, "label": self.labels}
        for j in range(self.k):
            cols[f"membership_{j}"] = self.membership[:, j]
        return pl.DataFrame(cols)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to directory ``path`` (parquet tables + ``manifest.json``), atomically.

        The directory is built under a temporary name and renamed into place; an existing
        ``TaskGroups`` directory at ``path`` is replaced.
        """
        path = Path(path)
        if path.exists() and not (path / "manifest.json").is_file():
            raise FileExistsError(f"{path} exists and is not a saved TaskGroups directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            self.to_frame().write_parquet(tmp / "memberships.parquet")
            _matrix_frame(self.centroids).write_parquet(tmp / "centroids.parquet")
            if self.embedding is not None:
                _matrix_frame(self.embedding).write_parquet(tmp / "embedding.parquet")
            meta = {
                "format": _FORMAT,
                "k": self.k,
                "num_tasks": self.num_tasks,
                "m": self.m,
                "method": self.method,
                "inertia": self.inertia,
                "reduction": self.reduction,
                "refined": self.refined,
                "has_embedding": self.embedding is not None,
            }
            (tmp / "manifest.json").write_text(json.dumps(meta, indent=2))
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaskGroups:
        """Read a directory written by :meth:`save`."""
        path = Path(path)
        manifest = path / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} not found; is {path} a saved TaskGroups?")
        meta = json.loads(manifest.read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path}: unknown format {meta.get('format')!r}, expected {_FORMAT}")
        frame = pl.read_parquet(path / "memberships.parquet")
        k = int(meta["k"])
        memb = frame.select([f"membership_{j}" for j in range(k)]).to_numpy()
        emb = None
        if meta["has_embedding"]:
            emb = pl.read_parquet(path / "embedding.parquet").to_numpy()
        return cls(
            task_names=frame["task"].to_list(),
            membership=memb,
            centroids=pl.read_parquet(path / "centroids.parquet").to_numpy(),
            embedding=emb,
            m=float(meta["m"]),
            method=str(meta["method"]),
            inertia=float(meta["inertia"]),
            reduction=str(meta["reduction"]),
            refined=bool(meta.get("refined", False)),
        )

    def plot_memberships(self, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Membership heatmap; see :func:`stgmtl.plots.groups.plot_memberships`."""
        from stgmtl.plots.groups import plot_memberships

        return plot_memberships(self, path, **kwargs)

    def plot_task_map(
        self, path: str | os.PathLike[str], features: Any = None, **kwargs: Any
    ) -> Any:
        """2-D map of the tasks; see :func:`stgmtl.plots.groups.plot_task_map`."""
        from stgmtl.plots.groups import plot_task_map

        return plot_task_map(self, path, features=features, **kwargs)


def _matrix_frame(a: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({f"dim_{j}": a[:, j] for j in range(a.shape[1])})
