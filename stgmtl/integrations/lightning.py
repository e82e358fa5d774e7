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
  :class:`stgmtl.fit.IndexedDataset`.
- **mask** (optional): the returned dict's ``"mask"`` (``(B, T)`` bool, False where a task has
  no label for that sample).
- Or pass ``extract=fn`` with ``fn(outputs, batch) -> (logits, targets, indices, mask)``.

The logits are detached; recording adds no graph and no gradient.

Epochs, processes and checkpoints
---------------------------------
- At the end of every training epoch the callback closes the recorder's epoch
  (:meth:`~stgmtl.recorder.DataMapRecorder.end_epoch`).
- Under DDP each process records its own shard; :meth:`DataMapCallback.compute` (and the end of
  ``fit``) merges them with :meth:`~stgmtl.recorder.DataMapRecorder.sync`, so every rank ends with
  the same :class:`~stgmtl.datamaps.DataMaps`.
- The recorder's state is part of every Lightning checkpoint (``state_dict`` /
  ``load_state_dict``), so ``trainer.fit(model, ckpt_path=...)`` continues the same data maps.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

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
                    f"recorder must be a DataMapRecorder (no method {name!r}); "
                    f"got {type(recorder).__name__}"
                )
        if extract is not None and not callable(extract):
            raise TypeError(f"extract must be callable or None, got {type(extract).__name__}")
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

    # ---- recording ------------------------------------------------------------------------

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
        self.recorder.update(
            _detach(logits), _detach(targets), _detach(indices), mask=_detach(mask)
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the recorder's epoch (runs before Lightning's checkpoint callbacks)."""
        self.recorder.end_epoch()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Merge the processes' records, keep the data maps, save them on rank 0 if asked."""
        self.datamaps = self.compute()
        if self.save_path is not None and trainer.is_global_zero:
            self.datamaps.save(self.save_path)

    def compute(self) -> Any:
        """Sync across processes (a no-op in a single process) and return the DataMaps."""
        self.recorder.sync()
        return self.recorder.compute()

    # ---- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The recorder's state, stored in Lightning checkpoints under this callback."""
        return {"recorder": self.recorder.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the recorder from a checkpoint, so a resumed run continues the data maps."""
        if "recorder" not in state_dict:
            raise ValueError(
                "checkpoint state for DataMapCallback has no 'recorder' entry; "
                f"has {sorted(state_dict)}"
            )
        self.recorder.load_state_dict(state_dict["recorder"])

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


def _detach(x: Any) -> Any:
    return x.detach() if isinstance(x, torch.Tensor) else x
