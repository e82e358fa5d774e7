"""Record per-task data maps (Dataset Cartography statistics) during multi-task training.

:class:`DataMapRecorder` keeps, per (task, sample), mergeable sums of the true-label
probability and of its square, the number of right predictions, and the observed target.
It is modelled on a torchmetrics ``Metric``: ``update`` / ``compute`` / ``reset`` / ``sync``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from stgmtl._recorder_state import (
    accumulate,
    add_,
    all_reduce,
    clone,
    scratch_buffer,
    statistics,
    world_size,
    zeros_like,
)
from stgmtl.datamaps import DataMaps

__all__ = ["DataMapRecorder", "distributed_valid_mask"]

_STATE_VERSION = 1


def distributed_valid_mask(sampler: Any) -> torch.Tensor:
    """Which of this rank's positions in an epoch hold a real sample, not padding.

    ``torch.utils.data.DistributedSampler`` (with ``drop_last=False``) repeats indices so that
    every rank gets the same number; the repeats sit at the end of the global order, so on each
    rank they are the last positions of the epoch. Slice the returned mask by batch and pass it
    as ``valid=`` to :meth:`DataMapRecorder.update` so that repeats are not counted twice.

    Parameters
    ----------
    sampler : torch.utils.data.DistributedSampler
        The sampler of this rank's loader.

    Returns
    -------
    torch.Tensor
        Bool tensor of shape ``(len(sampler),)``; ``False`` marks padded positions.
    """
    for name in ("num_replicas", "rank", "num_samples", "dataset"):
        if not hasattr(sampler, name):
            raise TypeError(f"sampler: expected a DistributedSampler, got {type(sampler).__name__}")
    positions = sampler.rank + torch.arange(sampler.num_samples) * sampler.num_replicas
    return positions < len(sampler.dataset)


class DataMapRecorder:
    """Per (task, sample) confidence, variability and correctness, recorded online.

    For binary tasks (``logits`` of shape ``(B, T)``) the true-label probability is
    ``sigmoid(z)`` where ``y = 1`` and ``1 - sigmoid(z)`` where ``y = 0`` (computed as
    ``sigmoid(-z)``, the same value without cancellation); a prediction is right
    when ``z > 0`` equals ``y`` (``sigmoid(z) > 0.5`` in exact arithmetic). For multi-class
    tasks (``(B, T, C)``) it is ``softmax(z)[y]`` and right when ``argmax(z) == y`` (first
    maximum). Per (task, sample): confidence is the mean true-label probability over the
    updates that observed it, variability its standard deviation (``ddof=0`` as in Dataset
    Cartography, or ``ddof=1``; with ``ddof=1`` and a single observation variability is ``0``,
    not NaN), correctness the fraction of right predictions. Samples never observed get NaN.
    Every occurrence of an index counts, also duplicates within one batch.

    State is exact-merge friendly: float64 sums of ``p`` and ``p**2``, int32 right counts,
    int64 per-sample update counts (and int32 missing-label counts once a mask is used), so
    :meth:`sync` combines the processes' states with sums into the single-process result
    (integers exactly, float64 sums up to rounding order). Variability is computed as
    ``sqrt((S2 - S1**2 / n) / (n - ddof))`` in float64 (absolute error about 1e-8 when the
    true value is 0).

    Memory, sample-major ``(N, T)`` torch tensors on the logits' device: **21 bytes per
    (task, sample)** for binary tasks (16 float64 sums + 4 int32 right count + 1 int8 target;
    22 for multi-class, int16 targets), **+4** once a mask is used, **+20 per snapshot**
    (and +20 for the epoch start while an ``"epoch"`` snapshot is open), plus 8 bytes per
    sample and per-step scratch of about ``B * T`` bytes plus ``30 * min(B * T, 2**18)``
    (on CPU a batch is processed in row chunks of about 2**18 values, which stay in cache;
    on CUDA in one piece, scratch about ``B * T * 30`` bytes). For ``T * N`` too large,
    record on ``probe_indices`` only: updates for other samples are dropped before any math.
    Example: T = 100 tasks x N = 50,000 samples = 105 MB; T = 10,000 x 5,000 probes = 1.05 GB.

    Devices: the state lives on the device of the first ``logits`` (later inputs are moved
    there). On CPU the scatters are deterministic (``index_add_`` for the float sums on one
    thread, ``index_put_(accumulate=True)`` otherwise); on CUDA ``index_add_`` (atomics:
    float sums may differ in the last bits between runs). With
    ``validate=True`` each update reads two small results back to the host (index range,
    value checks), and ``probe_indices`` / ``valid`` select rows with ``nonzero``; pass
    ``validate=False`` to avoid host syncs on a GPU once the pipeline is known to be good.

    Parameters
    ----------
    num_tasks : int
        Number of tasks ``T``.
    num_samples : int
        Number of samples ``N``; indices passed to :meth:`update` lie in ``[0, N)``.
    task_names : sequence of str, optional
        Names of the tasks (default ``task_0 ... task_{T-1}``).
    task_type : {"binary", "multiclass"}
        Sigmoid per task, or softmax over the last logits dimension.
    ddof : {0, 1}
        Delta degrees of freedom of the variability.
    snapshot_epochs : sequence of int, optional
        Epochs (1-based: the first :meth:`end_epoch` call ends epoch 1) at whose end the
        statistics are kept as snapshots.
    snapshot_kind : {"cumulative", "epoch"}
        Snapshot the statistics since the start (what STG-MTL clusters) or of that epoch only.
    probe_indices : array-like of int, optional
        Record only these sample ids (sorted, unique); others are ignored.
    validate : bool
        Check every update's values (finite logits, index and target ranges) with one fused
        reduction per tensor; a bad batch raises and leaves the state unchanged.
    recording : str
        Recording mode stored in the data maps (``"train"``, ``"eval"`` or ``"manual"``).
    cpu_threads : int or None
        Torch threads used while recording a CPU batch (restored afterwards); ``None`` keeps
        torch's setting. Default 1: the recording passes are short and memory-bound, and on a
        shared CPU every multi-threaded pass can wait for a descheduled thread (measured in
        benchmarks/recording_overhead.py).
    """

    def __init__(
        self,
        num_tasks: int,
        num_samples: int,
        *,
        task_names: Sequence[str] | None = None,
        task_type: Literal["binary", "multiclass"] = "binary",
        ddof: int = 0,
        snapshot_epochs: Sequence[int] | None = None,
        snapshot_kind: Literal["cumulative", "epoch"] = "cumulative",
        probe_indices: Any = None,
        validate: bool = True,
        recording: str = "manual",
        cpu_threads: int | None = 1,
    ) -> None:
        for name, value in (("num_tasks", num_tasks), ("num_samples", num_samples)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if task_type not in ("binary", "multiclass"):
            raise ValueError(f"task_type: expected 'binary' or 'multiclass', got {task_type!r}")
        if ddof not in (0, 1):
            raise ValueError(f"ddof: expected 0 or 1, got {ddof!r}")
        if snapshot_kind not in ("cumulative", "epoch"):
            raise ValueError(
                f"snapshot_kind: expected 'cumulative' or 'epoch', got {snapshot_kind!r}"
            )
        names = [f"task_{t}" for t in range(num_tasks)] if task_names is None else list(task_names)
        if len(names) != num_tasks or len(set(names)) != num_tasks:
            raise ValueError(f"task_names: expected {num_tasks} unique names, got {names!r}")
        epochs = sorted({int(e) for e in (snapshot_epochs or ())})
        if epochs and epochs[0] < 1:
            raise ValueError(f"snapshot_epochs: expected epochs >= 1, got {snapshot_epochs!r}")
        self.num_tasks, self.num_samples = int(num_tasks), int(num_samples)
        self.task_names, self.task_type, self.ddof = names, task_type, int(ddof)
        self.snapshot_epochs, self.snapshot_kind = epochs, snapshot_kind
        self.validate, self.recording = bool(validate), recording
        if cpu_threads is not None and (not isinstance(cpu_threads, int) or cpu_threads < 1):
            raise ValueError(f"cpu_threads: expected None or a positive int, got {cpu_threads!r}")
        self.cpu_threads = cpu_threads
        self.probe_indices: np.ndarray | None = None
        if probe_indices is not None:
            probe = np.unique(np.asarray(probe_indices, dtype=np.int64))
            if probe.size == 0 or probe[0] < 0 or probe[-1] >= num_samples:
                raise ValueError(
                    f"probe_indices: expected a non-empty set of ids in [0, {num_samples}), "
                    f"got {probe.size} ids in [{probe.min(initial=0)}, {probe.max(initial=0)}]"
                )
            self.probe_indices = probe
        self.num_classes: int | None = None
        self._lut: torch.Tensor | None = None
        self._state: dict[str, torch.Tensor | None] | None = None
        self._targets: torch.Tensor | None = None
        self._snapshots: dict[int, dict[str, torch.Tensor | None]] = {}
        # "epoch" snapshots: the state before a snapshot epoch is moved here and the live state
        # restarts at zero, so that the epoch's sums are exact; it is added back at epoch end.
        self._carry: dict[str, torch.Tensor | None] | None = None
        self._scratch: dict[str, torch.Tensor] = {}
        self.epoch = 0
        self._synced = False

    # ------------------------------------------------------------------ state
    @property
    def device(self) -> torch.device | None:
        """Device of the state, or ``None`` before the first update."""
        return None if self._state is None else self._state["s1"].device  # type: ignore[union-attr]

    @property
    def _rows(self) -> int:
        return self.num_samples if self.probe_indices is None else len(self.probe_indices)

    def _allocate(self, device: torch.device) -> None:
        n, t = self._rows, self.num_tasks
        self._state = {
            "s1": torch.zeros(n, t, dtype=torch.float64, device=device),
            "s2": torch.zeros(n, t, dtype=torch.float64, device=device),
            "correct": torch.zeros(n, t, dtype=torch.int32, device=device),
            "seen": torch.zeros(n, dtype=torch.int64, device=device),
            "missing": None,
        }
        tdtype = torch.int8 if self.task_type == "binary" else torch.int16
        self._targets = torch.full((n, t), -1, dtype=tdtype, device=device)
        if self.probe_indices is not None and self._lut is None:
            self._lut = self._make_lut(device)
        if self.snapshot_kind == "epoch" and (self.epoch + 1) in self.snapshot_epochs:
            self._carry = clone(self._state)

    def _make_lut(self, device: torch.device) -> torch.Tensor:
        """Sample id -> state row (-1 for samples outside ``probe_indices``)."""
        assert self.probe_indices is not None
        lut = torch.full((self.num_samples,), -1, dtype=torch.int64)
        lut[torch.from_numpy(self.probe_indices)] = torch.arange(len(self.probe_indices))
        return lut.to(device)

    def _check_open(self) -> None:
        if self._synced:
            raise RuntimeError(
                "this recorder was merged with sync(); record everything before sync(), "
                "or use compute(), which merges a copy and leaves the local state alone"
            )

    # ----------------------------------------------------------------- update
    @torch.no_grad()
    def update(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        indices: torch.Tensor,
        mask: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> None:
        """Add one batch of predictions.

        Parameters
        ----------
        logits : torch.Tensor
            ``(B, T)`` (binary) or ``(B, T, C)`` (multi-class) floating logits; detached
            internally, so the training forward output can be passed as is.
        targets : torch.Tensor
            ``(B, T)`` labels: 0/1 (bool, int or float) or class ids in ``[0, C)``.
        indices : torch.Tensor
            ``(B,)`` integer sample ids in ``[0, num_samples)``.
        mask : torch.Tensor, optional
            ``(B, T)`` bool, ``False`` where a label is missing (its target is then ignored).
        valid : torch.Tensor, optional
            ``(B,)`` bool, ``False`` for rows to drop entirely, e.g. the padding that
            ``DistributedSampler`` adds (see :func:`distributed_valid_mask`).

        Raises
        ------
        TypeError, ValueError
            On bad input, naming the argument; the state is then left unchanged.
        """
        self._check_open()
        from stgmtl._recorder_checks import check_update, check_values

        logits, targets, indices, mask, valid = check_update(
            self, logits, targets, indices, mask, valid
        )
        threads = self.cpu_threads if logits.device.type == "cpu" else None
        before = torch.get_num_threads()
        if threads is not None and threads != before:
            torch.set_num_threads(threads)
        try:
            if self.probe_indices is not None and self._lut is None:
                self._lut = self._make_lut(logits.device)
            rows = indices
            keep = valid
            if self._lut is not None:
                rows = self._lut[indices]
                keep = rows >= 0 if keep is None else keep & (rows >= 0)
            if keep is not None:  # drop ignored rows before any per-value work
                sel = keep.nonzero().squeeze(1)
                logits, targets, rows = logits[sel], targets[sel], rows[sel]
                mask = None if mask is None else mask[sel]
            yb = None
            if self.validate and rows.numel() > 0:
                buf = self._buffer("yb", tuple(targets.shape), torch.bool, targets.device)
                yb = check_values(self, logits, targets, mask, buf)
            if logits.ndim == 3 and self.num_classes is None:
                self.num_classes = int(logits.shape[2])
            if rows.numel() == 0:
                return
            if self._state is None:
                self._allocate(logits.device)
            assert self._state is not None and self._targets is not None
            if mask is not None and self._state["missing"] is None:
                self._state["missing"] = torch.zeros_like(self._state["correct"])  # type: ignore[arg-type]
            accumulate(self._state, self._targets, self._scratch, logits, targets, rows, mask, yb)
        finally:
            if threads is not None and threads != before:
                torch.set_num_threads(before)

    def _buffer(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        return scratch_buffer(self._scratch, name, shape, dtype, device)

    # ----------------------------------------------------------------- epochs
    def end_epoch(self) -> None:
        """Mark the end of an epoch; keep a snapshot if the epoch is in ``snapshot_epochs``."""
        self._check_open()
        if self._state is None:
            self._allocate(torch.device("cpu"))
        assert self._state is not None
        self.epoch += 1
        if self.epoch in self.snapshot_epochs:
            self._snapshots[self.epoch] = clone(self._state)
        if self._carry is not None:
            add_(self._state, self._carry)
            self._carry = None
        if self.snapshot_kind == "epoch" and (self.epoch + 1) in self.snapshot_epochs:
            self._carry = self._state
            self._state = zeros_like(self._state)

    # ---------------------------------------------------------------- compute
    @torch.no_grad()
    def compute(self, *, sync: bool | None = None, dtype: Any = np.float64) -> DataMaps:
        """Return the data maps of everything recorded so far.

        Parameters
        ----------
        sync : bool, optional
            Merge all processes' states first (a collective: every rank must call it). Default:
            merge when ``torch.distributed`` is initialised with more than one process and
            :meth:`sync` was not called. The merge works on a copy; local state is unchanged.
        dtype : numpy dtype
            Float dtype of confidence, variability and correctness (float64 or float32).

        Returns
        -------
        DataMaps
        """
        if self._state is None:
            self._allocate(torch.device("cpu"))
        state, targets, snaps = self._state, self._targets, self._snapshots
        assert state is not None and targets is not None
        if self._carry is not None:  # mid-epoch: live part + carried part
            state = add_(clone(state), self._carry)
        if sync is None:
            sync = world_size() > 1 and not self._synced
        if sync and world_size() > 1:
            state = clone(state) if state is self._state else state
            targets = targets.clone()
            snaps = {e: clone(s) for e, s in snaps.items()}
            all_reduce([state] + [snaps[e] for e in sorted(snaps)], targets, self)
        conf, var, corr, count = statistics(state, self.ddof, dtype)
        snap_stats = [statistics(snaps[e], self.ddof, dtype) for e in sorted(snaps)]
        n = self._rows

        def stack(i: int) -> np.ndarray:
            if not snap_stats:
                return np.empty((0, self.num_tasks, n), dtype=dtype)
            return np.stack([s[i] for s in snap_stats])

        sample_ids = (
            np.arange(self.num_samples, dtype=np.int64)
            if self.probe_indices is None
            else self.probe_indices.copy()
        )
        return DataMaps(
            task_names=list(self.task_names),
            sample_ids=sample_ids,
            confidence=conf,
            variability=var,
            correctness=corr,
            count=count,
            targets=targets.T.to(torch.int32).cpu().numpy(),
            snapshot_epochs=sorted(snaps),
            snapshot_confidence=stack(0),
            snapshot_variability=stack(1),
            snapshot_correctness=stack(2),
            snapshot_kind=self.snapshot_kind,
            ddof=self.ddof,
            task_type=self.task_type,
            recording=self.recording,
            epochs=self.epoch,
            num_classes=self.num_classes,
        )

    # ------------------------------------------------------------ distributed
    @torch.no_grad()
    def sync(self) -> DataMapRecorder:
        """Merge every process's state into every process (in place, all-reduce).

        A collective: every rank calls it, after recording is complete (all ranks must have
        called :meth:`end_epoch` equally often). Afterwards the recorder holds the state of all
        processes together; further :meth:`update` / :meth:`end_epoch` calls raise, since a
        second merge would count the merged part twice. Without ``torch.distributed`` (or with
        one process) it does nothing. Uses the default process group; the state must be on a
        device the backend supports (CPU for gloo, CUDA for NCCL).
        """
        if world_size() > 1 and not self._synced:
            if self._state is None:
                self._allocate(torch.device("cpu"))
            raws = [self._state] + [self._snapshots[e] for e in sorted(self._snapshots)]
            if self._carry is not None:
                raws.append(self._carry)
            all_reduce(raws, self._targets, self)  # type: ignore[arg-type]
            self._synced = True
        return self

    def merged_state_dict(self) -> dict[str, Any]:
        """A state dict of all processes' states merged, from which recording can go on.

        A collective under ``torch.distributed`` (every rank calls it): merges a temporary copy
        (the recorder's memory once more, briefly), leaving this recorder as it was. Loaded
        into one process's recorder, it continues as if that process had recorded everything
        so far (for checkpoints written by one rank, e.g. Lightning's). Without
        ``torch.distributed`` (or with one process) it equals :meth:`state_dict`.
        """
        if world_size() <= 1 or self._synced:
            return self.state_dict()
        merged = copy.deepcopy(self)
        merged.sync()
        state = merged.state_dict()
        state["synced"] = False  # the merged state may record further
        return state

    # ------------------------------------------------------------------ reset
    def reset(self) -> None:
        """Forget everything recorded (statistics, snapshots, epoch count, scratch memory)."""
        self._state, self._targets, self._lut, self._carry = None, None, None, None
        self._snapshots, self._scratch = {}, {}
        self.epoch, self._synced, self.num_classes = 0, False, None

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume recording exactly (tensors are not copied)."""
        return {
            "version": _STATE_VERSION,
            "config": self._config(),
            "epoch": self.epoch,
            "synced": self._synced,
            "num_classes": self.num_classes,
            "state": None if self._state is None else dict(self._state),
            "targets": self._targets,
            "snapshots": {e: dict(s) for e, s in self._snapshots.items()},
            "carry": None if self._carry is None else dict(self._carry),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the configuration must match this recorder's.

        Raises
        ------
        ValueError
            If the state comes from a recorder with another configuration or is malformed.
        """
        if not isinstance(state_dict, dict) or state_dict.get("version") != _STATE_VERSION:
            raise ValueError("state_dict: expected a DataMapRecorder.state_dict() (version 1)")
        missing = {"config", "epoch", "synced", "num_classes", "state", "targets", "snapshots",
                   "carry"} - set(state_dict)  # fmt: skip
        if missing:
            raise ValueError(f"state_dict: missing entries {sorted(missing)}")
        mine, theirs = self._config(), state_dict.get("config")
        if mine != theirs:
            raise ValueError(
                f"state_dict: recorder configuration differs: saved {theirs}, this {mine}"
            )
        state = state_dict["state"]
        if state is not None:
            n, t = self._rows, self.num_tasks
            if tuple(state["s1"].shape) != (n, t) or tuple(state_dict["targets"].shape) != (
                n,
                t,
            ):
                raise ValueError(f"state_dict: expected state for {n} rows x {t} tasks")
        self.reset()
        self.epoch = int(state_dict["epoch"])
        self._synced = bool(state_dict["synced"])
        self.num_classes = state_dict["num_classes"]
        if state is not None:
            device = state["s1"].device
            self._state = clone(state)
            self._targets = state_dict["targets"].clone()
            self._snapshots = {int(e): clone(s) for e, s in state_dict["snapshots"].items()}
            carry = state_dict["carry"]
            self._carry = None if carry is None else clone(carry)
            if self.probe_indices is not None:
                self._lut = self._make_lut(device)

    def _config(self) -> dict[str, Any]:
        return {
            "num_tasks": self.num_tasks,
            "num_samples": self.num_samples,
            "task_names": list(self.task_names),
            "task_type": self.task_type,
            "ddof": self.ddof,
            "snapshot_epochs": list(self.snapshot_epochs),
            "snapshot_kind": self.snapshot_kind,
            "probe_indices": None if self.probe_indices is None else self.probe_indices.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"DataMapRecorder(num_tasks={self.num_tasks}, num_samples={self.num_samples}, "
            f"task_type={self.task_type!r}, epoch={self.epoch}, device={self.device})"
        )
