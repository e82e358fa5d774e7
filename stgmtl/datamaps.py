"""DataMaps: per-task data maps (confidence, variability, correctness), features, save/load.

The hand-over object between recording and grouping. Arrays are numpy, task-major ``(T, N)``;
snapshots ``(S, T, N)``. It never imports torch, so grouping can use it without torch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DataMaps", "FEATURE_KINDS", "register_feature_kind"]

_STATS = ("confidence", "variability", "correctness")
FeatureFn = Callable[..., np.ndarray]
#: Registered feature kinds: name -> function(datamaps, **options) -> (T, D) float32 array.
FEATURE_KINDS: dict[str, FeatureFn] = {}
#: Built-in kinds defined in other modules, imported on first use (they pull in scikit-learn).
_LAZY_KINDS: dict[str, str] = {"confusion": "stgmtl.task_features"}


def register_feature_kind(name: str) -> Callable[[FeatureFn], FeatureFn]:
    """Register a feature kind for :meth:`DataMaps.features` (decorator).

    The function takes the :class:`DataMaps` and keyword options and returns a C-contiguous
    float32 array of shape ``(T, D)``; standardisation is applied afterwards by ``features``.
    """

    def deco(fn: FeatureFn) -> FeatureFn:
        FEATURE_KINDS[name] = fn
        return fn

    return deco


@dataclass(eq=False)
class DataMaps:
    """Data maps of ``T`` tasks over ``N`` samples, from :class:`~stgmtl.DataMapRecorder`.

    Attributes
    ----------
    task_names : list of str
        ``T`` task names.
    sample_ids : np.ndarray
        int64 ``(N,)`` sorted sample ids (the recorder's indices, or its probe indices).
    confidence, variability, correctness : np.ndarray
        Float ``(T, N)``: mean and standard deviation of the true-label probability, fraction
        of right predictions, over all recorded updates. NaN where never observed.
    count : np.ndarray
        int32 ``(T, N)`` number of observations (masked labels excluded).
    targets : np.ndarray
        int32 ``(T, N)`` observed target (-1 where never observed). After a multi-process
        merge, or if a sample's label changed, the largest observed one.
    snapshot_epochs : list of int
        Epochs (1-based) at whose end snapshots were taken.
    snapshot_confidence, snapshot_variability, snapshot_correctness : np.ndarray
        Float ``(S, T, N)``, one slice per snapshot epoch.
    snapshot_kind : {"cumulative", "epoch"}
        Snapshots hold the statistics since the start or of that epoch only.
    ddof : int
        Delta degrees of freedom of the variability.
    task_type : {"binary", "multiclass"}
    recording : str
        How predictions were recorded: ``"train"`` (training forward passes), ``"eval"``
        (an extra evaluation pass per epoch), ``"manual"`` (a user's loop), ``"cartography"``.
    epochs : int
        Number of completed epochs.
    num_classes : int or None
        Classes per task for multi-class tasks.
    """

    task_names: list[str]
    sample_ids: np.ndarray
    confidence: np.ndarray
    variability: np.ndarray
    correctness: np.ndarray
    count: np.ndarray
    targets: np.ndarray
    snapshot_epochs: list[int] = field(default_factory=list)
    snapshot_confidence: np.ndarray | None = None
    snapshot_variability: np.ndarray | None = None
    snapshot_correctness: np.ndarray | None = None
    snapshot_kind: str = "cumulative"
    ddof: int = 0
    task_type: str = "binary"
    recording: str = "manual"
    epochs: int = 0
    num_classes: int | None = None

    def __post_init__(self) -> None:
        t, n = len(self.task_names), len(self.sample_ids)
        self.sample_ids = np.asarray(self.sample_ids, dtype=np.int64)
        for name in ("confidence", "variability", "correctness", "count", "targets"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (t, n):
                raise ValueError(f"{name}: expected shape ({t}, {n}), got {arr.shape}")
            setattr(self, name, arr)
        s = len(self.snapshot_epochs)
        for name in ("snapshot_confidence", "snapshot_variability", "snapshot_correctness"):
            arr = getattr(self, name)
            arr = np.empty((0, t, n), self.confidence.dtype) if arr is None else np.asarray(arr)
            if arr.shape != (s, t, n):
                raise ValueError(f"{name}: expected shape ({s}, {t}, {n}), got {arr.shape}")
            setattr(self, name, arr)
        if self.snapshot_kind not in ("cumulative", "epoch"):
            raise ValueError(
                f"snapshot_kind: expected 'cumulative' or 'epoch', got {self.snapshot_kind!r}"
            )

    # ------------------------------------------------------------ properties
    @property
    def num_tasks(self) -> int:
        """Number of tasks ``T``."""
        return len(self.task_names)

    @property
    def num_samples(self) -> int:
        """Number of samples ``N``."""
        return len(self.sample_ids)

    def stat(self, name: str, snapshot: int | str = "final") -> np.ndarray:
        """``(T, N)`` statistic ``name`` of the final state or of snapshot epoch ``snapshot``."""
        if name not in _STATS:
            raise ValueError(f"name: expected one of {_STATS}, got {name!r}")
        if snapshot == "final":
            return getattr(self, name)
        if snapshot not in self.snapshot_epochs:
            raise ValueError(
                f"snapshot: expected 'final' or a snapshot epoch {self.snapshot_epochs}, "
                f"got {snapshot!r}"
            )
        return getattr(self, f"snapshot_{name}")[self.snapshot_epochs.index(snapshot)]

    def sample_positions(self, samples: Any) -> np.ndarray:
        """Positions (columns) of the given sample ids; raises if one is not in the maps."""
        ids = np.asarray(samples, dtype=np.int64).ravel()
        pos = np.searchsorted(self.sample_ids, ids)
        bad = (pos >= self.num_samples) | (
            self.sample_ids[np.minimum(pos, self.num_samples - 1)] != ids
        )
        if bad.any():
            raise ValueError(f"samples: ids not in these data maps, e.g. {ids[bad][:5].tolist()}")
        return pos

    # -------------------------------------------------------------- features
    def features(
        self,
        kind: str = "datamap",
        *,
        standardize: bool = False,
        n_groups: int | None = None,
        **options: Any,
    ) -> np.ndarray:
        """Per-task feature matrix for grouping, float32 ``(T, D)``.

        Parameters
        ----------
        kind : str
            A registered feature kind (see :data:`FEATURE_KINDS`). ``"datamap"`` (default) is
            STG-MTL's feature: for each chosen snapshot and sample the pair
            (confidence, variability), flattened per task in the order (snapshot, sample, stat),
            as STG-MTL reshapes its ``(T, epochs, N, 2)`` data map. ``"confusion"``: the
            spectral embedding of how strongly each task fires on the other tasks' positives
            (binary tasks; see :mod:`stgmtl.task_features`).
        standardize : bool
            Z-score every feature column across tasks (columns with zero spread are centred).
        n_groups : int, optional
            The number of groups the features are for (:class:`~stgmtl.TaskGrouper` passes it).
            Handed to kinds that take it (``"confusion"`` sizes its embedding by it); ignored
            by the others.
        **options
            Options of the kind. For ``"datamap"``: ``snapshots`` ("all": every snapshot, or
            the final state when there are none; "final"; or a list of epochs and/or "final"),
            ``stats`` (default ``("confidence", "variability")``, any of
            confidence/variability/correctness), ``samples`` (sample ids to use, default all),
            ``nan_fill`` (value for never-observed entries, default 0.0).

        Returns
        -------
        np.ndarray
            float32, C-contiguous, shape ``(T, D)``.
        """
        if kind not in FEATURE_KINDS and kind in _LAZY_KINDS:
            importlib.import_module(_LAZY_KINDS[kind])  # registers the kind on import
        fn = FEATURE_KINDS.get(kind)
        if fn is None:
            raise ValueError(f"kind: expected one of {sorted(FEATURE_KINDS)}, got {kind!r}")
        if n_groups is not None and "n_groups" in inspect.signature(fn).parameters:
            options.setdefault("n_groups", n_groups)
        out = fn(self, **options)
        if standardize and out.size:
            _standardize_(out)
        return out

    # ----------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write a directory with parquet tables and a JSON manifest, atomically.

        See :func:`stgmtl.datamaps_io.save_datamaps` for the layout.
        """
        from stgmtl.datamaps_io import save_datamaps

        return save_datamaps(self, path)

    @classmethod
    def load(cls, path: str | Path) -> DataMaps:
        """Read a directory written by :meth:`save`; bad or mismatched files raise ValueError.

        The arrays are read-only, zero-copy views of the loaded tables (copy one to edit it).
        """
        from stgmtl.datamaps_io import load_datamaps

        return load_datamaps(path)

    def to_cartography(self, path: str | Path) -> Path:
        """Export to Dataset Cartography's per-epoch JSONL layout (see stgmtl.cartography_io)."""
        from stgmtl.cartography_io import export_cartography

        return export_cartography(self, path)

    @classmethod
    def from_cartography(cls, path: str | Path, **kwargs: Any) -> DataMaps:
        """Import Dataset Cartography training dynamics (see stgmtl.cartography_io)."""
        from stgmtl.cartography_io import import_cartography

        return import_cartography(path, **kwargs)

    def plot(self, path: str | Path, **kwargs: Any) -> Any:
        """Data-map scatter (see :func:`stgmtl.plots.datamap.plot_datamap`); returns the Figure."""
        from stgmtl.plots.datamap import plot_datamap

        return plot_datamap(self, path, **kwargs)

    def __repr__(self) -> str:
        return (
            f"DataMaps(num_tasks={self.num_tasks}, num_samples={self.num_samples}, "
            f"task_type={self.task_type!r}, epochs={self.epochs}, "
            f"snapshot_epochs={self.snapshot_epochs}, snapshot_kind={self.snapshot_kind!r})"
        )


def _standardize_(out: np.ndarray) -> None:
    """Z-score columns in place; float64 moments row by row (temporaries of one row only)."""
    mean = np.zeros(out.shape[1])
    sq = np.zeros(out.shape[1])
    for row in out:
        r = row.astype(np.float64)
        mean += r
        sq += r * r
    mean /= out.shape[0]
    std = np.sqrt(np.maximum(sq / out.shape[0] - mean * mean, 0.0))
    std[std < 1e-12] = 1.0
    inv, shift = (1.0 / std).astype(np.float32), mean.astype(np.float32)
    for row in out:
        row -= shift
        row *= inv


@register_feature_kind("datamap")
def _datamap_features(
    dm: DataMaps,
    *,
    snapshots: str | Sequence[int | str] = "all",
    stats: Sequence[str] = ("confidence", "variability"),
    samples: Any = None,
    nan_fill: float = 0.0,
) -> np.ndarray:
    """STG-MTL's feature: [stats] per sample per snapshot, flattened per task."""
    if snapshots == "all":
        chosen: list[int | str] = list(dm.snapshot_epochs) or ["final"]
    elif snapshots == "final":
        chosen = ["final"]
    elif isinstance(snapshots, str):
        raise ValueError(
            f"snapshots: expected 'all', 'final' or a list of epochs, got {snapshots!r}"
        )
    else:
        chosen = list(snapshots)
    stats = list(stats)
    if not stats or any(s not in _STATS for s in stats):
        raise ValueError(f"stats: expected a non-empty subset of {_STATS}, got {stats!r}")
    pos = None if samples is None else dm.sample_positions(samples)
    n = dm.num_samples if pos is None else len(pos)
    out = np.empty((dm.num_tasks, len(chosen), n, len(stats)), dtype=np.float32)
    for i, snap in enumerate(chosen):
        for j, name in enumerate(stats):
            src = dm.stat(name, snap)
            out[:, i, :, j] = src if pos is None else src[:, pos]
    flat = out.reshape(dm.num_tasks, -1)  # a view: (snapshot, sample, stat) per task
    np.nan_to_num(flat, copy=False, nan=nan_fill)
    return flat
