"""Batches for the training loop: device moves, forward calls, missing labels, per-task losses.

A loader yields ``(inputs, targets, indices)``; inputs may be a tensor, a tuple (``model(*x)``)
or a dict (``model(**x)``); targets are ``(B, T)`` labels with NaN or negative values for missing
ones. :func:`iterate_batches` checks each item and gives :class:`Batch` objects on the device,
with the padding that a ``DistributedSampler`` adds marked in :attr:`Batch.valid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from stgmtl._checks import fail

__all__ = [
    "Batch",
    "distributed_valid_mask",
    "forward",
    "iterate_batches",
    "missing_mask",
    "move_to",
    "set_epoch",
    "task_losses",
    "valid_positions",
]


def move_to(x: Any, device: torch.device) -> Any:
    """``x`` (a tensor, or a tuple / list / dict of them) on ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, tuple | list):
        return type(x)(move_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: move_to(v, device) for k, v in x.items()}
    return x


def forward(model: nn.Module, x: Any) -> torch.Tensor:
    """``model(x)``, ``model(*x)`` for a tuple or list, ``model(**x)`` for a dict."""
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, tuple | list):
        return model(*x)
    return model(x)


def missing_mask(y: torch.Tensor) -> torch.Tensor | None:
    """Bool mask of observed labels (NaN or negative = missing); ``None`` when all observed."""
    bad = y < 0
    if y.dtype.is_floating_point:
        bad |= torch.isnan(y)
    return None if not bool(bad.any()) else ~bad


def task_losses(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-task mean loss over the observed labels of a batch, shape ``(T,)``.

    Binary logits ``(B, T)``: BCE-with-logits (``pos_weight`` per task); multi-class logits
    ``(B, T, C)``: cross-entropy. The training loss is the (weighted) sum over tasks, as in
    STG-MTL.
    """
    if logits.ndim == 2:
        yy = targets if mask is None else torch.where(mask, targets, 0)
        per = nn.functional.binary_cross_entropy_with_logits(
            logits, yy.to(logits.dtype), pos_weight=pos_weight, reduction="none"
        )
    else:
        yy = targets.long() if mask is None else torch.where(mask, targets, 0).long()
        per = nn.functional.cross_entropy(logits.transpose(1, 2), yy, reduction="none")
    if mask is None:
        return per.mean(dim=0)
    m = mask.to(per.dtype)
    return (per * m).sum(dim=0) / m.sum(dim=0).clamp(min=1.0)


@dataclass
class Batch:
    """One batch on the training device.

    Attributes
    ----------
    inputs : Any
        Model inputs (tensor, tuple or dict).
    targets : torch.Tensor
        ``(B, T)`` labels (NaN or negative = missing).
    indices : torch.Tensor
        ``(B,)`` sample ids.
    mask : torch.Tensor or None
        ``(B, T)`` observed labels, ``None`` when all are observed.
    valid : torch.Tensor or None
        ``(B,)`` False at ``DistributedSampler`` padding.
    """

    inputs: Any
    targets: torch.Tensor
    indices: torch.Tensor
    mask: torch.Tensor | None
    valid: torch.Tensor | None


def _check_batch(item: Any) -> tuple[Any, Any, Any]:
    if not isinstance(item, tuple | list) or len(item) != 3:
        if isinstance(item, tuple | list):
            got = f"batches of {len(item)} item{'s' * (len(item) != 1)}"
            if len(item) == 2:
                got += " (inputs, targets?)"
        else:
            got = f"a batch of type {type(item).__name__}"
        raise ValueError(
            "loader: expected batches (inputs, targets, indices), where indices are the (B,) "
            "sample ids; wrap a dataset that yields (inputs, targets) in "
            f"stgmtl.IndexedDataset to add them, got {got}"
        )
    return item[0], item[1], item[2]


def _sampler(loader: Any) -> DistributedSampler | None:
    sampler = getattr(loader, "sampler", None)
    return sampler if isinstance(sampler, DistributedSampler) else None


def set_epoch(loader: Any, epoch: int) -> None:
    """Tell ``loader`` (and its sampler) the epoch, where they have ``set_epoch``."""
    if callable(getattr(loader, "set_epoch", None)):
        loader.set_epoch(epoch)
    sampler = getattr(loader, "sampler", None)
    if (
        sampler is not None
        and sampler is not loader
        and callable(getattr(sampler, "set_epoch", None))
    ):
        sampler.set_epoch(epoch)


def distributed_valid_mask(sampler: Any) -> torch.Tensor:
    """Which of this rank's positions in an epoch hold a real sample, not padding.

    ``torch.utils.data.DistributedSampler`` (with ``drop_last=False``) repeats indices so that
    every rank gets the same number; the repeats sit at the end of the global order, so on each
    rank they are the last positions of the epoch. Slice the returned mask by batch and pass it
    as ``valid=`` to :meth:`stgmtl.DataMapRecorder.update` so that repeats are not counted
    twice.

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
            raise fail("sampler", "a DistributedSampler", type(sampler).__name__, error=TypeError)
    positions = sampler.rank + torch.arange(sampler.num_samples) * sampler.num_replicas
    return positions < len(sampler.dataset)


def valid_positions(loader: Any, device: torch.device) -> torch.Tensor | None:
    """:func:`distributed_valid_mask` of the loader's ``DistributedSampler`` (else ``None``)."""
    sampler = _sampler(loader)
    return None if sampler is None else distributed_valid_mask(sampler).to(device)


def iterate_batches(loader: Any, device: torch.device) -> Any:
    """Yield :class:`Batch` objects of one pass over ``loader`` on ``device``."""
    vmask = valid_positions(loader, device)
    pos = 0
    for item in loader:
        x, y, idx = _check_batch(item)
        x, y, idx = move_to(x, device), move_to(y, device), move_to(idx, device)
        if not isinstance(y, torch.Tensor) or not isinstance(idx, torch.Tensor):
            raise fail(
                "loader", "targets and indices as tensors", f"{type(y).__name__}, "
                f"{type(idx).__name__}", error=TypeError,
            )  # fmt: skip
        if y.ndim != 2:
            raise ValueError(
                "loader: expected targets of shape (B, T), one column per task (a single task "
                f"is (B, 1)), got targets of shape {tuple(y.shape)}"
            )
        valid = None if vmask is None else vmask[pos : pos + len(idx)]
        pos += len(idx)
        yield Batch(x, y, idx, missing_mask(y), valid)
