"""DataMapCallback with a real Lightning Trainer on CPU: recording, checkpoint resume, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Sampler, TensorDataset

pl = pytest.importorskip(
    "lightning.pytorch", reason="lightning is not installed (stgmtl[lightning])"
)


from stgmtl.integrations.lightning import DataMapCallback  # noqa: E402
from stgmtl.record import DataMapRecorder  # noqa: E402

N, D, T, BATCH, LR = 48, 5, 3, 8, 0.5


class EpochShuffle(Sampler[int]):
    """A shuffling sampler whose order depends on (seed, epoch) only, so resumed runs match."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this every epoch
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g)
    y = (x[:, :T] + 0.5 * torch.randn(N, T, generator=g) > 0).float()
    return TensorDataset(x, y, torch.arange(N))


def _loader() -> DataLoader:
    return DataLoader(_data(), batch_size=BATCH, sampler=EpochShuffle(N))


class TinyModule(pl.LightningModule):
    def __init__(self, dict_batch: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(D, T)
        self.dict_batch = dict_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if self.dict_batch:
            x, y = batch["x"], batch["targets"]
        else:
            x, y, _ = batch
        logits = self(x)
        return {"loss": F.binary_cross_entropy_with_logits(logits, y), "logits": logits}

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        self.log("val_loss", F.binary_cross_entropy_with_logits(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def _trainer(epochs: int, callbacks: list, tmp_path=None, **kw) -> pl.Trainer:
    if tmp_path is not None:
        # at_val_end: save when validation ends (as Lightning does with val_check_interval < 1),
        # i.e. before the epoch's on_train_epoch_end hooks have run
        at_val_end = kw.pop("at_val_end", False)
        callbacks = [*callbacks, pl.callbacks.ModelCheckpoint(
            dirpath=tmp_path, save_top_k=-1, save_on_train_epoch_end=not at_val_end)]  # fmt: skip
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=tmp_path is not None,
        callbacks=callbacks,
        num_sanity_val_steps=0,
        **kw,
    )


def _recorder() -> DataMapRecorder:
    return DataMapRecorder(T, N, snapshot_epochs=[1, 2, 3])


def _assert_same_maps(a, b) -> None:
    np.testing.assert_array_equal(a.count, b.count)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert a.epochs == b.epochs and a.snapshot_epochs == b.snapshot_epochs
    for name in ("confidence", "variability", "correctness", "snapshot_confidence"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-10)


def _manual_reference(epochs: int):
    """The same training in a plain loop, recorder.update by hand."""
    module, rec = TinyModule(), _recorder()
    opt = torch.optim.SGD(module.parameters(), lr=LR)
    loader = _loader()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for x, y, idx in loader:
            logits = module(x)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.update(logits, y, idx)
        rec.end_epoch()
    return rec.compute()


def test_callback_records_the_training_forward_passes():
    callback = DataMapCallback(_recorder())
    _trainer(3, [callback]).fit(TinyModule(), _loader())
    maps = callback.datamaps
    assert maps.epochs == 3 and (maps.count == 3).all()
    _assert_same_maps(maps, _manual_reference(3))
    # the maps are not trivial: the model learns, so confidence moves and varies
    assert np.nanstd(maps.confidence) > 0.05 and np.nanmean(maps.variability) > 0.01


@pytest.mark.parametrize("with_validation", [False, True], ids=["epoch-end-ckpt", "val-end-ckpt"])
def test_resume_from_checkpoint_continues_the_same_maps(tmp_path, with_validation):
    val = {"val_dataloaders": DataLoader(_data(), batch_size=16)} if with_validation else {}
    full = DataMapCallback(_recorder())
    _trainer(3, [full]).fit(TinyModule(), _loader(), **val)

    first = DataMapCallback(_recorder())
    run = tmp_path / "run"
    _trainer(2, [first], run, at_val_end=with_validation).fit(TinyModule(), _loader(), **val)
    ckpts = sorted(run.glob("*.ckpt"))
    assert [c.name for c in ckpts] == ["epoch=0-step=6.ckpt", "epoch=1-step=12.ckpt"]
    state = torch.load(ckpts[1], weights_only=False)["callbacks"]
    (saved,) = [v for k, v in state.items() if k.startswith("DataMapCallback")]
    # with validation, Lightning saves at validation end, before the epoch is closed
    assert (saved["open_epoch"] is not None) == with_validation

    resumed = DataMapCallback(_recorder())
    _trainer(3, [resumed], tmp_path / "resumed", at_val_end=with_validation).fit(
        TinyModule(), _loader(), ckpt_path=str(ckpts[1]), **val
    )
    assert resumed.datamaps.epochs == 3 and (resumed.datamaps.count == 3).all()
    _assert_same_maps(resumed.datamaps, full.datamaps)


def test_dict_batch_custom_keys_and_save_path(tmp_path):
    x, y, idx = _data().tensors
    rows = [{"x": x[i], "targets": y[i], "indices": idx[i]} for i in range(N)]
    loader = DataLoader(rows, batch_size=BATCH, sampler=EpochShuffle(N))
    callback = DataMapCallback(_recorder(), save_path=tmp_path / "maps")
    _trainer(3, [callback]).fit(TinyModule(dict_batch=True), loader)
    _assert_same_maps(callback.datamaps, _manual_reference(3))

    from stgmtl.datamaps import DataMaps

    _assert_same_maps(DataMaps.load(tmp_path / "maps"), callback.datamaps)


def test_extract_function_is_used():
    seen = []

    def extract(outputs, batch):
        seen.append(len(batch[2]))
        return outputs["logits"], batch[1], batch[2], None

    callback = DataMapCallback(_recorder(), extract=extract)
    _trainer(1, [callback]).fit(TinyModule(), _loader())
    assert sum(seen) == N and (callback.datamaps.count == 1).all()


class _TensorStep(TinyModule):
    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx)["loss"]


def test_clear_errors():
    with pytest.raises(TypeError, match="recorder: expected a DataMapRecorder"):
        DataMapCallback(object())
    with pytest.raises(TypeError, match="extract: expected a callable"):
        DataMapCallback(_recorder(), extract=3)
    with pytest.raises(ValueError, match="return a dict with the logits under 'logits'"):
        _trainer(1, [DataMapCallback(_recorder())]).fit(_TensorStep(), _loader())
    with pytest.raises(ValueError, match="no 'recorder' entry"):
        DataMapCallback(_recorder()).load_state_dict({})


# ---------------------------------------------------------------------------------------------
# two processes (torchrun, gloo): merged checkpoints resume correctly, padding counted once

_DDP_SCRIPT = """
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from stgmtl.integrations.lightning import DataMapCallback
from stgmtl.record import DataMapRecorder

N, D, T = 49, 5, 3  # 49 samples on 2 ranks: one repeated per epoch as padding
out = Path(sys.argv[1])
g = torch.Generator().manual_seed(0)
x = torch.randn(N, D, generator=g)
data = TensorDataset(x, (x[:, :T] > 0).float(), torch.arange(N))


class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(D, T)

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self.net(x)
        return {"loss": F.binary_cross_entropy_with_logits(logits, y), "logits": logits}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def fit(epochs, ckpt_dir=None, ckpt_path=None):
    callback = DataMapCallback(DataMapRecorder(T, N, snapshot_epochs=[1, 2, 3]))
    callbacks = [callback]
    if ckpt_dir is not None:
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_top_k=-1))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=2, strategy="ddp",
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=ckpt_dir is not None, callbacks=callbacks)
    trainer.fit(Module(), DataLoader(data, batch_size=8, shuffle=False), ckpt_path=ckpt_path)
    return trainer, callback


trainer, full = fit(3)
fit(2, ckpt_dir=out / "ckpt")
trainer, resumed = fit(3, ckpt_path=str(out / "ckpt" / "epoch=1-step=8.ckpt"))
if trainer.is_global_zero:
    full.datamaps.save(out / "full")
    resumed.datamaps.save(out / "resumed")
"""


@pytest.mark.slow
def test_ddp_two_processes_resume_equals_uninterrupted(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    from stgmtl.datamaps import DataMaps

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    script = tmp_path / "ddp_lightning.py"
    script.write_text(_DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        str(script),
        str(tmp_path),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    full, resumed = DataMaps.load(tmp_path / "full"), DataMaps.load(tmp_path / "resumed")
    # each sample once per epoch on one of the two ranks: merged, padding dropped
    assert (full.count == 3).all()
    _assert_same_maps(resumed, full)
