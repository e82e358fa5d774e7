"""DataMaps: per-task data maps (confidence, variability, correctness), validated, saved, loaded.

The hand-over object between recording and the feature stage. Arrays are numpy, task-major
``(T, N)``; snapshots ``(S, T, N)``. It holds data only: task features live in
:mod:`stgmtl.features`, figures in :mod:`stgmtl.plots`. It never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from stgmtl._checks import check_choice, check_int, check_names, fail
from stgmtl.datamaps.cartography import export_cartography, import_cartography
from stgmtl.datamaps.io import load_datamaps, save_datamaps

__all__ = ["RECORDINGS", "STATS", "DataMaps"]

#: The per-(task, sample) statistics of a data map.
STATS = ("confidence", "variability", "correctness")
#: How predictions can have been recorded.
RECORDINGS = ("train", "eval", "manual", "cartography")


def _epoch_list(values: Any) -> list[int]:
    """``snapshot_epochs`` as a list of ints; floats, strings and bools are refused, not cast."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise fail("snapshot_epochs", "a sequence of ints", values, error=TypeError)
    out = list(values)
    if not all(isinstance(e, int | np.integer) and not isinstance(e, bool | np.bool_) for e in out):
        raise fail("snapshot_epochs", "a sequence of ints", out, error=TypeError)
    return [int(e) for e in out]


@dataclass(eq=False)
class DataMaps:
    """Data maps of ``T`` tasks over ``N`` samples, from :class:`~stgmtl.DataMapRecorder`.

    Every field is validated on construction (also when loaded from disk), so a ``DataMaps``
    always holds consistent shapes and settings.

    Attributes
    ----------
    task_names : list of str
        ``T`` unique task names.
    sample_ids : np.ndarray
        int64 ``(N,)`` sorted, unique sample ids (the recorder's indices, or its probe indices).
    confidence, variability, correctness : np.ndarray
        Float ``(T, N)``: mean and standard deviation of the true-label probability, fraction
        of right predictions, over all recorded updates. NaN where never observed.
    count : np.ndarray
        int32 ``(T, N)`` number of observations (masked labels excluded).
    targets : np.ndarray
        int32 ``(T, N)`` observed target (-1 where never observed). After a multi-process
        merge, or if a sample's label changed, the largest observed one.
    snapshot_epochs : list of int
        Epochs (1-based, increasing) at whose end snapshots were taken.
    snapshot_confidence, snapshot_variability, snapshot_correctness : np.ndarray
        Float ``(S, T, N)``, one slice per snapshot epoch.
    snapshot_kind : {"cumulative", "epoch"}
        Snapshots hold the statistics since the start or of that epoch only.
    ddof : {0, 1}
        Delta degrees of freedom of the variability.
    task_type : {"binary", "multiclass"}
    recording : {"train", "eval", "manual", "cartography"}
        How predictions were recorded: ``"train"`` (training forward passes), ``"eval"``
        (an extra evaluation pass per epoch), ``"manual"`` (a user's loop), ``"cartography"``.
    epochs : int
        Number of completed epochs.
    num_classes : int or None
        Classes per task for multi-class tasks (``None`` for binary tasks).
    state_layout : {"float64", "compact"}
        The recorder state the statistics come from: ``"float64"`` (float64 sums; also for
        imported maps and maps saved before stgmtl 0.3) or ``"compact"`` (fixed-point sums:
        confidence and variability within ``6.2e-5`` of the float64 layout's, ``8.8e-5`` for
        the variability with ``ddof=1``; see :mod:`stgmtl.record.compact`).
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
    state_layout: str = "float64"

    def __post_init__(self) -> None:
        self.task_names = check_names("task_names", self.task_names, len(self.task_names))
        t = len(self.task_names)
        ids = np.asarray(self.sample_ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise fail("sample_ids", "a 1-D integer array", f"{ids.dtype} of shape {ids.shape}")
        self.sample_ids = ids.astype(np.int64, copy=False)
        if ids.size > 1 and not (np.diff(self.sample_ids) > 0).all():
            raise fail("sample_ids", "sorted, unique ids", "unsorted or repeated ids")
        n = ids.size
        for name in ("confidence", "variability", "correctness", "count", "targets"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (t, n):
                raise fail(name, f"shape ({t}, {n})", arr.shape)
            want = "f" if name in STATS else "iu"
            if arr.dtype.kind not in want:
                kind = "a float" if want == "f" else "an integer"
                raise fail(name, f"{kind} array", arr.dtype, error=TypeError)
            setattr(self, name, arr)
        self.snapshot_epochs = _epoch_list(self.snapshot_epochs)
        s = len(self.snapshot_epochs)
        if s and (self.snapshot_epochs[0] < 1 or any(np.diff(self.snapshot_epochs) <= 0)):
            raise fail("snapshot_epochs", "increasing epochs >= 1", self.snapshot_epochs)
        for name in ("snapshot_confidence", "snapshot_variability", "snapshot_correctness"):
            arr = getattr(self, name)
            arr = np.empty((0, t, n), self.confidence.dtype) if arr is None else np.asarray(arr)
            if arr.shape != (s, t, n):
                raise fail(name, f"shape ({s}, {t}, {n})", arr.shape)
            setattr(self, name, arr)
        check_choice("snapshot_kind", self.snapshot_kind, ("cumulative", "epoch"))
        check_choice("ddof", self.ddof, (0, 1))
        check_choice("task_type", self.task_type, ("binary", "multiclass"))
        check_choice("recording", self.recording, RECORDINGS)
        check_choice("state_layout", self.state_layout, ("float64", "compact"))
        self.epochs = check_int("epochs", self.epochs, low=0)
        if s and self.epochs and self.snapshot_epochs[-1] > self.epochs:
            raise fail("snapshot_epochs", f"epochs <= epochs={self.epochs}", self.snapshot_epochs)
        if self.task_type == "binary":
            if self.num_classes is not None:
                raise fail("num_classes", "None for binary tasks", self.num_classes)
        elif self.num_classes is not None:
            self.num_classes = check_int("num_classes", self.num_classes, low=2, high=32767)

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
        check_choice("name", name, STATS)
        if snapshot == "final":
            return getattr(self, name)
        if snapshot not in self.snapshot_epochs:
            raise fail("snapshot", f"'final' or a snapshot epoch {self.snapshot_epochs}", snapshot)
        return getattr(self, f"snapshot_{name}")[self.snapshot_epochs.index(snapshot)]

    def sample_positions(self, samples: Any) -> np.ndarray:
        """Positions (columns) of the given sample ids; raises if one is not in the maps."""
        ids = np.asarray(samples, dtype=np.int64).ravel()
        pos = np.searchsorted(self.sample_ids, ids)
        bad = (pos >= self.num_samples) | (
            self.sample_ids[np.minimum(pos, self.num_samples - 1)] != ids
        )
        if bad.any():
            raise fail("samples", "ids of these data maps", ids[bad][:5].tolist())
        return pos

    # ----------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a folder with parquet tables and a checksummed JSON manifest, atomically.

        See :mod:`stgmtl.datamaps.io` for the layout. An earlier saved ``DataMaps`` at
        ``path`` is replaced; a crash or kill during the save leaves it intact.
        """
        return save_datamaps(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DataMaps:
        """Read a folder written by :meth:`save` (any format version of stgmtl).

        Every table is checked against the sha256 in the manifest and every manifest field is
        validated as the constructor validates it; a problem raises ``ValueError`` naming the
        file. The arrays are read-only, zero-copy views of the loaded tables.
        """
        values = load_datamaps(path)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path: {Path(path) / 'manifest.json'} is invalid: {exc}") from exc

    def to_cartography(self, path: str | os.PathLike[str]) -> Path:
        """Export to Dataset Cartography's per-epoch JSONL layout (see
        :mod:`stgmtl.datamaps.cartography`)."""
        return export_cartography(self, path)

    @classmethod
    def from_cartography(cls, path: str | os.PathLike[str], *, ddof: int = 0) -> DataMaps:
        """Import Dataset Cartography training dynamics (see
        :mod:`stgmtl.datamaps.cartography`)."""
        return cls(**import_cartography(path, ddof=ddof))

    def fields(self) -> dict[str, Any]:
        """Every field as a dict (what the constructor takes)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __repr__(self) -> str:
        return (
            f"DataMaps(num_tasks={self.num_tasks}, num_samples={self.num_samples}, "
            f"task_type={self.task_type!r}, epochs={self.epochs}, "
            f"snapshot_epochs={self.snapshot_epochs}, snapshot_kind={self.snapshot_kind!r})"
        )
