"""Data for grouped training: any torch dataset (or an object with a fast ``loader``), its targets.

A training or evaluation set is either

* a map-style torch ``Dataset`` whose items are ``(inputs, targets)`` or
  ``(inputs, targets, index)`` with ``targets`` a ``(T,)`` 0/1 tensor; batches come from a
  ``DataLoader`` whose shuffling is seeded per run; or
* any object with ``loader(batch_size, *, shuffle, seed)`` returning a re-iterable loader of
  ``(inputs, targets, indices)`` batches (for example :class:`stgmtl.datasets.TaskSuite`, which
  slices preloaded tensors instead of collating items).

Its ``(N, T)`` targets are read from a ``targets`` tensor attribute when it has one, else from
one pass over its batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from stgmtl._checks import fail
from stgmtl.record import IndexedDataset

__all__ = ["make_loader", "pos_weight_of", "targets_of", "task_names_of"]


def make_loader(data: Any, batch_size: int, *, shuffle: bool, seed: int) -> Any:
    """A loader of ``(inputs, targets, indices)`` batches over ``data`` (see module docstring)."""
    fast = getattr(data, "loader", None)
    if callable(fast):
        return fast(batch_size, shuffle=shuffle, seed=seed)
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise fail(
            "data", "a map-style torch Dataset or an object with loader()", type(data).__name__,
            error=TypeError,
        )  # fmt: skip
    first = data[0]
    if not isinstance(first, tuple | list) or len(first) not in (2, 3):
        raise fail("data", "items (inputs, targets) or (inputs, targets, index)",
                   type(first).__name__)  # fmt: skip
    ds = IndexedDataset(data) if len(first) == 2 else data
    gen = torch.Generator().manual_seed(int(seed))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen)


def targets_of(data: Any, batch_size: int = 1024) -> torch.Tensor:
    """The ``(N, T)`` float32 targets of ``data`` in its order."""
    t = getattr(data, "targets", None)
    if isinstance(t, torch.Tensor) and t.ndim == 2:
        return t.float()
    parts = [b[1].float() for b in make_loader(data, batch_size, shuffle=False, seed=0)]
    if not parts:
        raise fail("data", "at least one sample", "an empty dataset")
    return torch.cat(parts)


def task_names_of(data: Any, num_tasks: int) -> list[str]:
    """``data.task_names`` when present, else ``task_0 ... task_{T-1}``."""
    names = getattr(data, "task_names", None)
    return [str(n) for n in names] if names is not None else [f"task_{i}" for i in range(num_tasks)]


def pos_weight_of(targets: torch.Tensor) -> torch.Tensor:
    """Per-task ``negatives / positives``, float32 ``(T,)`` (1.0 for a task without positives)."""
    y = targets.float()
    pos = y.sum(0)
    neg = y.shape[0] - pos
    return torch.where(pos > 0, neg / pos.clamp(min=1), torch.ones_like(pos))
