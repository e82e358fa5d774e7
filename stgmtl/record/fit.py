"""One call: train a multi-task model with a data-map recorder attached, return the DataMaps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from stgmtl._checks import check_choice, check_int, fail, seed_from
from stgmtl.batches import forward, iterate_batches
from stgmtl.datamaps import DataMaps
from stgmtl.loop import Hook, SchedulerArg, Step, make_scheduler, train_loop
from stgmtl.record.recorder import DataMapRecorder

__all__ = ["RECORDER_SETTINGS", "DataMapHook", "IndexedDataset", "fit_datamaps"]

#: Keyword arguments of :func:`fit_datamaps` that configure the recorder it creates.
RECORDER_SETTINGS = (
    "task_names",
    "task_type",
    "num_samples",
    "snapshot_epochs",
    "snapshot_kind",
    "ddof",
    "probe_indices",
    "validate",
    "cpu_threads",
    "kernel",
    "layout",
)


class IndexedDataset(Dataset):
    """Wrap a map-style dataset yielding ``(x, y)`` so it yields ``(x, y, index)``.

    Parameters
    ----------
    dataset : map-style dataset
        Any object with ``__len__`` and ``__getitem__`` returning ``(inputs, targets)``.
    """

    def __init__(self, dataset: Any) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise fail("dataset", "a map-style dataset", type(dataset).__name__, error=TypeError)
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        item = self.dataset[index]
        if not isinstance(item, tuple | list) or len(item) != 2:
            got = f"{len(item)} items" if isinstance(item, tuple | list) else type(item).__name__
            hint = (
                "; if they are (inputs, targets, indices), use the dataset without IndexedDataset"
                if isinstance(item, tuple | list) and len(item) == 3
                else ""
            )
            raise ValueError(f"dataset: expected items (inputs, targets), got {got}{hint}")
        return item[0], item[1], index


class DataMapHook(Hook):
    """Feeds a :class:`DataMapRecorder` from the training loop (made on the first batch).

    Parameters
    ----------
    recorder : DataMapRecorder, optional
        The recorder to feed; default: one made from ``settings`` and the first batch's tasks.
    settings : dict
        :class:`DataMapRecorder` keyword arguments (``num_samples`` required without
        ``recorder``).
    record : {"train", "eval"}
        Record the training forward passes, or one ``model.eval()`` pass per epoch over
        ``eval_loader``.
    eval_loader : iterable, optional
        Loader of the evaluation pass.
    """

    def __init__(
        self,
        recorder: DataMapRecorder | None,
        settings: dict[str, Any],
        record: str,
        eval_loader: Any,
    ) -> None:
        self.recorder = recorder
        self.settings = settings
        self.record = record
        self.eval_loader = eval_loader

    def _get(self, num_tasks: int) -> DataMapRecorder:
        if self.recorder is None:
            self.recorder = DataMapRecorder(num_tasks, recording=self.record, **self.settings)  # type: ignore[arg-type]
        return self.recorder

    def after_step(self, step: Step) -> None:
        """Record the step's logits (``record="train"``)."""
        if self.record == "train":
            b = step.batch
            self._get(int(b.targets.shape[1])).update(
                step.logits.detach(), b.targets, b.indices, mask=b.mask, valid=b.valid
            )

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        """Run the evaluation pass (``record="eval"``), then close the recorder's epoch."""
        if self.record == "eval":
            model.eval()
            dev = next(model.parameters()).device
            for b in iterate_batches(self.eval_loader, dev):
                rec = self._get(int(b.targets.shape[1]))
                rec.update(forward(model, b.inputs), b.targets, b.indices, mask=b.mask,
                           valid=b.valid)  # fmt: skip
            model.train()
        if self.recorder is None:
            raise fail("loader", "batches to record", "no batches")
        self.recorder.end_epoch()

    def state_dict(self) -> dict[str, Any]:
        """The recorder's state dict."""
        return {"recorder": None if self.recorder is None else self.recorder.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the recorder (made from the saved configuration when there is none yet)."""
        saved = state.get("recorder")
        if saved is None:
            return
        if self.recorder is None:
            keep = {
                k: self.settings[k]
                for k in ("validate", "cpu_threads", "kernel")
                if k in self.settings
            }
            self.recorder = DataMapRecorder.from_state_dict(saved, recording=self.record, **keep)
        else:
            self.recorder.load_state_dict(saved)


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
    record: Literal["train", "eval"] = "train",
    eval_loader: Any = None,
    recorder: DataMapRecorder | None = None,
    hooks: Sequence[Hook] = (),
    checkpoint_path: str | Path | None = None,
    progress: bool = True,
    random_state: Any = 0,
    **recorder_settings: Any,
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
        Per-step learning-rate schedule (see :func:`stgmtl.loop.make_scheduler`): ``None`` /
        ``"constant"`` keeps ``lr``; ``"onecycle"`` warms up to ``lr`` and anneals (the
        CIFAR-100 demo's default); a callable ``scheduler(optimizer, total_steps)`` builds your
        own. Stepped after every optimizer step; its state is checkpointed.
    loss_fn : callable, optional
        ``loss_fn(logits, targets) -> scalar``. Default: per-task BCE-with-logits (or
        cross-entropy) averaged over observed labels, summed over tasks as in STG-MTL.
    pos_weight, task_weights : sequence of float, optional
        Per-task positive weight of the default BCE loss, and per-task loss weights.
    device : str or torch.device, optional
        Default: the device of the model's parameters.
    record : {"train", "eval"}
        ``"train"``: record every training step's forward pass (no extra pass, as STG-MTL).
        ``"eval"``: at each epoch end, record an extra ``model.eval()`` / ``no_grad`` pass over
        ``eval_loader`` (default ``loader``).
    eval_loader : iterable, optional
        Loader for ``record="eval"``.
    recorder : DataMapRecorder, optional
        Record into this recorder instead of one made from ``recorder_settings``.
    hooks : sequence of stgmtl.loop.Hook
        More recorders or probes to run in the same loop (e.g. affinity probes).
    checkpoint_path : str or Path, optional
        Write model, optimizer, scheduler, recorder, epoch and RNG state here after every epoch
        (atomically, with a checksum); if the file exists, resume from it. Under
        ``torch.distributed`` each rank uses ``<path>.rank<r>``.
    progress : bool
        Show a progress bar with the running loss.
    random_state : None, int, numpy Generator or RandomState
        Seeds torch's global RNG at the start of a fresh run (loader shuffling, dropout): an int
        is the seed (the same int gives the same data maps), a Generator / RandomState draws
        one; ``None`` leaves torch's RNG as it is.
    **recorder_settings
        Settings of the :class:`DataMapRecorder` made for the run (see :data:`RECORDER_SETTINGS`):
        ``task_names``, ``task_type``, ``num_samples`` (default ``len(loader.dataset)``),
        ``snapshot_epochs``, ``snapshot_kind``, ``ddof``, ``probe_indices``, ``validate``,
        ``cpu_threads``, ``kernel``, ``layout``. The number of tasks comes from the first batch.
        ``snapshot_epochs`` and ``probe_indices`` are sets: they are stored sorted and without
        repeats (``[3, 2, 2]`` is ``[2, 3]``); a snapshot epoch after ``epochs`` is an error.

    Returns
    -------
    DataMaps
    """
    check_choice("record", record, ("train", "eval"))
    check_int("epochs", epochs, low=1)
    seed = None if random_state is None else seed_from("random_state", random_state)
    unknown = sorted(set(recorder_settings) - set(RECORDER_SETTINGS))
    if unknown:
        raise TypeError(
            f"fit_datamaps: unexpected keyword arguments {unknown}; recorder settings are "
            f"{list(RECORDER_SETTINGS)}"
        )
    if recorder is not None and recorder_settings:
        raise fail("recorder", "either a recorder or recorder settings, not both", recorder)
    snaps = recorder_settings.get("snapshot_epochs")
    if snaps is not None and len(snaps) and max(snaps) > epochs:  # recorder checks the rest
        raise fail("snapshot_epochs", f"epochs in [1, epochs={epochs}]", list(snaps))
    if recorder is None and "num_samples" not in recorder_settings:
        if not hasattr(getattr(loader, "dataset", None), "__len__"):
            raise fail("num_samples", "an int when the loader has no sized .dataset", None)
        recorder_settings["num_samples"] = len(loader.dataset)
    if recorder is not None:
        recorder.recording = record
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    opt = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    try:
        total: int | None = len(loader) * epochs
    except TypeError:
        total = None
    hook = DataMapHook(recorder, recorder_settings, record,
                       eval_loader if eval_loader is not None else loader)  # fmt: skip
    train_loop(
        model, loader, epochs=epochs, optimizer=opt,
        scheduler=make_scheduler(scheduler, opt, lr, total), loss_fn=loss_fn,
        pos_weight=pos_weight, task_weights=task_weights, device=dev, hooks=[hook, *hooks],
        checkpoint_path=checkpoint_path, progress=progress, desc="fit_datamaps",
        random_state=seed,
    )  # fmt: skip
    assert hook.recorder is not None
    return hook.recorder.compute()
