"""The affinity-probe protocol: one base class for every training-time affinity signal.

A probe measures a ``(T, T)`` matrix on some training steps (every ``every``-th step) and keeps
float64 sums and int64 counts of it, declared once in a :class:`~stgmtl.record.state.StateSpec`
so that :meth:`AffinityProbe.sync` merges processes exactly, as :class:`~stgmtl.DataMapRecorder`
does. The recorded affinity is the mean over probed steps, per pair; snapshots are the means of
single epochs.

Three ways to run a probe, all through the same measurement:

* in :func:`stgmtl.fit_datamaps` / :func:`stgmtl.record_affinity` / :func:`stgmtl.loop.train_loop`
  as a hook (``hooks=[probe]``): it runs after ``backward`` and before ``optimizer.step()``;
* in your own loop: call :meth:`AffinityProbe.update` before ``optimizer.step()`` with the model,
  the optimizer, the batch and (optionally) a per-task loss function, and
  :meth:`AffinityProbe.end_epoch` after each epoch;
* then :meth:`AffinityProbe.compute` returns a :class:`~stgmtl.TaskAffinity`.

A probe never changes training: it writes no ``.grad``, parameter, buffer (BatchNorm running
statistics are updated in copies), optimizer state or global RNG state (its own forward passes
draw dropout masks from a private stream seeded by ``random_state`` and the probe's step
count). This is tested by training with and without each probe and comparing the weights bit
for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from stgmtl._checks import check_bool, check_int, check_names, fail, seed_from
from stgmtl.affinity import TaskAffinity
from stgmtl.loop import Batch, Hook, Step, missing_mask, task_losses
from stgmtl.record.functional import unwrap
from stgmtl.record.state import Field, State, StateSpec, agree_across_ranks, world_size

__all__ = ["AFFINITY_STATE", "AffinityProbe", "LossOf", "ProbeContext", "probe_seed"]

LossOf = Callable[[torch.Tensor, Batch], torch.Tensor]
_STATE_VERSION = 1

#: The declared state of every probe: float64 sums of the per-step matrices and int64 counts of
#: the steps that observed each pair (both merged by sum).
AFFINITY_STATE = StateSpec(
    [
        Field("sum", ("tasks", "tasks"), torch.float64, "sum"),
        Field("count", ("tasks", "tasks"), torch.int64, "sum"),
    ]
)


def probe_seed(random_state: int, index: int) -> int:
    """The seed of a probe's private RNG stream at its ``index``-th probed step."""
    return int(np.random.SeedSequence([random_state, index]).generate_state(1)[0])


@dataclass
class ProbeContext:
    """What a probe's measurement sees of one probed step.

    Attributes
    ----------
    model : nn.Module
        The model (unwrapped from DDP / DataParallel).
    optimizer : torch.optim.Optimizer or None
    batch : Batch
    loss_of : callable
        ``loss_of(logits, batch) -> (T,)`` per-task losses.
    index : int
        0-based count of probed steps before this one.
    seed : int
        Seed of this step's private RNG stream (:func:`probe_seed`).
    logits : torch.Tensor or None
        The training forward's logits when the probe runs as a hook.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    batch: Batch
    loss_of: LossOf
    index: int
    seed: int
    logits: torch.Tensor | None = None


class AffinityProbe(Hook):
    """Base class of the training-time affinity probes (see the module docstring).

    Subclasses set :attr:`signal`, :attr:`orientation` and :attr:`formula` and implement
    :meth:`_measure`, returning one step's float64 ``(T, T)`` matrix and a bool mask of the
    pairs it observed.

    Parameters
    ----------
    task_names : sequence of str, optional
        Task names (default ``task_0 ...``); fixes ``T`` when given.
    every : int
        Probe every ``every``-th step (the first step is probed).
    loss_fn : callable, optional
        ``loss_fn(logits, targets) -> (T,)`` per-task losses. Default: the loop's per-task loss
        when run as a hook, else :func:`stgmtl.loop.task_losses` (BCE / cross-entropy over the
        observed labels) with ``pos_weight``.
    pos_weight : sequence of float, optional
        Per-task positive weight of the default BCE loss.
    snapshot_epochs : "all", sequence of int or None
        Epochs (1-based) whose own mean matrix is kept as a snapshot (``None``: none).
    random_state : int
        Seeds the private RNG stream of the probe's forward passes and its source rotation.
    """

    signal: ClassVar[str] = ""
    orientation: ClassVar[str] = "source->recipient"
    formula: ClassVar[str] = ""

    def __init__(
        self,
        *,
        task_names: Sequence[str] | None = None,
        every: int = 1,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        pos_weight: Sequence[float] | torch.Tensor | None = None,
        snapshot_epochs: str | Sequence[int] | None = "all",
        random_state: int = 0,
    ) -> None:
        self.task_names = None if task_names is None else list(task_names)
        if self.task_names is not None:
            check_names("task_names", self.task_names, len(self.task_names))
        self.every = check_int("every", every, low=1)
        if loss_fn is not None and not callable(loss_fn):
            raise fail(
                "loss_fn", "a callable (logits, targets) -> (T,) or None", loss_fn, error=TypeError
            )
        self.loss_fn = loss_fn
        self.pos_weight = None if pos_weight is None else torch.as_tensor(pos_weight).float()
        if snapshot_epochs is None or isinstance(snapshot_epochs, str):
            if snapshot_epochs not in (None, "all"):
                raise fail(
                    "snapshot_epochs", "'all', a sequence of epochs or None", snapshot_epochs
                )
            self.snapshot_epochs: str | list[int] | None = snapshot_epochs
        else:
            self.snapshot_epochs = sorted(
                {check_int("snapshot_epochs", e, low=1) for e in snapshot_epochs}
            )
        self.random_state = seed_from("random_state", random_state)
        self.spec = AFFINITY_STATE
        self.reset()

    # ---------------------------------------------------------------- config
    @property
    def num_tasks(self) -> int | None:
        """``T`` (``None`` until known)."""
        return None if self.task_names is None else len(self.task_names)

    def _settings(self) -> dict[str, Any]:
        """The subclass's settings (JSON-serialisable), stored in ``meta`` and state dicts."""
        return {}

    def _config(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "task_names": self.task_names,
            "every": self.every,
            "snapshot_epochs": self.snapshot_epochs,
            "random_state": self.random_state,
            **self._settings(),
        }

    def reset(self) -> None:
        """Forget everything recorded."""
        self._state: State | None = None  # the open epoch
        self._past: State | None = None  # closed epochs, merged
        self._snapshots: dict[int, State] = {}
        self.epoch = 0
        self.steps_seen = 0
        self.steps_probed = 0
        self._synced = False

    # ---------------------------------------------------------------- update
    def update(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        inputs: Any,
        targets: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> bool:
        """Probe one training step of your own loop; call it before ``optimizer.step()``.

        Parameters
        ----------
        model : nn.Module
            The model being trained (DDP / DataParallel wrappers are looked through).
        optimizer : torch.optim.Optimizer or None
            The optimizer (needed by the TAG lookahead).
        inputs : tensor, tuple or dict
            The batch's model inputs (``model(x)``, ``model(*x)``, ``model(**x)``).
        targets : torch.Tensor
            ``(B, T)`` labels (NaN or negative = missing).
        mask : torch.Tensor, optional
            ``(B, T)`` bool observed labels (default: from ``targets``).
        loss_fn : callable, optional
            ``loss_fn(logits, targets) -> (T,)`` per-task losses for this call (default: the
            probe's ``loss_fn``, else :func:`stgmtl.loop.task_losses`).

        Returns
        -------
        bool
            Whether this step was probed (every ``every``-th call is).

        Raises
        ------
        TypeError, ValueError
            On bad input; the probe's state is then unchanged.
        """
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise fail(
                "optimizer",
                "a torch.optim.Optimizer or None",
                type(optimizer).__name__,
                error=TypeError,
            )
        if not isinstance(targets, torch.Tensor) or targets.ndim != 2:
            raise fail(
                "targets",
                "a (B, T) tensor",
                getattr(targets, "shape", targets),
                error=TypeError if not isinstance(targets, torch.Tensor) else ValueError,
            )
        if mask is not None and (
            not isinstance(mask, torch.Tensor)
            or mask.dtype != torch.bool
            or mask.shape != targets.shape
        ):
            raise fail(
                "mask",
                f"a bool tensor of shape {tuple(targets.shape)}",
                getattr(mask, "shape", mask),
            )
        if loss_fn is not None and not callable(loss_fn):
            raise fail(
                "loss_fn", "a callable (logits, targets) -> (T,) or None", loss_fn, error=TypeError
            )
        batch = Batch(
            inputs,
            targets,
            torch.empty(0, dtype=torch.long),
            missing_mask(targets) if mask is None else mask,
            None,
        )
        return self._step(model, optimizer, batch, self._loss_of(loss_fn), None)

    def before_step(self, step: Step) -> None:
        """Hook: probe the loop's step (after ``backward``, before ``optimizer.step()``)."""
        loss_of = step.loss_of if self.loss_fn is None and step.loss_of is not None else None
        self._step(
            step.model,
            step.optimizer,
            step.batch,
            loss_of if loss_of is not None else self._loss_of(None),
            step.logits,
        )

    def _loss_of(self, loss_fn: Callable[..., torch.Tensor] | None) -> LossOf:
        fn = loss_fn if loss_fn is not None else self.loss_fn
        if fn is not None:
            return lambda logits, batch: fn(logits, batch.targets)
        pw = self.pos_weight

        def default(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
            w = None if pw is None else pw.to(logits.device)
            return task_losses(logits, batch.targets, batch.mask, w)

        return default

    def _step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        batch: Batch,
        loss_of: LossOf,
        logits: torch.Tensor | None,
    ) -> bool:
        if self._synced:
            raise RuntimeError(
                f"this {type(self).__name__} was merged with sync(); record everything before "
                "sync(), or use compute(), which merges a copy"
            )
        model = unwrap(model)
        t = int(batch.targets.shape[1])
        if self.task_names is not None and t != len(self.task_names):
            raise fail("targets", f"{len(self.task_names)} tasks (columns)", f"{t} columns")
        if self.steps_seen % self.every != 0:
            self.steps_seen += 1
            return False
        ctx = ProbeContext(
            model,
            optimizer,
            batch,
            loss_of,
            self.steps_probed,
            probe_seed(self.random_state, self.steps_probed),
            logits,
        )
        values, observed = self._measure(ctx)
        if values.shape != (t, t) or observed.shape != (t, t):
            raise RuntimeError(f"{type(self).__name__}: measured {tuple(values.shape)}, need {t}")
        if self.task_names is None:
            self.task_names = [f"task_{i}" for i in range(t)]
        if self._state is None:
            self._allocate(values.device)
        assert self._state is not None
        s, c = self._state["sum"], self._state["count"]
        assert s is not None and c is not None
        v = values.to(device=s.device, dtype=torch.float64)
        o = observed.to(s.device) & torch.isfinite(v)
        s.add_(torch.where(o, v, 0.0))
        c.add_(o.to(torch.int64))
        self.steps_seen += 1
        self.steps_probed += 1
        return True

    def _measure(self, ctx: ProbeContext) -> tuple[torch.Tensor, torch.Tensor]:
        """One probed step's ``(T, T)`` values and the bool mask of observed pairs."""
        raise NotImplementedError

    # ----------------------------------------------------------------- state
    def _dims(self) -> dict[str, int]:
        assert self.task_names is not None
        return {"tasks": len(self.task_names)}

    def _allocate(self, device: torch.device) -> None:
        self._state = self.spec.allocate(self._dims(), device)
        self._past = self.spec.allocate(self._dims(), device)

    def _keeps_snapshot(self, epoch: int) -> bool:
        if self.snapshot_epochs is None:
            return False
        return self.snapshot_epochs == "all" or epoch in self.snapshot_epochs

    def end_epoch(self) -> None:
        """Close an epoch (keeping its own mean as a snapshot if asked)."""
        if self._synced:
            raise RuntimeError("end_epoch() after sync(): record everything before sync()")
        self.epoch += 1
        if self._state is None:
            if self.task_names is None:
                return  # nothing seen yet: nothing to close
            self._allocate(torch.device("cpu"))
        assert self._state is not None and self._past is not None
        if self._keeps_snapshot(self.epoch):
            self._snapshots[self.epoch] = self.spec.clone(self._state)
        self.spec.merge_(self._past, self._state)
        self._state = self.spec.zeros_like(self._state)

    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        """Hook: close the epoch."""
        self.end_epoch()

    # --------------------------------------------------------------- compute
    def _totals(self) -> State:
        assert self._state is not None and self._past is not None
        return self.spec.merge_(self.spec.clone(self._past), self._state)

    @torch.no_grad()
    def compute(self, *, sync: bool | None = None) -> TaskAffinity:
        """The recorded affinity: per pair, the mean over probed steps.

        Parameters
        ----------
        sync : bool, optional
            Merge all processes first (a collective; default: when ``torch.distributed`` runs
            more than one process and :meth:`sync` was not called). Works on a copy.

        Returns
        -------
        TaskAffinity
            ``values`` NaN where a pair was never observed; ``counts`` the probed steps per pair;
            ``snapshots`` each snapshot epoch's own mean; ``meta`` the formula and settings.
        """
        if self._state is None:
            raise RuntimeError(f"{type(self).__name__}: nothing recorded yet (call update first)")
        total = self._totals()
        snaps = {e: self.spec.clone(s) for e, s in self._snapshots.items()}
        steps = torch.tensor([self.steps_seen, self.steps_probed], dtype=torch.int64)
        if sync is None:
            sync = world_size() > 1 and not self._synced
        if sync and world_size() > 1:
            self._all_reduce([total], [snaps[e] for e in sorted(snaps)], steps)
        epochs = sorted(snaps)
        return TaskAffinity(
            task_names=list(self.task_names or []),
            values=self._mean(total),
            signal=self.signal,
            orientation=self.orientation,
            counts=total["count"].cpu().numpy(),  # type: ignore[union-attr]
            snapshot_epochs=epochs,
            snapshots=np.stack([self._mean(snaps[e]) for e in epochs]) if epochs else None,
            meta={
                "formula": self.formula,
                "source": "training probe",
                "epochs": self.epoch,
                "steps_seen": int(steps[0]),
                "steps_probed": int(steps[1]),
                "snapshot_kind": "epoch",
                **{k: v for k, v in self._config().items() if k not in ("task_names", "signal")},
            },
        )

    def _mean(self, state: State) -> np.ndarray:
        s, c = state["sum"], state["count"]
        assert s is not None and c is not None
        with np.errstate(invalid="ignore", divide="ignore"):
            out = s.cpu().numpy() / c.cpu().numpy()
        out[c.cpu().numpy() == 0] = np.nan
        if self.orientation == "symmetric":
            out = (out + out.T) / 2.0
        return out

    # ----------------------------------------------------------- distributed
    def _all_reduce(self, live: list[State], snapshots: list[State], steps: torch.Tensor) -> None:
        ref = live[0]["sum"]
        assert ref is not None
        agree_across_ranks(
            {
                "epochs": self.epoch,
                "tasks": len(self.task_names or []),
                "snapshots": len(snapshots),
                "snapshot epochs": sum(self._snapshots),
            },
            ref.device,
            "call end_epoch() equally on every rank",
        )
        self.spec.all_reduce_(live + snapshots)
        on_device = steps.to(ref.device)
        torch.distributed.all_reduce(on_device)
        steps.copy_(on_device.cpu())

    @torch.no_grad()
    def sync(self) -> AffinityProbe:
        """Merge every process's sums and counts into every process (in place, all-reduce).

        A collective: every rank calls it after recording (with :meth:`end_epoch` called
        equally often). Afterwards further updates raise. Without ``torch.distributed`` (or
        with one process) it does nothing.
        """
        if world_size() > 1 and not self._synced:
            if self._state is None:
                raise RuntimeError(f"{type(self).__name__}: nothing recorded on this rank")
            assert self._past is not None
            steps = torch.tensor([self.steps_seen, self.steps_probed], dtype=torch.int64)
            ref = self._state["sum"]
            assert ref is not None
            steps_dev = steps.to(ref.device)
            self.spec.all_reduce_(
                [self._state, self._past] + [self._snapshots[e] for e in sorted(self._snapshots)]
            )
            torch.distributed.all_reduce(steps_dev)
            self.steps_seen, self.steps_probed = (int(x) for x in steps_dev.tolist())
            self._synced = True
        return self

    # ------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (tensors are not copied)."""
        return {
            "version": _STATE_VERSION,
            "config": self._config(),
            "epoch": self.epoch,
            "steps_seen": self.steps_seen,
            "steps_probed": self.steps_probed,
            "synced": self._synced,
            "state": None if self._state is None else dict(self._state),
            "past": None if self._past is None else dict(self._past),
            "snapshots": {e: dict(s) for e, s in self._snapshots.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the configuration must match (task names may be learnt).

        Raises
        ------
        ValueError
            On another configuration or a malformed state; the probe is then unchanged.
        """
        need = {
            "version",
            "config",
            "epoch",
            "steps_seen",
            "steps_probed",
            "synced",
            "state",
            "past",
            "snapshots",
        }
        if not isinstance(state_dict, dict) or need - set(state_dict):
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise fail("state_dict", f"a {type(self).__name__}.state_dict()", got)
        if state_dict["version"] != _STATE_VERSION:
            raise fail("state_dict", f"version {_STATE_VERSION}", state_dict["version"])
        mine, theirs = self._config(), dict(state_dict["config"])
        if mine["task_names"] is None:
            mine["task_names"] = theirs.get("task_names")
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ValueError(
                f"state_dict: expected the configuration of this probe, got one that differs in "
                f"{diff}: saved {[theirs.get(k) for k in diff]}, this {[mine.get(k) for k in diff]}"
            )
        state, past = state_dict["state"], state_dict["past"]
        names = theirs.get("task_names")
        if state is not None:
            dims = {"tasks": len(names or [])}
            self.spec.validate(state, dims, "state_dict['state']")
            self.spec.validate(past, dims, "state_dict['past']")
            for e, snap in state_dict["snapshots"].items():
                self.spec.validate(snap, dims, f"state_dict['snapshots'][{e}]")
        check_bool("state_dict['synced']", state_dict["synced"])
        self.reset()
        self.task_names = None if names is None else list(names)
        self.epoch = int(state_dict["epoch"])
        self.steps_seen = int(state_dict["steps_seen"])
        self.steps_probed = int(state_dict["steps_probed"])
        self._synced = bool(state_dict["synced"])
        if state is not None:
            self._state = self.spec.clone(state)
            self._past = self.spec.clone(past)
            self._snapshots = {
                int(e): self.spec.clone(s) for e, s in state_dict["snapshots"].items()
            }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(signal={self.signal!r}, num_tasks={self.num_tasks}, "
            f"every={self.every}, epoch={self.epoch}, steps_probed={self.steps_probed})"
        )
