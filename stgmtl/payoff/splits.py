"""Train / validation / test data of a task suite for the payoff harness, and task-column views.

:class:`Splits` holds the three splits (models train on ``train`` only; ``val`` chooses;
``test`` reports). :class:`TaskColumns` views any dataset with only some of its tasks, so a run
on a task subset reads the same images in the same order as every other run.
:func:`data_fingerprint` identifies the data for run caches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stgmtl._checks import fail
from stgmtl.specialise.data import make_loader, targets_of, task_names_of

__all__ = ["MappedTargetsLoader", "Splits", "TaskColumns", "data_fingerprint"]


@dataclass(frozen=True)
class Splits:
    """Train, validation and test data of one task suite (same tasks, in the same order).

    Each is a map-style torch dataset or an object with ``loader(batch_size, *, shuffle,
    seed)`` (see :mod:`stgmtl.specialise.data`). Models train on ``train`` only; ``val`` chooses
    the candidate grouping and the budget-matched one model; ``test`` reports, and the verdict
    is a test on models retrained on fresh seeds (``separate-soft``'s softness is fixed in
    advance by a target entropy, not chosen).
    """

    train: Any
    val: Any
    test: Any

    def task_names(self) -> list[str]:
        """The suite's task names (checked equal on the three splits)."""
        names = [
            task_names_of(d, int(targets_of(d).shape[1])) for d in (self.train, self.val, self.test)
        ]
        if not names[0] == names[1] == names[2]:
            raise fail("splits", "train, val and test with the same tasks", [n[:3] for n in names])
        return names[0]


def _tensor_digest(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())


def data_fingerprint(splits: Splits) -> str:
    """sha256 identity of the three splits, for run caches.

    Hashes, per split, the targets, the task names, the length and, where present, the
    ``images`` tensor, ``sample_ids`` and the ``name`` / ``split`` / ``augment`` / ``seed``
    attributes (as :class:`stgmtl.datasets.TaskSuite` has them; of the viewed dataset for a
    :class:`TaskColumns` view). Two datasets whose inputs differ
    only in ways these do not show get the same fingerprint: pass ``cache_id=`` to the harness
    then.
    """
    h = hashlib.sha256()
    for name, d in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        y = targets_of(d)
        h.update(f"{name}:{len(y)}:".encode())
        h.update(json.dumps(task_names_of(d, int(y.shape[1]))).encode())
        _tensor_digest(h, y)
        src = d.data if isinstance(d, TaskColumns) else d  # a column view: its images' source
        for attr in ("images", "sample_ids"):
            _tensor_digest(h, getattr(src, attr, None))
        attrs = ("name", "split", "augment", "seed")
        extra = {a: getattr(src, a) for a in attrs if hasattr(src, a)}
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


class MappedTargetsLoader:
    """A loader whose batch targets are rewritten by :meth:`targets` (inputs, order, indices,
    ``len`` and ``set_epoch`` pass through). Subclasses say how.

    ``dataset`` (DataLoader-style, e.g. ``len(loader.dataset)`` for a recorder's number of
    samples and its ``task_names``) is the view whose targets the batches carry, never the
    wrapped data (whose targets and task names are not these).
    """

    def __init__(self, inner: Any, dataset: Any = None) -> None:
        self.inner = inner
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        """Forward to the wrapped loader (distributed samplers reshuffle per epoch)."""
        if callable(getattr(self.inner, "set_epoch", None)):
            self.inner.set_epoch(epoch)

    def targets(self, y: torch.Tensor, idx: Any) -> torch.Tensor:
        """The batch's new ``(B, T')`` targets from its targets ``y`` and sample indices."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor, Any]]:
        for x, y, idx in self.inner:
            yield x, self.targets(y, idx), idx


class _ColumnLoader(MappedTargetsLoader):
    """Batches that keep only some target columns."""

    def __init__(self, inner: Any, columns: torch.Tensor, dataset: Any = None) -> None:
        super().__init__(inner, dataset)
        self.columns = columns

    def targets(self, y: torch.Tensor, idx: Any) -> torch.Tensor:
        return y.index_select(-1, self.columns)


class TaskColumns:
    """A view of a dataset with only some of its tasks (target columns), in the given order.

    Works for anything :func:`stgmtl.specialise.data.make_loader` takes; the view has
    ``loader()``, ``targets`` and ``task_names``, so it is itself such data.
    """

    def __init__(self, data: Any, columns: Sequence[int], task_names: Sequence[str]) -> None:
        self.data = data
        self.columns = torch.as_tensor(list(columns), dtype=torch.long)
        self.targets = targets_of(data).index_select(1, self.columns)
        self.task_names = list(task_names)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def loader(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> _ColumnLoader:
        return _ColumnLoader(
            make_loader(self.data, batch_size, shuffle=shuffle, seed=seed), self.columns, self
        )
