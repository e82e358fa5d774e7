"""Record per-task data maps (Dataset Cartography statistics) during multi-task training.

:class:`DataMapRecorder` keeps, per (task, sample), mergeable sums of the true-label
probability and of its square, the number of right predictions, and the observed target. It is
modelled on a torchmetrics ``Metric``: ``update`` / ``compute`` / ``reset`` / ``sync``, with its
state declared once (:data:`DATAMAP_STATE`, see :mod:`stgmtl.record.state`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from stgmtl._checks import (
    check_bool,
    check_choice,
    check_int,
    check_names,
    fail,
    sorted_unique_ints,
)
from stgmtl.batches import distributed_valid_mask
from stgmtl.datamaps import DataMaps, moments_to_stats
from stgmtl.record.checks import UpdateRules, check_update, check_values, raise_bad_values
from stgmtl.record.compact import (
    MAX_UPDATES,
    compact_state,
    packed_statistics,
    packed_targets,
)
from stgmtl.record.native import NativeKernel, flips_size, native_kernel, native_status
from stgmtl.record.state import Field, State, StateSpec, agree_across_ranks, world_size
from stgmtl.record.update import accumulate, scratch_buffer

__all__ = ["DataMapRecorder", "datamap_state", "distributed_valid_mask"]

_STATE_VERSION = 3
_SETTINGS = ("validate", "recording", "cpu_threads", "kernel")
LAYOUTS = ("compact", "float64")
_CONFIG_KEYS = ("num_tasks", "num_samples", "task_names", "task_type", "ddof",
                "snapshot_epochs", "snapshot_kind", "probe_indices")  # fmt: skip


def datamap_state(task_type: str) -> StateSpec:
    """The declared state of a :class:`DataMapRecorder` (``rows`` x ``tasks``).

    ``s1`` / ``s2``: float64 sums of ``p`` and ``p**2``; ``correct``: int32 right predictions;
    ``seen``: int64 updates per row; ``missing``: int32 masked labels (optional, allocated with
    the first mask); ``targets``: the observed label (int8 binary / int16 class id, ``-1`` not
    observed), merged by maximum and not part of snapshots.
    """
    target_dtype = torch.int8 if task_type == "binary" else torch.int16
    rt = ("rows", "tasks")
    return StateSpec([
        Field("s1", rt, torch.float64, "sum"),
        Field("s2", rt, torch.float64, "sum"),
        Field("correct", rt, torch.int32, "sum"),
        Field("seen", ("rows",), torch.int64, "sum"),
        Field("missing", rt, torch.int32, "sum", optional=True),
        Field("targets", rt, target_dtype, "max", fill=-1, snapshot=False),
    ])  # fmt: skip


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

    State layouts (``layout``), both exact-merge friendly, so :meth:`sync` combines the
    processes' states with sums into the single-process result:

    * ``"compact"`` (default; :mod:`stgmtl.record.compact`): per (sample, task) one int64
      word holding integer sums of ``q = round(p * 8191)`` and ``q**2``, an 8-bit right count
      and the binary target bit. Merges are exact and order-independent. **Error bound**
      against the float64 layout: confidence and variability within ``6.2e-5`` (``ddof=1``
      variability within ``8.8e-5``), correctness, counts and targets exact. A sample can be
      observed at most **255 times** (``MAX_UPDATES``): the update (or :meth:`sync`) that
      would pass it raises ``RuntimeError`` and changes nothing; use ``layout="float64"``
      for longer recordings.
    * ``"float64"``: float64 sums of ``p`` and ``p**2``, int32 right counts (integers merge
      exactly, float64 sums up to rounding order); variability is computed as
      ``sqrt((S2 - S1**2 / n) / (n - ddof))`` in float64 (absolute error about 1e-8 when the
      true value is 0). No limit on the observations.

    Memory, sample-major ``(N, T)`` torch tensors on the logits' device: compact, **8 bytes
    per (task, sample)** for binary tasks (10 for multi-class: + int16 targets), **+1** once
    a mask is used, **+8 per snapshot**; float64, **21 bytes** (16 float64 sums + 4 int32
    right count + 1 int8 target; 22 for multi-class), **+4** with a mask, **+20 per
    snapshot**; either one more snapshot's worth while an ``"epoch"`` snapshot is open, plus
    8 bytes per sample and per-step scratch of about ``B * T`` bytes plus
    ``30 * min(B * T, 2**18)`` (on CPU a batch is processed in row chunks of about 2**18
    values, which stay in cache; on CUDA in one piece, scratch about ``B * T * 30`` bytes).
    For ``T * N`` too large, record on ``probe_indices`` only: updates for other samples are
    dropped before any math. Example: T = 100 tasks x N = 50,000 samples = 40 MB compact
    (105 MB float64); T = 10,000 x 50,000 = 4.0 GB compact (10.5 GB float64).

    Devices: the state lives on the device of the first ``logits`` (later inputs are moved
    there). On CPU, binary batches go through the fused native kernel
    (:mod:`stgmtl.record.native`: one checking and one update pass, rows in batch order, the
    same result for any thread count) where it builds, else the pure-torch update; its scatters
    are deterministic (``index_add_`` for the float sums on one thread,
    ``index_put_(accumulate=True)`` otherwise); on CUDA ``index_add_`` (atomics: float sums may
    differ in the last bits between runs). With
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
        statistics are kept as snapshots. A set: order and repeats carry no meaning, so it is
        stored sorted and without repeats (``[3, 2, 2]`` becomes ``[2, 3]``).
    snapshot_kind : {"cumulative", "epoch"}
        Snapshot the statistics since the start (what STG-MTL clusters) or of that epoch only.
    probe_indices : array-like of int, optional
        Record only these sample ids; others are ignored. A set: stored sorted and without
        repeats (``[3, 1, 1]`` becomes ``[1, 3]``), the order of the data maps' columns.
    validate : bool
        Check every update's values (finite logits, index and target ranges) with one fused
        reduction per tensor; a bad batch raises and leaves the state unchanged.
    recording : {"manual", "train", "eval"}
        Recording mode stored in the data maps (``fit_datamaps`` sets ``"train"`` or ``"eval"``).
    cpu_threads : int or None
        Threads used while recording a CPU batch (torch's setting is restored afterwards);
        ``None`` uses torch's setting. Default 1: the recording passes are short and
        memory-bound, and on a shared CPU every multi-threaded pass can wait for a descheduled
        thread (measured in benchmarks/recording_overhead.py).
    kernel : {"auto", "native", "torch"}
        How a CPU batch of binary tasks is added. ``"native"``: the fused C++ kernel of
        :mod:`stgmtl.record.native` (one checking pass and one update pass over the batch,
        built on first use in about a second; raises if it cannot be built). ``"torch"``: the
        pure-torch update of :mod:`stgmtl.record.update`. ``"auto"`` (default): native where it
        is available, else torch. Both compute ``p`` in the logits' precision (float32
        logits: absolute error below ``1e-7``); CUDA and multi-class batches always take the
        torch path. In the compact layout the native kernel checks and adds a batch in one
        pass and undoes a refused batch exactly.
    layout : {"compact", "float64"}
        The state layout (see above): ``"compact"`` (default, 8 bytes a cell, the stated error
        bound, at most 255 observations of a sample) or ``"float64"`` (21 bytes a cell, float64
        sums). A loaded state dict keeps the layout it was saved in (states saved before
        stgmtl 0.3 are float64).
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
        recording: Literal["manual", "train", "eval"] = "manual",
        cpu_threads: int | None = 1,
        kernel: Literal["auto", "native", "torch"] = "auto",
        layout: Literal["compact", "float64"] = "compact",
    ) -> None:
        self.num_tasks = check_int("num_tasks", num_tasks, low=1)
        self.num_samples = check_int("num_samples", num_samples, low=1)
        self.task_names = check_names("task_names", task_names, self.num_tasks)
        self.task_type = check_choice("task_type", task_type, ("binary", "multiclass"))
        self.ddof = check_choice("ddof", ddof, (0, 1))
        self.snapshot_kind = check_choice("snapshot_kind", snapshot_kind, ("cumulative", "epoch"))
        self.snapshot_epochs: list[int] = (
            []
            if snapshot_epochs is None or len(snapshot_epochs) == 0
            else sorted_unique_ints("snapshot_epochs", snapshot_epochs, low=1).tolist()
        )
        self.probe_indices: np.ndarray | None = (
            None
            if probe_indices is None
            else sorted_unique_ints(
                "probe_indices", probe_indices, low=0, high=self.num_samples - 1
            )
        )
        self.validate = check_bool("validate", validate)
        self.recording = check_choice("recording", recording, ("manual", "train", "eval"))
        if cpu_threads is not None:
            check_int("cpu_threads", cpu_threads, low=1)
        self.cpu_threads = cpu_threads
        self.kernel = check_choice("kernel", kernel, ("auto", "native", "torch"))
        if self.kernel == "native" and native_kernel() is None:
            why = native_status()["reason"]
            raise fail("kernel", f"'auto' or 'torch' (no native kernel here: {why})", kernel)
        self._set_layout(check_choice("layout", layout, LAYOUTS))
        self.num_classes: int | None = None
        self._lut: torch.Tensor | None = None
        self._state: State | None = None
        self._snapshots: dict[int, State] = {}
        # "epoch" snapshots: the state before a snapshot epoch is moved here and the live state
        # restarts at zero, so that the epoch's sums are exact; it is merged back at epoch end.
        self._carry: State | None = None
        self._scratch: dict[str, torch.Tensor] = {}
        self.epoch = 0
        self._synced = False

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Any], **settings: Any) -> DataMapRecorder:
        """A recorder with the configuration saved in ``state_dict``, resumed from it.

        Parameters
        ----------
        state_dict : dict
            From :meth:`state_dict` (or a checkpoint that holds one).
        **settings
            The settings a state dict does not fix: ``validate``, ``recording``,
            ``cpu_threads``, ``kernel``.
        """
        config = _config_of(state_dict)
        unknown = sorted(set(settings) - set(_SETTINGS))
        if unknown:
            raise fail("settings", ", ".join(_SETTINGS), unknown)
        rec = cls(**config, **settings)
        rec.load_state_dict(state_dict)
        return rec

    # ------------------------------------------------------------------ state
    def _set_layout(self, layout: str) -> None:
        self.layout = layout
        compact = layout == "compact"
        self.spec = compact_state(self.task_type) if compact else datamap_state(self.task_type)
        self._snap_spec = self.spec.snapshot_spec()
        self._cells = "packed" if compact else "correct"  # a (rows, tasks) field

    @property
    def device(self) -> torch.device | None:
        """Device of the state, or ``None`` before the first update."""
        return None if self._state is None else self._state["seen"].device  # type: ignore[union-attr]

    @property
    def rows(self) -> int:
        """Rows of the state: ``num_samples``, or the number of ``probe_indices``."""
        return self.num_samples if self.probe_indices is None else len(self.probe_indices)

    def _dims(self) -> dict[str, int]:
        return {"rows": self.rows, "tasks": self.num_tasks}

    def _allocate(self, device: torch.device) -> None:
        self._state = self.spec.allocate(self._dims(), device)
        if self.probe_indices is not None and self._lut is None:
            self._lut = self._make_lut(device)
        if self.snapshot_kind == "epoch" and (self.epoch + 1) in self.snapshot_epochs:
            self._carry = self._snap_spec.clone(self._state)

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

    def _rules(self) -> UpdateRules:
        return UpdateRules(self.num_tasks, self.num_samples, self.task_type, self.num_classes,
                           self.device, self.validate)  # fmt: skip

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
        rules = self._rules()
        logits, targets, indices, mask, valid = check_update(
            rules, logits, targets, indices, mask, valid
        )
        kernel = self._native(logits, targets)
        if kernel is not None:
            self._update_native(kernel, logits, targets, indices, mask, valid)
            return
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
                buf = scratch_buffer(
                    self._scratch, "yb", tuple(targets.shape), torch.bool, targets.device
                )
                yb = check_values(rules, logits, targets, mask, self._scratch, buf)
            if logits.ndim == 3 and self.num_classes is None:
                self.num_classes = int(logits.shape[2])
            if rows.numel() == 0:
                return
            if self._state is None:
                self._allocate(logits.device)
            assert self._state is not None
            if mask is not None:
                self.spec.enable(self._state, "missing", like=self._cells)
            compact = self.layout == "compact"
            if compact:
                self._count_rows(rows)
            targets_state = self._state.get("targets")
            accumulate(self._state, targets_state, self._scratch, logits, targets, rows, mask, yb,
                       count=not compact)  # fmt: skip
        finally:
            if threads is not None and threads != before:
                torch.set_num_threads(before)

    def _count_rows(self, rows: torch.Tensor) -> None:
        """Compact layout: count the rows' updates, refusing one past :data:`MAX_UPDATES`.

        Checked at once on CPU or with ``validate=True`` (one small host transfer), else at
        :meth:`end_epoch` and :meth:`compute`. A refused batch leaves the counts as they were.
        """
        assert self._state is not None
        seen = self._state["seen"]
        assert seen is not None
        ones = torch.ones_like(rows)
        seen.index_put_((rows,), ones, accumulate=True)
        if self.validate or rows.device.type == "cpu":
            base = self._carried_seen()
            top = int((seen[rows] if base is None else seen[rows] + base[rows]).max())
            if top > MAX_UPDATES:
                seen.index_put_((rows,), -ones, accumulate=True)
                raise _too_many(top)

    def _carried_seen(self) -> torch.Tensor | None:
        """Counts of an open ``"epoch"`` snapshot's carried state (they count towards the limit)."""
        return None if self._carry is None else self._carry["seen"]

    def _check_counts(self) -> None:
        """Compact layout: raise if a sample was counted past :data:`MAX_UPDATES` (no check ran)."""
        if self.layout == "compact" and self._state is not None:
            seen = self._state["seen"]
            assert seen is not None
            base = self._carried_seen()
            seen = seen if base is None else seen + base
            top = int(seen.max()) if seen.numel() else 0
            if top > MAX_UPDATES:
                raise _too_many(top)

    def _native(self, logits: torch.Tensor, targets: torch.Tensor) -> NativeKernel | None:
        """The native kernel when it applies: CPU, binary tasks, ``kernel`` not "torch"."""
        if self.kernel == "torch" or self.task_type != "binary" or logits.device.type != "cpu":
            return None
        return native_kernel()

    def _update_native(
        self,
        kernel: NativeKernel,
        logits: torch.Tensor,
        targets: torch.Tensor,
        indices: torch.Tensor,
        mask: torch.Tensor | None,
        valid: torch.Tensor | None,
    ) -> None:
        """One checking and one update pass in C++; nothing changes if the check fails."""
        if self._lut is None and self.probe_indices is not None:
            self._lut = self._make_lut(logits.device)
        rows = indices if self._lut is None else self._lut[indices]
        if valid is not None:
            rows = torch.where(valid, rows, -1)
        if rows.numel() == 0 or (
            (self._lut is not None or valid is not None) and not bool((rows >= 0).any())
        ):
            return
        z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
        y = targets if targets.dtype != torch.int16 else targets.to(torch.int32)
        fresh, carry = self._state is None, self._carry
        if fresh:
            self._allocate(logits.device)
        state = self._state
        assert state is not None
        new_missing = mask is not None and state.get("missing") is None
        if new_missing:
            self.spec.enable(state, "missing", like=self._cells)
        threads = self.cpu_threads if self.cpu_threads is not None else torch.get_num_threads()
        try:
            if self.layout == "compact":
                size = flips_size(z.shape[0], z.shape[1])
                flips = scratch_buffer(self._scratch, "flips", (size,), torch.int64, z.device)
                refused: Any = kernel.compact_update(
                    z, y, rows, mask, state, validate=self.validate, threads=threads,
                    flips=flips, base=self._carried_seen(),
                )  # fmt: skip
            else:
                refused = kernel.binary_update(
                    z, y, rows, mask, state, validate=self.validate, threads=threads
                )
        except Exception:  # e.g. a row out of range: nothing was written
            self._undo_allocation(fresh, carry, new_missing)
            raise
        if refused is not None:  # put back what this call allocated, then explain
            self._undo_allocation(fresh, carry, new_missing)
            if isinstance(refused, int):
                raise _too_many(refused)
            raise_bad_values(refused, 1, mask is not None)

    def _undo_allocation(self, fresh: bool, carry: State | None, new_missing: bool) -> None:
        if fresh:
            self._state, self._carry = None, carry
        elif new_missing and self._state is not None:
            self._state["missing"] = None

    # ----------------------------------------------------------------- epochs
    def end_epoch(self) -> None:
        """Mark the end of an epoch; keep a snapshot if the epoch is in ``snapshot_epochs``."""
        self._check_open()
        if self._state is None:
            self._allocate(torch.device("cpu"))
        assert self._state is not None
        self._check_counts()
        self.epoch += 1
        if self.epoch in self.snapshot_epochs:
            self._snapshots[self.epoch] = self._snap_spec.clone(self._state)
        if self._carry is not None:
            self._snap_spec.merge_(self._state, self._carry)
            self._carry = None
        if self.snapshot_kind == "epoch" and (self.epoch + 1) in self.snapshot_epochs:
            self._carry = self._snap_spec.clone(self._state)
            self._state.update(self._snap_spec.zeros_like(self._state))

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
        assert self._state is not None
        self._check_counts()
        state, snaps = self._state, self._snapshots
        if self._carry is not None:  # mid-epoch: live part + carried part
            state = self._snap_spec.merge_(self.spec.clone(state), self._carry)
        if sync is None:
            sync = world_size() > 1 and not self._synced
        if sync and world_size() > 1:
            state = self.spec.clone(state) if state is self._state else state
            snaps = {e: self._snap_spec.clone(s) for e, s in snaps.items()}
            self._all_reduce([state], [snaps[e] for e in sorted(snaps)])
        conf, var, corr, count = self._statistics(state, dtype)
        snap_stats = [self._statistics(snaps[e], dtype) for e in sorted(snaps)]
        n = self.rows

        def stack(i: int) -> np.ndarray:
            if not snap_stats:
                return np.empty((0, self.num_tasks, n), dtype=dtype)
            return np.stack([s[i] for s in snap_stats])

        sample_ids = (
            np.arange(self.num_samples, dtype=np.int64)
            if self.probe_indices is None
            else self.probe_indices.copy()
        )
        targets = state.get("targets")
        return DataMaps(
            task_names=list(self.task_names),
            sample_ids=sample_ids,
            confidence=conf,
            variability=var,
            correctness=corr,
            count=count,
            targets=packed_targets(state)
            if targets is None
            else targets.T.to(torch.int32).cpu().numpy(),
            snapshot_epochs=sorted(snaps),
            snapshot_confidence=stack(0),
            snapshot_variability=stack(1),
            snapshot_correctness=stack(2),
            snapshot_kind=self.snapshot_kind,
            ddof=self.ddof,
            task_type=self.task_type,
            recording=self.recording,
            epochs=self.epoch,
            num_classes=self.num_classes if self.task_type == "multiclass" else None,
            state_layout=self.layout,
        )

    def _statistics(self, raw: State, dtype: Any) -> tuple[np.ndarray, ...]:
        """(T, N) confidence, variability, correctness (``dtype``) and int32 count."""
        if self.layout == "compact":
            return packed_statistics(raw, self.ddof, dtype)
        s1, s2, right, seen = (raw[k] for k in ("s1", "s2", "correct", "seen"))
        assert s1 is not None and s2 is not None and right is not None and seen is not None
        n = seen.unsqueeze(1).expand_as(right)
        missing = raw.get("missing")
        if missing is not None:
            n = n - missing

        def host(x: torch.Tensor) -> np.ndarray:
            return x.T.cpu().numpy()

        count = np.ascontiguousarray(host(n.to(torch.int32)))
        stats = moments_to_stats(host(s1), host(s2), host(right), count, self.ddof)
        return (*(np.ascontiguousarray(s, dtype=dtype) for s in stats), count)

    # ------------------------------------------------------------ distributed
    def _all_reduce(self, live: list[State], snapshots: list[State]) -> None:
        """Sum (and max) states over all ranks, after checking the ranks are compatible."""
        ref = live[0]["seen"]
        assert ref is not None
        agree_across_ranks(
            {"epochs": self.epoch, "states": len(live) + len(snapshots), "tasks": self.num_tasks,
             "rows": self.rows, "snapshot epochs": sum(self._snapshots)},
            ref.device, "call end_epoch() equally on every rank",
        )  # fmt: skip
        if self.task_type == "multiclass":
            classes = torch.tensor([self.num_classes or -1], device=ref.device)
            torch.distributed.all_reduce(classes, op=torch.distributed.ReduceOp.MAX)
            if self.num_classes is None and int(classes) >= 0:
                self.num_classes = int(classes)
        if self.layout == "compact":  # the merged counts must fit the packed words
            carried = self._carried_seen()
            for s in [*live, *snapshots]:
                seen = s["seen"]
                assert seen is not None
                total = seen.clone()
                if s is self._state and carried is not None:  # merged with it later
                    total += carried
                torch.distributed.all_reduce(total)
                top = int(total.max()) if total.numel() else 0
                if top > MAX_UPDATES:
                    raise _too_many(top, merged=True)
        self.spec.all_reduce_(live)
        self._snap_spec.all_reduce_(snapshots)

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
            assert self._state is not None
            snaps = [self._snapshots[e] for e in sorted(self._snapshots)]
            if self._carry is not None:
                snaps.append(self._carry)
            self._all_reduce([self._state], snaps)
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
        self._state, self._lut, self._carry = None, None, None
        self._snapshots, self._scratch = {}, {}
        self.epoch, self._synced, self.num_classes = 0, False, None

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume recording exactly (tensors are not copied)."""
        return {
            "version": _STATE_VERSION,
            "layout": self.layout,
            "config": self._config(),
            "epoch": self.epoch,
            "synced": self._synced,
            "num_classes": self.num_classes,
            "state": None if self._state is None else dict(self._state),
            "snapshots": {e: dict(s) for e, s in self._snapshots.items()},
            "carry": None if self._carry is None else dict(self._carry),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the configuration must match this recorder's.

        Every state tensor is checked against the declared state (names, shapes, dtypes)
        before anything changes.

        Raises
        ------
        ValueError
            If the state comes from a recorder with another configuration or is malformed.
        """
        sd = _upgrade(state_dict)
        layout = sd["layout"]
        if layout not in LAYOUTS:
            raise fail("state_dict['layout']", f"one of {list(LAYOUTS)}", layout)
        mine, theirs = self._config(), sd["config"]
        if mine != theirs:
            diff = sorted(k for k in mine if mine.get(k) != theirs.get(k))
            raise ValueError(
                f"state_dict: expected the configuration of this recorder, got one that differs "
                f"in {diff}: saved {[theirs.get(k) for k in diff]}, this {[mine[k] for k in diff]}"
            )
        state, dims = sd["state"], self._dims()
        before = self.layout
        self._set_layout(layout)  # a saved state resumes in its own layout
        try:
            if state is not None:
                self.spec.validate(state, dims, "state_dict['state']")
                for e, snap in sd["snapshots"].items():
                    self._snap_spec.validate(snap, dims, f"state_dict['snapshots'][{e}]")
                if sd["carry"] is not None:
                    self._snap_spec.validate(sd["carry"], dims, "state_dict['carry']")
        except ValueError:
            self._set_layout(before)
            raise
        self.reset()
        self.epoch = int(sd["epoch"])
        self._synced = bool(sd["synced"])
        self.num_classes = sd["num_classes"]
        if state is not None:
            self._state = self.spec.clone(state)
            self._snapshots = {int(e): self._snap_spec.clone(s) for e, s in sd["snapshots"].items()}
            carry = sd["carry"]
            self._carry = None if carry is None else self._snap_spec.clone(carry)
            if self.probe_indices is not None:
                self._lut = self._make_lut(self.device)  # type: ignore[arg-type]

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


def _too_many(top: int, merged: bool = False) -> RuntimeError:
    what = "the processes' merged records would hold" if merged else "this update would make"
    return RuntimeError(
        f"DataMapRecorder: {what} {top} observations of one sample, more than the "
        f"{MAX_UPDATES} the compact layout's 8-bit counters hold; the state is unchanged. "
        f"Record fewer updates per sample, or use layout='float64' (21 bytes a cell)"
    )


def _upgrade(state_dict: Any) -> dict[str, Any]:
    """Check a state dict; versions 1 and 2 (float64 layout) become version 3.

    Version 1 kept the targets beside the state; versions 1 and 2 have no ``layout`` entry
    (their states are in the float64 layout).
    """
    if not isinstance(state_dict, dict) or state_dict.get("version") not in (1, 2, _STATE_VERSION):
        raise fail(
            "state_dict",
            f"a DataMapRecorder.state_dict() (version 1 to {_STATE_VERSION})",
            type(state_dict).__name__
            if not isinstance(state_dict, dict)
            else f"version {state_dict.get('version')!r}",
        )
    need = {"config", "epoch", "synced", "num_classes", "state", "snapshots", "carry"}
    if state_dict["version"] == 1:
        need.add("targets")
    if state_dict["version"] >= 3:
        need.add("layout")
    missing = need - set(state_dict)
    if missing:
        raise ValueError(f"state_dict: expected entries {sorted(need)}, missing {sorted(missing)}")
    sd = dict(state_dict)
    if sd["version"] == 1:
        sd["state"] = None if sd["state"] is None else {**sd["state"], "targets": sd["targets"]}
    if sd["version"] < 3:
        sd["layout"] = "float64"
        sd["version"] = _STATE_VERSION
    if not isinstance(sd["config"], dict) or not isinstance(sd["snapshots"], dict):
        raise fail("state_dict", "'config' and 'snapshots' dicts", sorted(sd))
    return sd


def _config_of(state_dict: Any) -> dict[str, Any]:
    """The constructor arguments saved in a state dict."""
    config = _upgrade(state_dict)["config"]
    missing = [k for k in _CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"state_dict['config']: expected {list(_CONFIG_KEYS)}, missing {missing}")
    return {k: config[k] for k in _CONFIG_KEYS}
