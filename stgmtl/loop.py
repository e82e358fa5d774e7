"""The one training loop: recording runs (:func:`stgmtl.fit_datamaps`) and grouped training use it.

Per step: move the batch to the device, forward, per-task loss, ``zero_grad``, ``backward``,
hooks' :meth:`Hook.before_step` (gradients present, parameters not yet changed: where affinity
probes look), ``optimizer.step()``, ``scheduler.step()``, hooks' :meth:`Hook.after_step` (where
recorders read the logits). After each epoch: hooks' :meth:`Hook.on_epoch_end`, then an atomic
checkpoint of model, optimizer, scheduler, hooks and RNG state; a run started with an existing
checkpoint resumes from it and ends as the uninterrupted run would.

A loader yields ``(inputs, targets, indices)``; inputs may be a tensor, a tuple (``model(*x)``) or
a dict (``model(**x)``). A loader (or its sampler) with ``set_epoch`` is told the epoch first;
under ``DistributedSampler`` the padded repeats are marked in :attr:`Batch.valid`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from stgmtl._checks import PROGRESS_DELAY_S, check_int, fail, seed_from
from stgmtl._io import load_checkpoint, save_checkpoint
from stgmtl.batches import (
    Batch,
    distributed_valid_mask,
    forward,
    iterate_batches,
    missing_mask,
    move_to,
    set_epoch,
    task_losses,
    valid_positions,
)

__all__ = [
    "PROGRESS_DELAY_S",
    "Batch",
    "Hook",
    "LoopResult",
    "SchedulerArg",
    "Step",
    "distributed_valid_mask",
    "forward",
    "iterate_batches",
    "make_scheduler",
    "missing_mask",
    "move_to",
    "read_checkpoint",
    "task_losses",
    "train_loop",
    "valid_positions",
]


SchedulerArg = Literal["constant", "onecycle"] | Callable[[torch.optim.Optimizer, int], Any] | None
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_scheduler(
    scheduler: SchedulerArg, optimizer: torch.optim.Optimizer, lr: float, total_steps: int | None
) -> Any:
    """Build a per-step learning-rate scheduler (``None``: constant).

    Parameters
    ----------
    scheduler : {"constant", "onecycle"}, callable or None
        ``None`` / ``"constant"``: no schedule. ``"onecycle"``: ``OneCycleLR`` peaking at ``lr``
        (warm-up over the first 30 % of steps, cosine annealing after). A callable:
        ``scheduler(optimizer, total_steps)`` returning any object with ``step()`` (and
        ``state_dict`` / ``load_state_dict`` for checkpoints).
    optimizer : torch.optim.Optimizer
        The optimizer to schedule.
    lr : float
        Peak learning rate of ``"onecycle"``.
    total_steps : int or None
        Optimizer steps of the whole run (``len(loader) * epochs``); required by ``"onecycle"``.
        A callable receives ``-1`` when it is unknown.

    Returns
    -------
    scheduler or None
    """
    if scheduler is None or scheduler == "constant":
        return None
    if scheduler == "onecycle":
        if total_steps is None:
            raise fail(
                "scheduler",
                "a callable scheduler(optimizer, total_steps) for a loader without len()",
                "onecycle",
            )
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    if callable(scheduler):
        return scheduler(optimizer, -1 if total_steps is None else total_steps)
    raise fail("scheduler", "'constant', 'onecycle', a callable or None", scheduler)


@dataclass
class Step:
    """What hooks see of one training step.

    Attributes
    ----------
    model, optimizer : the objects being trained
    batch : Batch
    logits : torch.Tensor
        The forward output (with its graph until the step ends).
    task_losses : torch.Tensor
        ``(T,)`` per-task losses of the batch (``None`` with a custom scalar ``loss_fn``).
    loss : torch.Tensor
        The scalar that was back-propagated.
    loss_of : callable
        ``loss_of(logits, batch) -> (T,)`` per-task losses, for probes that re-evaluate the
        loss (``None`` with a custom scalar ``loss_fn``).
    epoch, step : int
        0-based epoch and global step.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batch: Batch
    logits: torch.Tensor
    task_losses: torch.Tensor | None
    loss: torch.Tensor
    loss_of: Callable[[torch.Tensor, Batch], torch.Tensor] | None
    epoch: int
    step: int


class Hook:
    """Base class of training-loop hooks; every method is optional and does nothing here.

    A hook must not change training: no writes to parameters, ``.grad``, buffers, the optimizer
    or the global RNG streams (affinity probes are tested for this).
    """

    def before_step(self, step: Step) -> None:
        """After ``backward``, before ``optimizer.step()``."""

    def after_step(self, step: Step) -> None:
        """After ``optimizer.step()`` and the scheduler step."""

    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        """After the last step of 0-based ``epoch``, before its checkpoint."""

    def state_dict(self) -> dict[str, Any]:
        """What the hook needs to resume (goes into the loop's checkpoint)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


@dataclass(frozen=True)
class LoopResult:
    """What a training run did.

    Attributes
    ----------
    epochs : int
        Epochs completed (including resumed ones).
    steps : int
        Optimizer steps taken in this call.
    seconds : float
        Wall time of this call.
    resumed_from : int
        Epoch the run resumed from (0 for a fresh run).
    """

    epochs: int
    steps: int
    seconds: float
    resumed_from: int


class _TaskLoss:
    """Per-task loss ``(T,)`` of a batch and its weighted sum (the default loss), or what a
    loss-weighting module makes of them."""

    def __init__(
        self,
        pos_weight: torch.Tensor | None,
        task_weights: torch.Tensor | None,
        weighting: nn.Module | None = None,
    ) -> None:
        self.pos_weight, self.task_weights = pos_weight, task_weights
        self.weighting = weighting

    def per_task(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return task_losses(logits, batch.targets, batch.mask, self.pos_weight)

    def total(self, per: torch.Tensor) -> torch.Tensor:
        if self.weighting is not None:
            return self.weighting(per, self.task_weights)
        return (per if self.task_weights is None else per * self.task_weights).sum()


def _as_task_vector(name: str, value: Any, device: torch.device) -> torch.Tensor | None:
    if value is None:
        return None
    out = torch.as_tensor(value, dtype=torch.float32, device=device)
    if out.ndim != 1 or not torch.isfinite(out).all() or (out < 0).any():
        raise fail(name, "a 1-D sequence of finite values >= 0, one per task", value)
    return out


def _check_logits(logits: Any, batch: Batch) -> None:
    if not isinstance(logits, torch.Tensor):
        raise fail("model", "a tensor of logits as output", type(logits).__name__, error=TypeError)
    b, t = batch.targets.shape
    if logits.ndim not in (2, 3) or logits.shape[0] != b or logits.shape[1] != t:
        what = (
            "samples (the batch size)" if logits.ndim and logits.shape[0] != b
            else "tasks" if logits.ndim in (2, 3) else "dimensions"
        )  # fmt: skip
        raise ValueError(
            f"model: expected output of shape (B, T) = ({b}, {t}) (or ({b}, {t}, C) for "
            f"multi-class tasks), one logit per sample and task, to match the loader's targets of "
            f"shape ({b}, {t}); got model output of shape {tuple(logits.shape)} for targets of "
            f"shape ({b}, {t}): the model and the targets disagree on the number of {what}"
        )


def train_loop(
    model: nn.Module,
    loader: Any,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any = None,
    loss_fn: LossFn | None = None,
    pos_weight: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    task_weights: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    device: torch.device | None = None,
    hooks: Sequence[Hook] = (),
    checkpoint_path: str | Path | None = None,
    progress: bool = True,
    desc: str = "train",
    random_state: Any = 0,
    loss_weighting: nn.Module | None = None,
) -> LoopResult:
    """Train ``model`` on ``loader`` for ``epochs`` (see the module docstring for one step).

    Parameters
    ----------
    model : nn.Module
        Returns logits ``(B, T)`` (binary) or ``(B, T, C)`` (multi-class).
    loader : iterable
        Yields ``(inputs, targets, indices)``.
    epochs : int
        Total epochs (a resumed run continues up to this many).
    optimizer : torch.optim.Optimizer
    scheduler : object with ``step()``, optional
        Stepped after every optimizer step (see :func:`make_scheduler`); checkpointed.
    loss_fn : callable, optional
        ``loss_fn(logits, targets) -> scalar`` replacing the default per-task loss (probes that
        need per-task losses then do not run).
    pos_weight, task_weights : sequence of float, optional
        Per-task positive weight of the default BCE and per-task loss weights.
    device : torch.device, optional
        Default: the device of the model's parameters.
    hooks : sequence of Hook
        Recorders and probes (see :class:`Hook`).
    checkpoint_path : path, optional
        Checkpoint after every epoch (atomic, checksummed); resume from it if it exists. Under
        ``torch.distributed`` each rank uses ``<path>.rank<r>``.
    progress : bool
        Show a progress bar over steps (with the running loss).
    desc : str
        Label of the progress bar.
    random_state : None, int, numpy Generator or RandomState
        Seeds torch's global RNG at the start of a fresh run (shuffling, dropout): an int is the
        seed, a Generator / RandomState draws one; ``None`` leaves torch's RNG as it is (not
        reproducible unless you seed torch yourself). A resumed run restores the RNG state of
        its checkpoint instead.
    loss_weighting : nn.Module, optional
        Replaces the weighted sum of the default per-task losses: ``loss_weighting(per_task,
        task_weights) -> scalar`` with the ``(T,)`` losses of the batch and the ``(T,)`` task
        weights (or None), e.g. :class:`stgmtl.specialise.UncertaintyWeighting`. Its parameters
        are trained only if they are in ``optimizer``; its state is checkpointed and resumed
        with the run. Not with ``loss_fn``.

    Returns
    -------
    LoopResult
    """
    check_int("epochs", epochs, low=1)
    if loss_weighting is not None:
        if loss_fn is not None:
            raise fail("loss_weighting", "None with a custom loss_fn (it weights the default "
                       "per-task losses)", type(loss_weighting).__name__)  # fmt: skip
        if not isinstance(loss_weighting, nn.Module):
            raise fail("loss_weighting", "an nn.Module", type(loss_weighting).__name__,
                       error=TypeError)  # fmt: skip
    seed = None if random_state is None else seed_from("random_state", random_state)
    dev = device if device is not None else next(model.parameters()).device
    model.to(dev)
    if loss_weighting is not None:
        loss_weighting.to(dev)
    crit = _TaskLoss(
        _as_task_vector("pos_weight", pos_weight, dev),
        _as_task_vector("task_weights", task_weights, dev),
        loss_weighting,
    )
    ckpt = _rank_path(checkpoint_path)
    start = 0
    if ckpt is not None and ckpt.exists():
        start = _resume(ckpt, dev, model, optimizer, scheduler, hooks, loss_weighting)
    elif seed is not None:
        torch.manual_seed(seed)
    steps_per_epoch = _len(loader)
    bar = tqdm(
        total=None if steps_per_epoch is None else steps_per_epoch * epochs,
        initial=0 if steps_per_epoch is None else steps_per_epoch * start,
        disable=not progress, desc=desc, unit="step", dynamic_ncols=True, leave=False,
        delay=PROGRESS_DELAY_S,
    )  # fmt: skip
    t0, done = time.perf_counter(), 0
    try:
        for epoch in range(start, epochs):
            n = _run_epoch(model, loader, optimizer, scheduler, loss_fn, crit, dev, hooks,
                           epoch, done, bar)  # fmt: skip
            if n == 0:
                raise fail("loader", "at least one batch per epoch", "an empty loader")
            done += n
            for h in hooks:
                h.on_epoch_end(epoch, model)
            if ckpt is not None:
                _checkpoint(ckpt, epoch + 1, model, optimizer, scheduler, hooks, loss_weighting)
    finally:
        bar.close()
    return LoopResult(epochs, done, time.perf_counter() - t0, start)


def _run_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loss_fn: LossFn | None,
    crit: _TaskLoss,
    dev: torch.device,
    hooks: Sequence[Hook],
    epoch: int,
    step0: int,
    bar: Any,
) -> int:
    """One epoch of steps; returns the number of steps."""
    set_epoch(loader, epoch)
    model.train()
    run_loss, n = torch.zeros((), device=dev), 0
    for batch in iterate_batches(loader, dev):
        logits = forward(model, batch.inputs)
        if n == 0:
            _check_logits(logits, batch)
        per = None if loss_fn is not None else crit.per_task(logits, batch)
        loss = loss_fn(logits, batch.targets) if loss_fn is not None else crit.total(per)  # type: ignore[arg-type]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        step = Step(model, optimizer, batch, logits, per, loss,
                    None if loss_fn is not None else crit.per_task, epoch, step0 + n)  # fmt: skip
        for h in hooks:
            h.before_step(step)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for h in hooks:
            h.after_step(step)
        run_loss += loss.detach()
        n += 1
        bar.update(1)
        if not bar.disable and n % 10 == 1:
            bar.set_postfix(epoch=epoch + 1, loss=f"{run_loss.item() / n:.4f}", refresh=False)
    return n


def _len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _rank_path(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        p = p.with_name(f"{p.name}.rank{dist.get_rank()}")
    return p


def _checkpoint(
    path: Path,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    hooks: Sequence[Hook],
    loss_weighting: nn.Module | None = None,
) -> None:
    state = {
        "format": "stgmtl.train_loop",
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "hooks": [h.state_dict() for h in hooks],
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if loss_weighting is not None:  # only then: checkpoints of plain runs are as before
        state["loss_weighting"] = loss_weighting.state_dict()
    save_checkpoint(state, path)


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load and check a :func:`train_loop` checkpoint (for resuming or inspection)."""
    state = load_checkpoint(path, map_location=device)
    need = {"format", "epoch", "model", "optimizer", "scheduler", "hooks", "rng"}
    if not isinstance(state, dict) or state.get("format") != "stgmtl.train_loop":
        raise fail("checkpoint_path", "a checkpoint written by stgmtl's training loop", str(path))
    missing = need - set(state)
    if missing:
        raise ValueError(f"checkpoint_path: {path} lacks entries {sorted(missing)}")
    return state


def _resume(
    path: Path,
    dev: torch.device,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    hooks: Sequence[Hook],
    loss_weighting: nn.Module | None = None,
) -> int:
    """Restore everything from a checkpoint; returns the epoch to continue from."""
    state = read_checkpoint(path, dev)
    if (loss_weighting is None) != (state.get("loss_weighting") is None):
        raise ValueError(
            f"checkpoint_path: {path} was written "
            f"{'without' if loss_weighting is not None else 'with'} a loss weighting, this run "
            f"has {'one' if loss_weighting is not None else 'none'}; use the same settings or "
            "another checkpoint path"
        )
    if len(state["hooks"]) != len(hooks):
        raise ValueError(
            f"checkpoint_path: {path} was written with {len(state['hooks'])} recorders/probes, "
            f"this run has {len(hooks)}; use the same settings or another checkpoint path"
        )
    model.load_state_dict(state["model"])
    if loss_weighting is not None:
        loss_weighting.load_state_dict(state["loss_weighting"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    for h, s in zip(hooks, state["hooks"], strict=True):
        h.load_state_dict(s)
    torch.set_rng_state(state["rng"].cpu())
    if torch.cuda.is_available() and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return int(state["epoch"])
