"""TaskAffinity: a ``(T, T)`` task-affinity matrix of one signal, validated, saved, loaded.

The hand-over object between the affinity recorders (:mod:`stgmtl.record`) and the feature and
selection stages, as :class:`~stgmtl.DataMaps` is for data maps. One convention for every
signal: ``values[i, j]`` is the effect of task ``i`` (the source) on task ``j`` (the recipient),
and *larger means more helpful*; distances are negated so that every signal reads the same way.
Signals that are symmetric by construction (gradient cosine, label correlation) have
``orientation="symmetric"``. It holds data only: no torch, no plotting.

Unobserved pairs, one rule for the whole toolkit (:data:`UNOBSERVED_RULE`): inside a
``TaskAffinity`` an off-diagonal NaN means the signal never observed that pair, and every
consumer (the affinity features, the graph behind the spectral embedding, every selection
back-end) reads it as the mean of the observed off-diagonal values of the same matrix
(:meth:`TaskAffinity.filled`): neutral, neither for nor against the pair relative to the rest.
A plain array carries no such convention, so a NaN in one is refused as a broken computation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from stgmtl._checks import check_choice, check_names, fail
from stgmtl.affinity.io import load_affinity, save_affinity

__all__ = ["ORIENTATIONS", "UNOBSERVED_RULE", "TaskAffinity", "fill_unobserved"]

#: The one rule for unobserved pairs (off-diagonal NaN in a ``TaskAffinity``).
UNOBSERVED_RULE = (
    "an unobserved pair (off-diagonal NaN) reads as the mean of the observed off-diagonal "
    "values of the same matrix"
)


def fill_unobserved(values: np.ndarray) -> np.ndarray:
    """A float64 copy of ``values`` (``(T, T)``) with :data:`UNOBSERVED_RULE` applied; the
    diagonal is left as it is. ``ValueError`` when no pair of different tasks is observed."""
    v = np.array(values, dtype=np.float64)
    off = ~np.eye(v.shape[0], dtype=bool)
    seen = off & np.isfinite(v)
    if not seen.any():
        raise fail("affinity", "at least one observed pair of different tasks", "none")
    return np.where(off & np.isnan(v), v[seen].mean(), v)


#: ``"source->recipient"``: ``values[i, j]`` is the effect of task i on task j;
#: ``"symmetric"``: ``values`` is symmetric by construction.
ORIENTATIONS = ("source->recipient", "symmetric")


@dataclass(eq=False)
class TaskAffinity:
    """A ``(T, T)`` affinity matrix of one signal (larger = more helpful).

    Attributes
    ----------
    task_names : list of str
        ``T`` unique task names, the order of rows and columns.
    values : np.ndarray
        float64 ``(T, T)``; ``values[i, j]`` is the effect of task ``i`` on task ``j``. NaN
        where the signal was never observed for that pair. The diagonal is the signal's
        self-affinity where it has one, else NaN.
    signal : str
        Name of the signal (``"tag"``, ``"grad-cosine"``, ``"rep-cosine"``, ``"grad-tag"``,
        ``"datamap"``, ``"confusion"``, ``"label"``, ``"colearning"``, or a user's own).
    orientation : {"source->recipient", "symmetric"}
    counts : np.ndarray, optional
        int64 ``(T, T)`` observations behind each entry (probed steps, samples); ``None`` when
        the signal is not an average of observations.
    snapshot_epochs : list of int
        Epochs (1-based, increasing) whose matrices are kept in ``snapshots``.
    snapshots : np.ndarray, optional
        float64 ``(S, T, T)``, one matrix per snapshot epoch.
    meta : dict
        JSON-serialisable settings of the recording (learning rate, probe schedule, formula).
    """

    task_names: list[str]
    values: np.ndarray
    signal: str
    orientation: str = "source->recipient"
    counts: np.ndarray | None = None
    snapshot_epochs: list[int] = field(default_factory=list)
    snapshots: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.values)
        if v.ndim != 2 or v.shape[0] != v.shape[1] or v.shape[0] < 1:
            raise fail("values", "a square (T, T) matrix with T >= 1", v.shape)
        if v.dtype.kind not in "fiu":
            raise fail("values", "a real-valued matrix", v.dtype, error=TypeError)
        t = v.shape[0]
        self.values = v.astype(np.float64, copy=False)
        if np.isinf(self.values).any():
            raise fail("values", "finite values or NaN (not observed)", "inf")
        self.task_names = check_names("task_names", self.task_names, t)
        if not isinstance(self.signal, str):
            raise fail("signal", "a non-empty name", self.signal, error=TypeError)
        if not self.signal:
            raise fail("signal", "a non-empty name", self.signal)
        check_choice("orientation", self.orientation, ORIENTATIONS)
        if self.orientation == "symmetric":
            both = np.isfinite(self.values) & np.isfinite(self.values.T)
            if not np.allclose(self.values[both], self.values.T[both], rtol=1e-9, atol=1e-12):
                raise fail("values", "a symmetric matrix for orientation='symmetric'", "asymmetric")
        if self.counts is not None:
            c = np.asarray(self.counts)
            if c.shape != (t, t) or c.dtype.kind not in "iu" or (c < 0).any():
                raise fail("counts", f"non-negative integers of shape ({t}, {t})", c.shape)
            self.counts = c.astype(np.int64, copy=False)
        epochs = list(self.snapshot_epochs)
        if not all(isinstance(e, int | np.integer) and not isinstance(e, bool) for e in epochs):
            raise fail("snapshot_epochs", "a sequence of ints", epochs, error=TypeError)
        self.snapshot_epochs = [int(e) for e in epochs]
        s = len(self.snapshot_epochs)
        if s and (self.snapshot_epochs[0] < 1 or any(np.diff(self.snapshot_epochs) <= 0)):
            raise fail("snapshot_epochs", "increasing epochs >= 1", self.snapshot_epochs)
        snaps = np.empty((0, t, t)) if self.snapshots is None else np.asarray(self.snapshots)
        if snaps.shape != (s, t, t):
            raise fail("snapshots", f"shape ({s}, {t}, {t})", snaps.shape)
        self.snapshots = snaps.astype(np.float64, copy=False)
        if not isinstance(self.meta, dict):
            raise fail("meta", "a dict", type(self.meta).__name__, error=TypeError)

    # ------------------------------------------------------------ properties
    @property
    def num_tasks(self) -> int:
        """Number of tasks ``T``."""
        return len(self.task_names)

    def symmetric(self) -> np.ndarray:
        """``(values + values.T) / 2``, NaN entries treated as missing (the other side, if any).

        The undirected affinity that spectral embeddings and partition search use.
        """
        v = self.values
        both = np.where(np.isnan(v), v.T, v)
        both_t = np.where(np.isnan(v.T), v, v.T)
        return (both + both_t) / 2.0

    def filled(self) -> np.ndarray:
        """``values`` with unobserved pairs read as :data:`UNOBSERVED_RULE` says (a copy)."""
        return fill_unobserved(self.values)

    def off_diagonal(self) -> np.ndarray:
        """A copy of ``values`` with NaN on the diagonal (no task is its own partner)."""
        out = self.values.copy()
        np.fill_diagonal(out, np.nan)
        return out

    def best_partners(self) -> list[str | None]:
        """For each recipient ``j``, the source ``i != j`` with the largest ``values[i, j]``."""
        v = self.off_diagonal()
        out: list[str | None] = []
        for j in range(self.num_tasks):
            col = v[:, j]
            out.append(None if np.isnan(col).all() else self.task_names[int(np.nanargmax(col))])
        return out

    def to_frame(self) -> Any:
        """Long table ``source, target, value[, count]`` (polars), one row per ordered pair."""
        import polars as pl

        t = self.num_tasks
        src, dst = np.divmod(np.arange(t * t), t)
        names = np.asarray(self.task_names, dtype=object)
        cols: dict[str, Any] = {"source": names[src].tolist(), "target": names[dst].tolist(),
                                "value": self.values.ravel()}  # fmt: skip
        if self.counts is not None:
            cols["count"] = self.counts.ravel()
        return pl.DataFrame(cols)

    # ----------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a folder with parquet tables and a checksummed manifest, atomically.

        See :mod:`stgmtl.affinity.io` for the layout.
        """
        return save_affinity(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaskAffinity:
        """Read a folder written by :meth:`save`; every file is verified against its checksum and
        every field validated as the constructor does (``ValueError`` naming the file)."""
        values = load_affinity(path)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path: {Path(path) / 'manifest.json'} is invalid: {exc}") from exc

    def fields(self) -> dict[str, Any]:
        """Every field as a dict (what the constructor takes)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __repr__(self) -> str:
        return (
            f"TaskAffinity(signal={self.signal!r}, num_tasks={self.num_tasks}, "
            f"orientation={self.orientation!r}, snapshot_epochs={self.snapshot_epochs})"
        )
