"""One call: train a multi-task model with a data-map recorder attached, return the DataMaps."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler
from tqdm.auto import tqdm

from stgmtl.datamaps import DataMaps
from stgmtl.recorder import DataMapRecorder, distributed_valid_mask

__all__ = ["IndexedDataset", "fit_datamaps", "make_scheduler"]


class IndexedDataset(Dataset):
    """Wrap a map-style dataset yielding ``(x, y)`` so it yields ``(x, y, index)``.

    Parameters
    ----------
    dataset : map-style dataset
        Any object with ``__len__`` and ``__getitem__`` returning ``(inputs, targets)``.
    """

    def __init__(self, dataset: Any) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset: expected a map-style dataset, got {type(dataset).__name__}")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        item = self.dataset[index]
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValueError(
                f"dataset: expected items (inputs, targets), got {type(item).__name__}"
            )
        return item[0], item[1], index


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, tuple | list):
        return type(x)(_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def _forward(model: nn.Module, x: Any) -> torch.Tensor:
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, tuple | list):
        return model(*x)
    return model(x)


def _missing_mask(y: torch.Tensor) -> torch.Tensor | None:
    """Bool mask of observed labels (NaN or negative = missing); ``None`` when all observed."""
    bad = y < 0
    if y.dtype.is_floating_point:
        bad |= torch.isnan(y)
    return None if not bool(bad.any()) else ~bad


def _default_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
    task_weights: torch.Tensor | None,
) -> torch.Tensor:
    """Sum over tasks of (weighted) per-task mean loss over observed labels, as in STG-MTL."""
    if logits.ndim == 2:
        yy = y.to(logits.dtype) if mask is None else torch.where(mask, y, 0).to(logits.dtype)
        per = nn.functional.binary_cross_entropy_with_logits(
            logits, yy, pos_weight=pos_weight, reduction="none"
        )
    else:
        yy = y.long() if mask is None else torch.where(mask, y, 0).long()
        per = nn.functional.cross_entropy(logits.transpose(1, 2), yy, reduction="none")
    if mask is None:
        task_loss = per.mean(dim=0)
    else:
        m = mask.to(per.dtype)
        task_loss = (per * m).sum(dim=0) / m.sum(dim=0).clamp(min=1.0)
    if task_weights is not None:
        task_loss = task_loss * task_weights
    return task_loss.sum()


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


SchedulerArg = Literal["constant", "onecycle"] | Callable[[torch.optim.Optimizer, int], Any] | None


def make_scheduler(
    scheduler: SchedulerArg, optimizer: torch.optim.Optimizer, lr: float, total_steps: int | None
) -> Any:
    """Build the per-step learning-rate scheduler of :func:`fit_datamaps` (``None``: constant).

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
            raise ValueError(
                "scheduler='onecycle': the loader has no len(), so the total number of steps is "
                "unknown; pass a callable scheduler(optimizer, total_steps) instead"
            )
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    if callable(scheduler):
        return scheduler(optimizer, -1 if total_steps is None else total_steps)
    raise ValueError(
        f"scheduler: expected 'constant', 'onecycle', a callable or None, got {scheduler!r}"
    )


def fit_datamaps(
    loader: Any,
    model: nn.Module,
    *,
    epochs: int = 5,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    scheduler: SchedulerArg = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    pos_weight: Sequence[float] | torch.Tensor | None = None,
    task_weights: Sequence[float] | torch.Tensor | None = None,
    device: str | torch.device | None = None,
    task_names: Sequence[str] | None = None,
    task_type: Literal["binary", "multiclass"] = "binary",
    num_samples: int | None = None,
    snapshot_epochs: Sequence[int] | None = None,
    snapshot_kind: Literal["cumulative", "epoch"] = "cumulative",
    ddof: int = 0,
    probe_indices: Any = None,
    record: Literal["train", "eval"] = "train",
    eval_loader: Any = None,
    recorder: DataMapRecorder | None = None,
    checkpoint_path: str | Path | None = None,
    progress: bool = True,
    random_state: int | None = 0,
) -> DataMaps:
    """Train ``model`` on all tasks for ``epochs`` while recording data maps.

    Parameters
    ----------
    loader : iterable
        Yields ``(inputs, targets, indices)``: inputs a tensor (or tuple / dict of tensors, passed
        as ``model(*x)`` / ``model(**x)``), targets ``(B, T)`` (binary 0/1, or class ids; NaN or
        negative = missing label), indices ``(B,)`` sample ids. Wrap a dataset with
        :class:`IndexedDataset` to get indices. A ``DistributedSampler`` is detected: its padded
        repeats are not recorded, ``set_epoch`` is called, and the result is merged over ranks.
    model : nn.Module
        Returns logits ``(B, T)`` (binary) or ``(B, T, C)`` (multi-class).
    epochs : int
        Number of epochs.
    optimizer : torch.optim.Optimizer, optional
        Default ``Adam(model.parameters(), lr=lr)``.
    lr : float
        Learning rate of the default optimizer (the peak learning rate with
        ``scheduler="onecycle"``).
    scheduler : {"constant", "onecycle"}, callable or None
        Per-step learning-rate schedule (see :func:`make_scheduler`): ``None`` / ``"constant"``
        keeps ``lr``; ``"onecycle"`` warms up to ``lr`` and anneals (the CIFAR-100 demo's
        default: a better 5-epoch model, hence data maps that group the tasks better); a
        callable ``scheduler(optimizer, total_steps)`` builds your own. Stepped after every
        optimizer step; its state is checkpointed.
    loss_fn : callable, optional
        ``loss_fn(logits, targets) -> scalar``. Default: per-task BCE-with-logits (or
        cross-entropy) averaged over observed labels, summed over tasks as in STG-MTL.
    pos_weight, task_weights : sequence of float, optional
        Per-task positive weight of the default BCE loss, and per-task loss weights.
    device : str or torch.device, optional
        Default: the device of the model's parameters.
    task_names, task_type, num_samples, snapshot_epochs, snapshot_kind, ddof, probe_indices
        Passed to :class:`~stgmtl.DataMapRecorder` (``num_samples`` defaults to
        ``len(loader.dataset)``; the number of tasks comes from the first batch).
    record : {"train", "eval"}
        ``"train"``: record every training step's forward pass (no extra pass, as STG-MTL).
        ``"eval"``: at each epoch end, record an extra ``model.eval()`` / ``no_grad`` pass over
        ``eval_loader`` (default ``loader``).
    eval_loader : iterable, optional
        Loader for ``record="eval"``.
    recorder : DataMapRecorder, optional
        Use this recorder (its configuration wins over the recorder arguments).
    checkpoint_path : str or Path, optional
        Write model, optimizer, recorder, epoch and RNG state here after every epoch (atomically:
        temporary file, then ``os.replace``); if the file exists, resume from it. Under
        ``torch.distributed`` each rank uses ``<path>.rank<r>``.
    progress : bool
        Show a tqdm bar with the running loss.
    random_state : int, optional
        Seeds torch's global RNG at the start of a fresh run (loader shuffling, dropout).

    Returns
    -------
    DataMaps
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    if record not in ("train", "eval"):
        raise ValueError(f"record: expected 'train' or 'eval', got {record!r}")
    if num_samples is None and recorder is None:
        if not hasattr(getattr(loader, "dataset", None), "__len__"):
            raise ValueError("num_samples: required when loader has no sized .dataset")
        num_samples = len(loader.dataset)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    opt = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    pw = (
        None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32, device=dev)
    )
    tw = (
        None
        if task_weights is None
        else torch.as_tensor(task_weights, dtype=torch.float32, device=dev)
    )
    try:
        steps = len(loader)
    except TypeError:
        steps = None
    sched = make_scheduler(scheduler, opt, lr, None if steps is None else steps * epochs)
    world = torch.distributed.is_available() and torch.distributed.is_initialized()
    ckpt = None if checkpoint_path is None else Path(checkpoint_path)
    if ckpt is not None and world and torch.distributed.get_world_size() > 1:
        ckpt = ckpt.with_name(f"{ckpt.name}.rank{torch.distributed.get_rank()}")

    def make(t: int) -> DataMapRecorder:
        return DataMapRecorder(
            t, num_samples, task_names=task_names, task_type=task_type, ddof=ddof,  # type: ignore[arg-type]
            snapshot_epochs=snapshot_epochs, snapshot_kind=snapshot_kind,
            probe_indices=probe_indices, recording=record,
        )  # fmt: skip

    rec = recorder
    start = 0
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])
        if rec is None:
            rec = make(int(state["recorder"]["config"]["num_tasks"]))
        rec.load_state_dict(state["recorder"])
        torch.set_rng_state(state["rng"].cpu())
        if torch.cuda.is_available() and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        start = int(state["epoch"])
    elif random_state is not None:
        torch.manual_seed(random_state)
    if rec is not None:
        rec.recording = record

    sampler = getattr(loader, "sampler", None)
    dist_sampler = sampler if isinstance(sampler, DistributedSampler) else None
    total = None if steps is None else steps * epochs
    bar = tqdm(total=total, initial=0 if steps is None else steps * start, disable=not progress,
               desc="fit_datamaps", unit="step", dynamic_ncols=True)  # fmt: skip

    def update(logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, valid: Any) -> None:
        nonlocal rec
        if rec is None:
            rec = make(int(y.shape[1]))
        rec.update(logits.detach(), y, idx, mask=_missing_mask(y), valid=valid)

    try:
        for epoch in range(start, epochs):
            if dist_sampler is not None:
                dist_sampler.set_epoch(epoch)
            vmask = None if dist_sampler is None else distributed_valid_mask(dist_sampler).to(dev)
            model.train()
            pos, run_loss, run_n = 0, torch.zeros((), device=dev), 0
            for x, y, idx in loader:
                x, y, idx = _to(x, dev), _to(y, dev), _to(idx, dev)
                logits = _forward(model, x)
                if loss_fn is not None:
                    loss = loss_fn(logits, y)
                else:
                    loss = _default_loss(logits, y, _missing_mask(y), pw, tw)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                valid = None if vmask is None else vmask[pos : pos + len(idx)]
                pos += len(idx)
                if record == "train":
                    update(logits, y, idx, valid)
                run_loss += loss.detach()
                run_n += 1
                bar.update(1)
                if progress and (run_n % 10 == 1):
                    bar.set_postfix(epoch=epoch + 1, loss=f"{run_loss.item() / run_n:.4f}")
            if record == "eval":
                _eval_pass(model, eval_loader if eval_loader is not None else loader, dev, update)
            if rec is None:
                raise ValueError("loader: yielded no batches, nothing to record")
            rec.end_epoch()
            if ckpt is not None:
                payload = {
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": None if sched is None else sched.state_dict(),
                    "recorder": rec.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all()
                    if torch.cuda.is_available()
                    else None,
                }
                _save_checkpoint(ckpt, payload)
    finally:
        bar.close()
    assert rec is not None
    return rec.compute()


@torch.no_grad()
def _eval_pass(model: nn.Module, loader: Any, dev: torch.device, update: Callable) -> None:
    """Record one evaluation pass (model.eval(), no_grad); padded DDP repeats are dropped."""
    sampler = getattr(loader, "sampler", None)
    vmask = (
        distributed_valid_mask(sampler).to(dev) if isinstance(sampler, DistributedSampler) else None
    )
    model.eval()
    pos = 0
    for x, y, idx in loader:
        x, y, idx = _to(x, dev), _to(y, dev), _to(idx, dev)
        valid = None if vmask is None else vmask[pos : pos + len(idx)]
        pos += len(idx)
        update(_forward(model, x), y, idx, valid)
    model.train()
