"""Record data maps inside a PyTorch Lightning run: :class:`DataMapCallback`.

Needs the optional extra: ``pip install "stgmtl[lightning]"``.

What the callback reads, per training batch
-------------------------------------------
- **logits**: the ``training_step`` returns a dict with the per-task logits under ``"logits"``
  (any other key with ``logits_key=``), next to the ``"loss"`` Lightning optimises::

      def training_step(self, batch, batch_idx):
          x, y, idx = batch
          logits = self(x)                                  # (B, T) for binary tasks
          loss = F.binary_cross_entropy_with_logits(logits, y)
          return {"loss": loss, "logits": logits}

- **targets** and **indices**: from the returned dict under ``"targets"`` / ``"indices"`` if
  present, else from the batch: a tuple/list batch ``(x, y, idx)`` (positions 1 and 2,
  ``batch_targets=`` / ``batch_indices=`` to change) or a dict batch (keys ``"targets"`` /
  ``"indices"``). ``idx`` is the sample's position in the dataset, e.g. from
  :class:`stgmtl.IndexedDataset`.
- **mask** (optional): the returned dict's ``"mask"`` (``(B, T)`` bool, False where a task has
  no label for that sample).
- Or pass ``extract=fn`` with ``fn(outputs, batch) -> (logits, targets, indices, mask)``.

The logits are detached; recording adds no graph and no gradient.

Epochs, processes and checkpoints
---------------------------------
- Every training epoch ends with the recorder's
  :meth:`~stgmtl.DataMapRecorder.end_epoch` (an epoch cut short by a checkpoint saved at
  validation end is closed when the resumed run moves past it).
- Under DDP each process records the batches it sees; positions that Lightning's
  ``DistributedSampler`` pads with repeated samples are dropped (``valid=``), and
  :meth:`DataMapCallback.compute` (called on every rank when ``fit`` ends) merges the processes'
  records, so every rank ends with the same :class:`~stgmtl.datamaps.DataMaps`.
- The recorder's state is part of every Lightning checkpoint (``state_dict`` /
  ``load_state_dict``), so ``trainer.fit(model, ckpt_path=...)`` continues the same data maps.
  Under DDP the checkpoint holds the merged state of all processes (Lightning writes rank 0's
  copy only); on resume rank 0 takes it over and the other ranks start from zero counts, so the
  next merge counts everything once.
- Resume from end-of-epoch checkpoints: Lightning replays a partly done epoch from its start
  unless the dataloader is resumable, and the replayed batches would be recorded twice.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from stgmtl.batches import distributed_valid_mask
from stgmtl.record.state import world_size

__all__ = ["DataMapCallback"]

try:
    import lightning.pytorch as pl
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "stgmtl.integrations.lightning needs PyTorch Lightning: pip install 'stgmtl[lightning]'"
    ) from err

Extract = Callable[[Any, Any], tuple[Any, Any, Any, Any]]


class DataMapCallback(pl.Callback):
    """Record per-task data maps from a LightningModule's training batches.

    Parameters
    ----------
    recorder : DataMapRecorder
        The recorder to feed (sized for the training set's tasks and samples).
    logits_key : str
        Key of the logits in the dict ``training_step`` returns.
    targets_key, indices_key, mask_key : str
        Keys looked up first in the returned dict, then (targets, indices) in a dict batch.
    batch_targets, batch_indices : int
        Positions of the targets and sample indices in a tuple/list batch ``(x, y, idx)``.
    extract : callable, optional
        ``extract(outputs, batch) -> (logits, targets, indices, mask)`` replacing the lookup
        above (``mask`` may be None).
    save_path : str or PathLike, optional
        If given, the synced data maps are saved there (by global rank 0) when ``fit`` ends.

    Attributes
    ----------
    datamaps : DataMaps or None
        The merged data maps, set when ``fit`` ends (on every rank).

    Examples
    --------
    >>> recorder = DataMapRecorder(num_tasks=100, num_samples=len(train_set))
    >>> callback = DataMapCallback(recorder, save_path="datamaps")
    >>> trainer = lightning.Trainer(max_epochs=10, callbacks=[callback])
    >>> trainer.fit(module, train_loader)
    >>> stgmtl.group(callback.datamaps, k=10).groups
    """

    def __init__(
        self,
        recorder: Any,
        *,
        logits_key: str = "logits",
        targets_key: str = "targets",
        indices_key: str = "indices",
        mask_key: str = "mask",
        batch_targets: int = 1,
        batch_indices: int = 2,
        extract: Extract | None = None,
        save_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        for name in ("update", "end_epoch", "sync", "compute", "state_dict", "load_state_dict"):
            if not callable(getattr(recorder, name, None)):
                raise TypeError(
                    f"recorder: expected a DataMapRecorder (no method {name!r}), "
                    f"got {type(recorder).__name__}"
                )
        if extract is not None and not callable(extract):
            raise TypeError(f"extract: expected a callable or None, got {type(extract).__name__}")
        self.recorder = recorder
        self.logits_key = logits_key
        self.targets_key = targets_key
        self.indices_key = indices_key
        self.mask_key = mask_key
        self.batch_targets = batch_targets
        self.batch_indices = batch_indices
        self.extract = extract
        self.save_path = None if save_path is None else Path(save_path)
        self.datamaps: Any = None
        self._open_epoch: int | None = None  # the epoch whose batches are recorded, not closed
        self._warned_padding = False

    # ---- recording ------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close an epoch left open by a checkpoint taken before its end, once it is over."""
        if self._open_epoch is not None and trainer.current_epoch > self._open_epoch:
            self._close_epoch()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Feed one training batch's logits, targets and indices to the recorder."""
        if self.extract is not None:
            logits, targets, indices, mask = self.extract(outputs, batch)
        else:
            logits, targets, indices, mask = self._lookup(outputs, batch)
        indices = _detach(indices)
        valid = self._padding_mask(trainer, batch_idx, indices)
        self.recorder.update(
            _detach(logits), _detach(targets), indices, mask=_detach(mask), valid=valid
        )
        self._open_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the recorder's epoch (before Lightning's end-of-epoch checkpoint is written)."""
        if self._open_epoch is not None:
            self._close_epoch()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Merge the processes' records, keep the data maps, save them on rank 0 if asked."""
        if self._open_epoch is not None:  # stopped mid-epoch (max_steps, early stopping)
            self._close_epoch()
        self.datamaps = self.compute()
        if self.save_path is not None and trainer.is_global_zero:
            self.datamaps.save(self.save_path)

    def compute(self) -> Any:
        """The data maps recorded so far, merged over all processes (a collective under DDP).

        Returns
        -------
        DataMaps
        """
        return self.recorder.compute()

    def _close_epoch(self) -> None:
        self.recorder.end_epoch()
        self._open_epoch = None

    # ---- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The recorder's state for Lightning checkpoints (merged over processes under DDP).

        Lightning calls this on every rank when it saves, so the merge (a collective) is safe.
        The merge works on a temporary copy of the recorder (its memory once more, briefly).
        """
        state = self.recorder.merged_state_dict()  # rank 0 goes on recording into it
        return {"recorder": state, "open_epoch": self._open_epoch, "merged_over": world_size()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the recorder from a checkpoint, so a resumed run continues the data maps."""
        if "recorder" not in state_dict:
            raise ValueError(
                "checkpoint state for DataMapCallback has no 'recorder' entry; "
                f"has {sorted(state_dict)}"
            )
        self.recorder.load_state_dict(state_dict["recorder"])  # checks the configuration
        if state_dict.get("merged_over", 1) > 1 and world_size() > 1 and dist.get_rank() != 0:
            # rank 0 carries the merged counts of all processes; the others restart from zero
            # counts with the same closed epochs (and so the same snapshot epochs)
            epochs = self.recorder.epoch
            self.recorder.reset()
            for _ in range(epochs):
                self.recorder.end_epoch()
        self._open_epoch = state_dict.get("open_epoch")

    # ---- helpers --------------------------------------------------------------------------

    def _lookup(self, outputs: Any, batch: Any) -> tuple[Any, Any, Any, Any]:
        if not isinstance(outputs, Mapping) or self.logits_key not in outputs:
            got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise ValueError(
                "DataMapCallback needs training_step to return a dict with the logits under "
                f"{self.logits_key!r} (e.g. {{'loss': loss, '{self.logits_key}': logits}}); "
                f"got {got}"
            )
        targets = outputs.get(self.targets_key)
        indices = outputs.get(self.indices_key)
        if targets is None:
            targets = self._from_batch(batch, self.targets_key, self.batch_targets)
        if indices is None:
            indices = self._from_batch(batch, self.indices_key, self.batch_indices)
        return outputs[self.logits_key], targets, indices, outputs.get(self.mask_key)

    def _from_batch(self, batch: Any, key: str, position: int) -> Any:
        if isinstance(batch, Mapping):
            if key not in batch:
                raise ValueError(f"dict batch has no {key!r} entry; has {sorted(batch)}")
            return batch[key]
        if isinstance(batch, (tuple, list)) and len(batch) > position:
            return batch[position]
        size = len(batch) if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise ValueError(
            f"cannot find {key!r}: expected the batch to be (x, y, idx) with it at position "
            f"{position}, or a dict, or training_step to return it under {key!r}; batch is {size}"
        )

    def _padding_mask(self, trainer: pl.Trainer, batch_idx: int, indices: Any) -> Any:
        """False at the positions a DistributedSampler filled with repeated samples."""
        if world_size() < 2 or not isinstance(indices, torch.Tensor):
            return None
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, DistributedSampler):
            return None
        if sampler.total_size <= len(sampler.dataset):  # type: ignore[arg-type]
            return None  # nothing padded (divisible, or drop_last=True)
        size = getattr(loader, "batch_size", None)
        if size is None or getattr(loader, "drop_last", False) or sampler.num_replicas < 2:
            if not self._warned_padding:
                warnings.warn(
                    "DataMapCallback: cannot locate DistributedSampler padding with this loader; "
                    "the few repeated samples per epoch are recorded twice",
                    stacklevel=2,
                )
                self._warned_padding = True
            return None
        start = batch_idx * size
        mask = distributed_valid_mask(sampler)[start : start + indices.shape[0]]
        return mask.to(indices.device)


def _detach(x: Any) -> Any:
    return x.detach() if isinstance(x, torch.Tensor) else x
