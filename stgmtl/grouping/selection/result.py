"""The result of every selection back-end: :class:`TaskSelection` (verified save/load).

A selection is a set of networks (task groups, possibly overlapping) and, for every task, the
one network that *serves* it (whose prediction for that task is used). It plugs into the rest
of the toolkit like :class:`~stgmtl.grouping.TaskGroups`: ``task_names``, ``labels`` (the
serving network of each task), ``membership`` (one-hot ``(T, k)`` of the serving network, rows
summing to 1, so ``stgmtl.specialise.train_group_models(factory, data, sel.membership, ...)``
trains one model per network on the tasks it serves) and ``groups``.

To train overlapping networks on *all* their tasks (TAG and Standley train every member; only
the serving network's head is kept), use ``group_matrix`` (``(T, k)`` 0/1, column ``c`` =
members of network ``c``) as per-network task weights, e.g. ``train_model(..., task_weights=
sel.group_matrix[:, c])``.

Saved layout (format ``stgmtl.TaskSelection``, version 1)::

    manifest.json    format, format_version, stgmtl version, method, objective, score, cost,
                     test_score, meta, task names, number of networks, the files and sha256
    tasks.parquet    one row per task: task (str), serving (int64), task_score (float64),
                     test_task_score (float64, NaN when absent)
    networks.parquet one row per (network, member): network (int64), task (str)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import check_names, fail
from stgmtl._io import atomic_dir, read_manifest, read_parquet, verified_file, write_manifest
from stgmtl._version import __version__
from stgmtl.grouping.groups import TaskGroups

__all__ = ["TaskSelection"]

_FORMAT = "stgmtl.TaskSelection"
_FORMAT_VERSION = 1


@dataclass(eq=False)
class TaskSelection:
    """Networks (groups of tasks, possibly overlapping) and the network serving each task.

    Attributes
    ----------
    task_names : list of str
        ``T`` unique names.
    groups : list of list of str
        The ``k`` chosen networks, each a non-empty list of task names (in task order); a task
        may be in several networks, and every task is in at least one.
    serving : np.ndarray
        ``(T,)`` int64: index into ``groups`` of the network that serves each task (it contains
        the task).
    task_scores : np.ndarray
        ``(T,)`` float64: each task's score in its serving network (the back-end's estimate,
        e.g. TAG's mean in-group affinity onto the task, or a trained validation result).
    score : float
        The selection's objective (see ``objective``; the mean of ``task_scores`` for TAG and
        Standley).
    cost : float
        Total cost of the networks (Standley: full network 1, half-size single-task network
        0.5; the other back-ends: the number of networks).
    method : str
        The back-end: ``"tag"``, ``"standley"``, ``"partition"``, ``"kmeans"``.
    objective : str
        What ``score`` measures (one line).
    test_task_scores : np.ndarray, optional
        ``(T,)`` float64 scores of the serving networks on a held-out table (Standley: chosen on
        validation, reported on test).
    test_score : float
        Mean of ``test_task_scores`` (NaN without them).
    meta : dict
        JSON-serialisable settings and search statistics.
    """

    task_names: list[str]
    groups: list[list[str]]
    serving: np.ndarray
    task_scores: np.ndarray
    score: float
    cost: float
    method: str
    objective: str = ""
    test_task_scores: np.ndarray | None = None
    test_score: float = float("nan")
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.task_names = check_names("task_names", self.task_names, len(list(self.task_names)))
        t = len(self.task_names)
        if t < 1:
            raise fail("task_names", "at least one task", self.task_names)
        index = {n: i for i, n in enumerate(self.task_names)}
        if isinstance(self.groups, (str, bytes)) or not isinstance(self.groups, (list, tuple)):
            raise fail("groups", "a list of task-name lists", self.groups, error=TypeError)
        groups: list[list[str]] = []
        seen: set[frozenset[str]] = set()
        for g in self.groups:
            if isinstance(g, (str, bytes)) or not isinstance(g, (list, tuple, set, frozenset)):
                raise fail("groups", "lists of task names", g, error=TypeError)
            names = [str(x) for x in g]
            unknown = [x for x in names if x not in index]
            if not names or unknown or len(set(names)) != len(names):
                raise fail("groups", "non-empty lists of distinct, known task names", g)
            if frozenset(names) in seen:
                raise fail("groups", "distinct networks", f"{sorted(names)} twice")
            seen.add(frozenset(names))
            groups.append(sorted(names, key=index.__getitem__))
        if not groups:
            raise fail("groups", "at least one network", self.groups)
        self.groups = groups
        k = len(groups)
        serving = np.asarray(self.serving)
        if serving.shape != (t,) or serving.dtype.kind not in "iu":
            raise fail("serving", f"({t},) integers", serving.shape)
        if serving.size and (serving.min() < 0 or serving.max() >= k):
            raise fail("serving", f"network indices in [0, {k - 1}]", serving)
        self.serving = serving.astype(np.int64)
        for j, c in enumerate(self.serving):
            if self.task_names[j] not in groups[c]:
                raise fail("serving", "for each task a network that contains it",
                           f"{self.task_names[j]!r} -> network {c}")  # fmt: skip
        self.task_scores = _scores("task_scores", self.task_scores, t)
        if self.test_task_scores is not None:
            self.test_task_scores = _scores("test_task_scores", self.test_task_scores, t)
        for name in ("score", "cost", "test_score"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise fail(name, "a number", value, error=TypeError)
            setattr(self, name, float(value))
        if not math.isfinite(self.score) or not math.isfinite(self.cost) or self.cost < 0:
            raise fail("score/cost", "finite numbers, cost >= 0", (self.score, self.cost))
        if not isinstance(self.method, str) or not self.method:
            raise fail("method", "a non-empty name", self.method)
        if not isinstance(self.objective, str):
            raise fail("objective", "a string", self.objective, error=TypeError)
        if not isinstance(self.meta, dict):
            raise fail("meta", "a dict", type(self.meta).__name__, error=TypeError)

    # ------------------------------------------------------------------ views
    @property
    def num_tasks(self) -> int:
        """Number of tasks ``T``."""
        return len(self.task_names)

    @property
    def n_groups(self) -> int:
        """Number of networks ``k``."""
        return len(self.groups)

    @property
    def labels(self) -> np.ndarray:
        """``(T,)`` int64 serving network of each task (as ``TaskGroups.labels``)."""
        return self.serving

    @property
    def membership(self) -> np.ndarray:
        """``(T, k)`` float64 one-hot serving network (rows sum to 1, as ``TaskGroups``)."""
        out = np.zeros((self.num_tasks, self.n_groups))
        out[np.arange(self.num_tasks), self.serving] = 1.0
        return out

    @property
    def group_matrix(self) -> np.ndarray:
        """``(T, k)`` float64 0/1: ``[j, c] = 1`` when task ``j`` is a member of network ``c``."""
        index = {n: i for i, n in enumerate(self.task_names)}
        out = np.zeros((self.num_tasks, self.n_groups))
        for c, g in enumerate(self.groups):
            out[[index[n] for n in g], c] = 1.0
        return out

    @property
    def served(self) -> list[list[str]]:
        """Per network, the tasks it serves (a partition of the tasks; may be empty)."""
        return [
            [n for n, c in zip(self.task_names, self.serving, strict=True) if c == g]
            for g in range(self.n_groups)
        ]

    def to_groups(self) -> TaskGroups:
        """The serving partition as a hard :class:`TaskGroups` (one-hot memberships)."""
        return TaskGroups(
            task_names=list(self.task_names),
            membership=self.membership,
            centroids=np.eye(self.n_groups),
            method="hard",
        )

    def to_frame(self) -> pl.DataFrame:
        """One row per task: ``task``, ``serving``, ``task_score``, ``test_task_score``."""
        test = self.test_task_scores
        return pl.DataFrame(
            {
                "task": self.task_names,
                "serving": self.serving,
                "task_score": self.task_scores,
                "test_task_score": np.full(self.num_tasks, np.nan) if test is None else test,
            }
        )

    def __repr__(self) -> str:
        return (
            f"TaskSelection(method={self.method!r}, num_tasks={self.num_tasks}, "
            f"n_groups={self.n_groups}, score={self.score:.6g}, cost={self.cost:g})"
        )

    # ----------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to folder ``path`` (parquet tables + checksummed manifest), atomically."""
        path = Path(path)
        with atomic_dir(path, what="TaskSelection") as tmp:
            files = {"tasks": "tasks.parquet", "networks": "networks.parquet"}
            self.to_frame().write_parquet(tmp / files["tasks"])
            pl.DataFrame(
                {
                    "network": [c for c, g in enumerate(self.groups) for _ in g],
                    "task": [n for g in self.groups for n in g],
                },
                schema={"network": pl.Int64, "task": pl.String},
            ).write_parquet(tmp / files["networks"])
            manifest = {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "stgmtl_version": __version__,
                "method": self.method,
                "objective": self.objective,
                "score": self.score,
                "cost": self.cost,
                "test_score": None if math.isnan(self.test_score) else self.test_score,
                "has_test": self.test_task_scores is not None,
                "task_names": list(self.task_names),
                "n_groups": self.n_groups,
                "meta": self.meta,
            }
            write_manifest(tmp, manifest, files)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaskSelection:
        """Read a folder written by :meth:`save`; checksums and fields are verified.

        Raises
        ------
        FileNotFoundError
            If ``path`` or its manifest does not exist.
        ValueError
            If a file is damaged, fails its checksum or disagrees with the manifest.
        """
        path = Path(path)
        manifest = read_manifest(path, what="TaskSelection", formats={_FORMAT: (_FORMAT_VERSION,)})
        mf = path / "manifest.json"
        try:
            names = [str(n) for n in manifest["task_names"]]
            k = int(manifest["n_groups"])
            scalars = {key: manifest[key] for key in ("method", "objective", "score", "cost",
                                                      "meta")}  # fmt: skip
            test_score = manifest["test_score"]
            has_test = bool(manifest["has_test"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"path: {mf} is not a valid TaskSelection manifest: {exc!r}") from exc
        f = verified_file(path, manifest, "tasks")
        tasks = read_parquet(f)
        cols = ["task", "serving", "task_score", "test_task_score"]
        if any(c not in tasks.columns for c in cols) or tasks["task"].to_list() != names:
            raise ValueError(f"path: {f} does not match the manifest's tasks")
        g = verified_file(path, manifest, "networks")
        nets = read_parquet(g)
        if any(c not in nets.columns for c in ("network", "task")):
            raise ValueError(f"path: {g} lacks the columns network, task")
        groups: list[list[str]] = [[] for _ in range(k)]
        for c, n in zip(nets["network"].to_list(), nets["task"].to_list(), strict=True):
            if not 0 <= c < k:
                raise ValueError(f"path: {g} names network {c}, expected 0..{k - 1}")
            groups[c].append(n)
        try:
            return cls(
                task_names=names,
                groups=groups,
                serving=tasks["serving"].to_numpy(),
                task_scores=tasks["task_score"].to_numpy(),
                test_task_scores=tasks["test_task_score"].to_numpy() if has_test else None,
                test_score=float("nan") if test_score is None else float(test_score),
                **scalars,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path: {path} holds an inconsistent TaskSelection: {exc}") from exc


def _scores(name: str, values: Any, t: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (t,) or not np.isfinite(arr).all():
        raise fail(name, f"({t},) finite numbers", arr.shape if arr.shape != (t,) else "NaN/inf")
    return arr
