"""The Cartography export is what Dataset Cartography's own reader and metrics accept.

``read_cartography`` below re-implements the rules of ``read_training_dynamics`` in
allenai/cartography (``cartography/selection/selection_utils.py``): the number of epochs is the
number of files in ``<model>/training_dynamics``; ``dynamics_epoch_{e}.jsonl`` must exist for
every ``e`` below it; files are read in order, one JSON record per line; an example not seen
before may only appear in epoch 0 (an assertion there); its gold label is the one of epoch 0
and its per-epoch logits are appended in file order. ``cartography_metrics`` re-implements the
formulas of its ``compute_train_dy_metrics`` (``train_dy_filtering.py``): per example the
softmax probability of the gold label per epoch, confidence = their mean, variability = their
standard deviation (``np.std``, ddof 0), correctness = the number of epochs whose argmax is the
gold label. The metric code assumes every example's logits list has one entry per epoch; the
reader does not check it, so it is checked here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stgmtl import DataMaps, IndexedDataset, fit_datamaps
from stgmtl.loop import Hook


def read_cartography(model_dir: Path) -> dict:
    td = model_dir / "training_dynamics"
    num_epochs = len([f for f in td.iterdir() if f.is_file()])
    dynamics: dict = {}
    for epoch in range(num_epochs):
        f = td / f"dynamics_epoch_{epoch}.jsonl"
        assert f.exists(), f"Cartography's reader asserts {f} exists"
        for line in f.read_text().splitlines():
            record = json.loads(line.strip())
            guid = record["guid"]
            if guid not in dynamics:
                assert epoch == 0, f"Cartography's reader asserts: guid {guid} new in epoch {epoch}"
                dynamics[guid] = {"gold": record["gold"], "logits": []}
            dynamics[guid]["logits"].append(record[f"logits_epoch_{epoch}"])
    lengths = {len(v["logits"]) for v in dynamics.values()}
    assert lengths <= {num_epochs}, f"logits not aligned by epoch: lengths {lengths}"
    return dynamics


def cartography_metrics(dynamics: dict) -> dict:
    out = {}
    for guid, rec in dynamics.items():
        probs, right = [], []
        for logits in rec["logits"]:
            z = np.asarray(logits, dtype=np.float64)
            p = np.exp(z - z.max())
            p /= p.sum()
            probs.append(p[rec["gold"]])
            right.append(int(np.argmax(logits) == rec["gold"]))
        out[guid] = (float(np.mean(probs)), float(np.std(probs)), sum(right))
    return out


class SeenPerEpoch(Hook):
    """Which sample ids each epoch's batches held (to know what the export must keep)."""

    def __init__(self) -> None:
        self.seen: list[set[int]] = [set()]

    def after_step(self, step) -> None:
        self.seen[-1].update(step.batch.indices.tolist())

    def on_epoch_end(self, epoch, model) -> None:
        self.seen.append(set())


N, T, EPOCHS = 30, 3, 4


def _record(single_thread=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 6, generator=g)
    y = (x[:, :T] + 0.5 * torch.randn(N, T, generator=g) > 0).float()
    # the usual loader: shuffled, and drop_last drops a different remainder (30 % 7 = 2) each epoch
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=7, shuffle=True,
                        drop_last=True)  # fmt: skip
    hook = SeenPerEpoch()
    torch.manual_seed(0)
    dm = fit_datamaps(loader, nn.Linear(6, T), epochs=EPOCHS, lr=0.05, progress=False,
                      snapshot_epochs=list(range(1, EPOCHS + 1)), snapshot_kind="epoch",
                      hooks=[hook], task_names=["cat", "dog", "ship"])  # fmt: skip
    every = set.intersection(*hook.seen[:EPOCHS])
    return dm, sorted(every), hook.seen[:EPOCHS]


def test_export_of_a_drop_last_run_is_read_by_cartographys_rules(tmp_path, single_thread):
    dm, every, seen = _record()
    assert len(every) < N and any(len(s) < N for s in seen)  # some samples miss an epoch
    root = dm.to_cartography(tmp_path / "carto")
    pos = dm.sample_positions(every)
    for t, name in enumerate(dm.task_names):
        dynamics = read_cartography(root / name)  # raises where Cartography's reader would
        assert sorted(dynamics) == every
        metrics = cartography_metrics(dynamics)
        conf = np.array([metrics[g][0] for g in every])
        var = np.array([metrics[g][1] for g in every])
        right = np.array([metrics[g][2] for g in every])
        # one observation per epoch for the kept samples: Cartography's metrics are the maps'
        np.testing.assert_allclose(conf, dm.confidence[t, pos], rtol=0, atol=1e-12)
        np.testing.assert_allclose(var, dm.variability[t, pos], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(right, np.rint(dm.correctness[t, pos] * EPOCHS))
        assert [dynamics[g]["gold"] for g in every] == dm.targets[t, pos].tolist()
    back = DataMaps.from_cartography(root)
    assert back.sample_ids.tolist() == every and back.snapshot_epochs == [1, 2, 3, 4]
    np.testing.assert_allclose(back.confidence, dm.confidence[:, pos], atol=1e-12, rtol=0)
    np.testing.assert_allclose(back.variability, dm.variability[:, pos], atol=1e-9, rtol=0)


def test_reexport_leaves_no_stale_epochs_and_foreign_files_are_kept(tmp_path, single_thread):
    dm, every, _ = _record()
    root = dm.to_cartography(tmp_path / "carto")
    fewer = DataMaps(**{**dm.fields(), "snapshot_epochs": [1, 2],
                        "snapshot_confidence": dm.snapshot_confidence[:2],
                        "snapshot_variability": dm.snapshot_variability[:2],
                        "snapshot_correctness": dm.snapshot_correctness[:2]})  # fmt: skip
    fewer.to_cartography(root)  # replaces the 4-epoch export
    td = root / "cat" / "training_dynamics"
    assert sorted(f.name for f in td.iterdir()) == [
        "dynamics_epoch_0.jsonl",
        "dynamics_epoch_1.jsonl",
    ]
    assert all(len(v["logits"]) == 2 for v in read_cartography(root / "cat").values())
    assert not [p for p in (root / "cat").iterdir() if p.name.startswith(".")]  # no temp left
    (td / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="training_dynamics"):
        dm.to_cartography(root)
    assert (td / "notes.txt").read_text() == "mine"


def test_export_refuses_unusable_task_names_and_empty_tasks(tmp_path, single_thread):
    dm, _, _ = _record()
    bad = DataMaps(**{**dm.fields(), "task_names": ["cat", "../dog", "ship"]})
    with pytest.raises(ValueError, match="folder names"):
        bad.to_cartography(tmp_path / "x")
    conf = dm.snapshot_confidence.copy()
    conf[1, 2, :] = np.nan  # task "ship" unobserved in snapshot epoch 2
    empty = DataMaps(**{**dm.fields(), "snapshot_confidence": conf})
    with pytest.raises(ValueError, match="'ship' with samples observed in every snapshot"):
        empty.to_cartography(tmp_path / "y")
    assert not (tmp_path / "y").exists()  # nothing written
