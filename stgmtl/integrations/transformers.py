"""Record data maps inside a Hugging Face ``Trainer`` run: :class:`DataMapCallback`.

Needs the optional extra: ``pip install "stgmtl[transformers]"``.

How the callback sees the logits
--------------------------------
A ``TrainerCallback`` is not shown the model's outputs, and ``Trainer(compute_loss_func=...)``
replaces the model's own loss (and changes how it is scaled under gradient accumulation). So
the callback adds two hooks of plain PyTorch to the model (``register_forward_pre_hook`` /
``register_forward_hook``, with keyword arguments) and changes nothing in the ``Trainer``:

- the pre-hook takes the sample-id column (``index_column``, default ``"idx"``) out of the
  inputs, so the model never sees it, and notes the ``labels``;
- the forward hook reads ``outputs.logits`` and, for a forward in training mode inside
  ``trainer.train()``, feeds ``(logits, labels, ids)`` to the recorder (detached: no graph, no
  gradient, no random numbers drawn, so training is bitwise the same with the callback).

Evaluation runs the model in eval mode and is never recorded. Every micro-batch of a gradient
accumulation step is one forward, so each is recorded once.

Heads: ``problem_type="multi_label_classification"`` (logits ``(B, T)``, sigmoid per label, one
task per label: ``task_type="binary"``) and ``"single_label_classification"`` (logits
``(B, C)`` with labels ``(B,)``: one softmax task, ``task_type="multiclass"``, ``num_tasks=1``;
or ``(B, T, C)`` logits with ``(B, T)`` labels for ``T`` softmax tasks). Labels ``-100``
(ignored by the cross-entropy loss) are recorded as missing.

Sample ids
----------
Each training example carries its position in the training set under ``index_column``, e.g.
``train_set = train_set.map(lambda _, i: {"idx": i}, with_indices=True)`` for a
``datasets.Dataset``, or an ``"idx"`` entry in the dicts a torch ``Dataset`` returns. The
``Trainer`` drops columns that the model's ``forward`` does not take
(``remove_unused_columns=True``, the default): attach the callback with
:func:`record_datamaps`, which keeps the index column, or set ``remove_unused_columns=False``
and pass ``callbacks=[DataMapCallback(recorder)]``.

Checkpoints and processes
-------------------------
- At every checkpoint the recorder's state (merged over processes) is written beside it, as
  ``checkpoint-<step>/stgmtl_datamaps.pt``; ``trainer.train(resume_from_checkpoint=...)``
  restores it, so a resumed run records exactly what an uninterrupted one does.
- Under ``torchrun`` / ``accelerate launch`` each process records its batches; the samples that
  ``accelerate`` repeats to give every process full batches (``even_batches``) are dropped, and
  the processes' records are merged when training ends (:meth:`DataMapRecorder.compute`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from stgmtl._checks import fail
from stgmtl._io import load_checkpoint, save_checkpoint

__all__ = ["CHECKPOINT_FILE", "DataMapCallback", "record_datamaps"]

try:
    from transformers import TrainerCallback
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "stgmtl.integrations.transformers needs transformers: pip install 'stgmtl[transformers]'"
    ) from err

CHECKPOINT_FILE = "stgmtl_datamaps.pt"
_IGNORE = -100  # the label that torch's cross-entropy (and so transformers) ignores


def _world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class DataMapCallback(TrainerCallback):
    """Record per-task data maps from a ``transformers.Trainer``'s training forwards.

    Parameters
    ----------
    recorder : DataMapRecorder
        The recorder to feed, sized for the training set (``num_samples``) and the head:
        ``num_tasks`` = labels with ``task_type="binary"`` for a multi-label head, or
        ``num_tasks=1`` with ``task_type="multiclass"`` for a single-label one.
    index_column : str
        Input key of the sample ids (positions in the training set); removed from the inputs
        before the model's ``forward`` sees them.
    labels_key : str
        Input key of the labels.
    save_path : str or PathLike, optional
        Where global rank 0 saves the data maps when training ends.
    resume_from : str or PathLike, optional
        The checkpoint folder a resumed run starts from, when it is not
        ``<output_dir>/checkpoint-<step>`` (what ``resume_from_checkpoint=True`` picks).

    Attributes
    ----------
    datamaps : DataMaps or None
        The data maps of the run, merged over processes, set when training ends (every rank).

    Examples
    --------
    >>> recorder = DataMapRecorder(num_tasks=100, num_samples=len(train_set))
    >>> callback = record_datamaps(trainer, recorder)   # or callbacks=[DataMapCallback(...)]
    >>> trainer.train()
    >>> stgmtl.group(callback.datamaps, k=10).groups
    """

    def __init__(
        self,
        recorder: Any,
        *,
        index_column: str = "idx",
        labels_key: str = "labels",
        save_path: str | os.PathLike[str] | None = None,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> None:
        for name in ("update", "end_epoch", "compute", "merged_state_dict", "load_state_dict"):
            if not callable(getattr(recorder, name, None)):
                raise fail(
                    "recorder", f"a DataMapRecorder (no method {name!r})",
                    type(recorder).__name__, error=TypeError,
                )  # fmt: skip
        for key, value in (("index_column", index_column), ("labels_key", labels_key)):
            if not isinstance(value, str) or not value:
                raise fail(key, "a non-empty str", value, error=TypeError)
        self.recorder = recorder
        self.index_column = index_column
        self.labels_key = labels_key
        self.save_path = None if save_path is None else Path(save_path)
        self.resume_from = None if resume_from is None else Path(resume_from)
        self.datamaps: Any = None
        self._model: Any = None
        self._handles: list[Any] = []
        self._training = False  # inside trainer.train()
        self._pending: tuple[Any, Any] | None = None  # (ids, labels) of the running forward
        self._epoch = 0  # the Trainer's epoch (0-based) being trained
        self._open_epoch: int | None = None  # the epoch whose batches are recorded, not closed
        self._batch = 0  # micro-batches recorded by this process in the open epoch
        self._shard: tuple[int, int, int, int] | None = None  # (rank, world, batch, samples)

    # ---- hooks on the model -----------------------------------------------------------------

    def attach(self, model: torch.nn.Module) -> None:
        """Add the callback's hooks to ``model`` (done by the ``Trainer`` events; idempotent)."""
        if model is self._model:
            return
        self.detach()
        self._handles = [
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
            model.register_forward_hook(self._after_forward, with_kwargs=True),
        ]
        self._model = model

    def detach(self) -> None:
        """Remove the hooks from the model (the index column then reaches ``forward`` again)."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._model = [], None

    def _before_forward(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        ids = kwargs.pop(self.index_column, None)
        self._pending = None
        if not (self._training and module.training):
            return args, kwargs
        labels = kwargs.get(self.labels_key)
        if ids is None:
            raise ValueError(self._no_index_message(sorted(kwargs)))
        if labels is None:
            raise ValueError(
                f"DataMapCallback: the training inputs have no labels under {self.labels_key!r} "
                f"(labels_key=); they have {sorted(kwargs)}"
            )
        self._pending = (ids, labels)
        return args, kwargs

    def _after_forward(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if self._pending is None:
            return
        ids, labels = self._pending
        self._pending = None
        logits = getattr(output, "logits", None)
        if logits is None and isinstance(output, dict):
            logits = output.get("logits")
        if not isinstance(logits, torch.Tensor):
            raise ValueError(
                "DataMapCallback: expected the model to return outputs with .logits "
                f"(return_dict=True), got {type(output).__name__}"
            )
        self._record(logits.detach(), labels.detach(), torch.as_tensor(ids))

    def _record(self, logits: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> None:
        mask = None
        if self.recorder.task_type == "multiclass":
            if logits.dim() == 2:  # one softmax task: (B, C) logits, (B,) labels
                logits, labels = logits.unsqueeze(1), labels.reshape(-1, 1)
            ignored = labels == _IGNORE
            if bool(ignored.any()):
                mask, labels = ~ignored, labels.masked_fill(ignored, 0)
        self.recorder.update(logits, labels, ids.to(logits.device), mask=mask,
                             valid=self._valid(ids.shape[0], logits.device))  # fmt: skip
        self._batch += 1
        self._open_epoch = self._epoch

    def _valid(self, size: int, device: torch.device) -> torch.Tensor | None:
        """False at the positions ``accelerate`` filled with repeats (``even_batches``).

        ``accelerate`` gives batch ``b`` of the sampler's order to process ``b % world`` and
        completes the last round with samples from the start of the order: global position
        ``(k * world + rank) * batch + j`` of this process's ``k``-th batch holds a repeat when
        it is at least the dataset's length.
        """
        if self._shard is None:
            return None
        rank, world, batch, samples = self._shard
        start = (self._batch * world + rank) * batch
        if start + size <= samples:
            return None
        return torch.arange(start, start + size, device=device) < samples

    def _no_index_message(self, keys: list[str]) -> str:
        col = self.index_column
        return (
            f"DataMapCallback: the training inputs have no sample ids under {col!r}; they have "
            f"{keys}. Give every training example its position in the training set: "
            f"train_set = train_set.map(lambda _, i: {{'{col}': i}}, with_indices=True) for a "
            f"datasets.Dataset, or an {col!r} entry in the dicts your torch Dataset returns. "
            "The Trainer drops columns its model's forward does not take "
            "(remove_unused_columns=True): attach the callback with "
            "stgmtl.integrations.transformers.record_datamaps(trainer, recorder), which keeps "
            "the column, or set TrainingArguments(remove_unused_columns=False)."
        )

    # ---- Trainer events -----------------------------------------------------------------------

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Hook the model as soon as the ``Trainer`` exists (evaluation inputs lose the ids)."""
        if kwargs.get("model") is not None:
            self.attach(kwargs["model"])

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Hook the model, learn the data sharding, restore the recorder when resuming."""
        if kwargs.get("model") is not None:
            self.attach(kwargs["model"])
        self._shard = _shard_of(args, kwargs.get("train_dataloader"))
        if state.global_step > 0:
            self._resume(args, state)
        self._training = True

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Note the epoch; close one left open by a checkpoint taken at its last step."""
        epoch = math.floor(state.epoch + 1e-9) if state.epoch else 0
        if self._open_epoch is not None and epoch > self._open_epoch:
            self._close_epoch()
        if epoch != self._epoch:
            self._batch = 0
        self._epoch = epoch

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Close the recorder's epoch."""
        if self._open_epoch is not None:
            self._close_epoch()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Write the recorder's state (merged over processes) into the new checkpoint folder."""
        payload = {
            "recorder": self.recorder.merged_state_dict(),  # a collective under torchrun
            "open_epoch": self._open_epoch,
            "epoch": self._epoch,
            "batch": self._batch,
            "global_step": state.global_step,
            "merged_over": _world()[1],
        }
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_checkpoint(payload, folder / CHECKPOINT_FILE)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Merge the processes' records into :attr:`datamaps`; save them on rank 0 if asked."""
        self._training = False
        if self._open_epoch is not None:  # stopped mid-epoch (max_steps, a stopping callback)
            self._close_epoch()
        self.datamaps = self.recorder.compute()
        if self.save_path is not None and state.is_world_process_zero:
            self.datamaps.save(self.save_path)

    def _close_epoch(self) -> None:
        self.recorder.end_epoch()
        self._open_epoch = None
        self._batch = 0

    # ---- resuming ------------------------------------------------------------------------------

    def _resume(self, args: Any, state: Any) -> None:
        folder = self.resume_from or Path(args.output_dir) / f"checkpoint-{state.global_step}"
        path = folder / CHECKPOINT_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"DataMapCallback: resuming at step {state.global_step}, but {path} does not "
                "exist; resume from a checkpoint written with this callback, or pass "
                "resume_from= the checkpoint folder when it is not <output_dir>/checkpoint-<step>"
            )
        saved = load_checkpoint(path, map_location="cpu")
        if saved["global_step"] != state.global_step:
            raise ValueError(
                f"resume_from: expected the recorder state of step {state.global_step}, "
                f"got {path} of step {saved['global_step']}"
            )
        self.recorder.load_state_dict(saved["recorder"])  # checks the configuration
        rank, world = _world()
        if saved["merged_over"] > 1 and world > 1 and rank != 0:
            # rank 0 carries the merged counts; the others restart from zero counts with the
            # same closed epochs, so the next merge counts everything once
            epochs = self.recorder.epoch
            self.recorder.reset()
            for _ in range(epochs):
                self.recorder.end_epoch()
        self._open_epoch, self._epoch, self._batch = (
            saved["open_epoch"], saved["epoch"], saved["batch"]
        )  # fmt: skip


def _shard_of(args: Any, loader: Any) -> tuple[int, int, int, int] | None:
    """(rank, world, batch size, samples) where ``accelerate`` pads the last batches, else None."""
    rank, world = _world()
    shard = getattr(loader, "batch_sampler", None)
    if world < 2 or shard is None or type(shard).__name__ != "BatchSamplerShard":
        return None
    if shard.drop_last or not shard.even_batches or shard.split_batches:
        return None
    size = getattr(shard, "batch_size", None)
    dataset = getattr(loader, "dataset", None)
    if size is None or dataset is None or not hasattr(dataset, "__len__"):
        return None
    return rank, world, int(size), len(dataset)


def record_datamaps(trainer: Any, recorder: Any, **options: Any) -> DataMapCallback:
    """Add a :class:`DataMapCallback` to ``trainer`` and keep its index column in the batches.

    The one line for a ``Trainer`` already built: the callback is added with
    ``trainer.add_callback``, its hooks go on ``trainer.model``, and the index column is added
    to the columns that ``remove_unused_columns=True`` keeps (the ``Trainer`` lists the model's
    ``forward`` arguments once, in ``_signature_columns``; this appends the column there).

    Parameters
    ----------
    trainer : transformers.Trainer
        The trainer, before ``trainer.train()``.
    recorder : DataMapRecorder
        The recorder to feed.
    **options
        Keyword arguments of :class:`DataMapCallback` (``index_column``, ``save_path``, ...).

    Returns
    -------
    DataMapCallback
        The callback; its ``datamaps`` are set when training ends.
    """
    callback = DataMapCallback(recorder, **options)
    keep: Callable[[], None] | None = getattr(trainer, "_set_signature_columns_if_needed", None)
    if trainer.args.remove_unused_columns:
        if keep is None or not hasattr(trainer, "_signature_columns"):
            raise TypeError(
                "trainer: cannot keep the index column in this transformers version; set "
                "TrainingArguments(remove_unused_columns=False) and pass "
                "callbacks=[DataMapCallback(recorder)] instead"
            )
        keep()
        if callback.index_column not in trainer._signature_columns:
            trainer._signature_columns.append(callback.index_column)
    trainer.add_callback(callback)
    callback.attach(trainer.model)
    return callback
