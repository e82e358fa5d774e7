"""stgmtl.record_affinity (the public contract), the `stgmtl affinity` command, and selective
task-group updates."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stgmtl
from stgmtl.affinity import TaskAffinity, free_signals
from stgmtl.cli import main
from stgmtl.loop import task_losses
from stgmtl.record import SIGNALS, IndexedDataset
from stgmtl.specialise.selective import credit_group, regroup, train_selective

NAMES = ["a", "not_a", "b", "coin"]


class _Named(TensorDataset):
    task_names = NAMES


def _loader(n=64, batch=16, seed=0, named=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = torch.stack([x[:, 0] > 0, x[:, 0] <= 0, x[:, 1] > 0, torch.rand(n, generator=g) > 0.5], 1)
    ds = (_Named if named else TensorDataset)(x, y.float())
    return DataLoader(IndexedDataset(ds), batch_size=batch, shuffle=True)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def test_record_affinity_contract_every_signal(tmp_path):
    out = stgmtl.record_affinity(
        _loader(), _model(), epochs=2, progress=False,
        settings={"tag": {"every": 2}, "grad-tag": {"n_samples": 32, "projection_dim": 8}},
    )  # fmt: skip
    assert list(out) == list(SIGNALS) == ["datamap", "confusion", "label", "colearning", "tag",
                                          "grad-cosine", "rep-cosine", "ptg",
                                          "grad-tag"]  # fmt: skip
    for name, aff in out.items():
        assert isinstance(aff, TaskAffinity)
        assert aff.signal == name and aff.task_names == NAMES
        assert isinstance(aff.values, np.ndarray) and aff.values.dtype == np.float64
        assert aff.values.shape == (4, 4)
        assert aff.orientation in ("source->recipient", "symmetric")
        assert "formula" in aff.meta
        off = aff.values[~np.eye(4, dtype=bool)]
        assert np.isfinite(off).all(), name
        back = TaskAffinity.load(aff.save(tmp_path / name))  # meta is JSON, values bitwise
        np.testing.assert_array_equal(back.values, aff.values)
        assert back.meta == aff.meta and back.snapshot_epochs == aff.snapshot_epochs
    # larger = more helpful: the distance is negated, the label statistic sees the complement
    assert (out["datamap"].values <= 0).all()
    assert out["label"].best_partners()[:2] == ["not_a", "a"]


def test_record_affinity_subset_order_and_per_task_loss():
    calls = []

    def per_task(logits, targets):
        calls.append(1)
        return task_losses(logits, targets)

    out = stgmtl.record_affinity(_loader(named=False), _model(), signals=["rep-cosine", "label"],
                                 epochs=1, progress=False, loss_fn=per_task)  # fmt: skip
    assert list(out) == ["rep-cosine", "label"] and calls
    assert out["label"].task_names == ["task_0", "task_1", "task_2", "task_3"]


def test_record_affinity_rejects_bad_arguments():
    with pytest.raises(ValueError, match="signals"):
        stgmtl.record_affinity(_loader(), _model(), signals=["nope"], progress=False)
    with pytest.raises(TypeError, match="signals"):
        stgmtl.record_affinity(_loader(), _model(), signals="tag", progress=False)
    with pytest.raises(ValueError, match="colearning"):
        stgmtl.record_affinity(_loader(), _model(), signals=["colearning"], epochs=1,
                               progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="settings"):
        stgmtl.record_affinity(_loader(), _model(), signals=["tag"], settings={"label": {}},
                               progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="per-task"):
        stgmtl.record_affinity(_loader(), _model(), signals=["tag"], epochs=1, progress=False,
                               loss_fn=lambda z, y: task_losses(z, y).sum())  # fmt: skip
    with pytest.raises(ValueError, match="heads"):  # no Linear with one output per task
        stgmtl.record_affinity(_loader(), nn.Sequential(nn.Linear(6, 4), nn.Tanh()),
                               signals=["tag"], epochs=1, progress=False)  # fmt: skip


# ------------------------------------------------------------------------------------ CLI
def test_cli_affinity_writes_the_free_signals(tmp_path, capsys):
    maps = stgmtl.fit_datamaps(_loader(), _model(), epochs=2, progress=False, task_names=NAMES,
                               snapshot_epochs=[1, 2], snapshot_kind="epoch")  # fmt: skip
    maps.save(tmp_path / "maps")
    assert main(["affinity", str(tmp_path / "maps"), "-o", str(tmp_path / "aff")]) == 0
    want = free_signals(maps)
    for name, aff in want.items():
        back = TaskAffinity.load(tmp_path / "aff" / name)
        np.testing.assert_array_equal(back.values, aff.values)
    printed = capsys.readouterr().out
    assert "strongest partner" in printed and "not_a" in printed
    code = main(["affinity", str(tmp_path / "maps"), "-o", str(tmp_path / "x"), "--signals", "tag"])
    assert code == 1 and "record_affinity" in capsys.readouterr().err
    plain = stgmtl.fit_datamaps(_loader(), _model(), epochs=1, progress=False)
    plain.save(tmp_path / "plain")
    assert main(["affinity", str(tmp_path / "plain"), "-o", str(tmp_path / "y")]) == 1
    assert "colearning needs 2" in capsys.readouterr().err
    assert main(["affinity", str(tmp_path / "plain"), "-o", str(tmp_path / "y"), "-q",
                 "--signals", "label,datamap"]) == 0  # fmt: skip


# ------------------------------------------------------------------------------ selective
def _official_rule(a, counts, group, before, after, decay):
    """The proximal-affinity update rule, one pair at a time."""
    for s in group:
        for t in range(len(before)):
            if before[t] <= 0:
                continue
            at = (1 - after[t] / before[t]) / len(group)
            if t in group:
                if before[s] <= 0:
                    continue
                as_ = (1 - after[s] / before[s]) / len(group)
                if t == s:
                    if at < 0:
                        continue
                    obs = at
                elif at * as_ >= 0:
                    obs = at
                else:
                    obs = -max(at, as_)
            else:
                obs = at
            a[s, t] = (1 - decay) * a[s, t] + decay * obs
            counts[s, t] += 1


def test_credit_group_follows_the_rule():
    rng = np.random.default_rng(0)
    t = 5
    got, ref = rng.random((t, t)), None
    ref = got.copy()
    cg, cr = np.zeros((t, t), np.int64), np.zeros((t, t), np.int64)
    for _ in range(20):
        group = sorted(rng.choice(t, size=rng.integers(1, 4), replace=False).tolist())
        before = rng.random(t) + 0.1
        before[rng.integers(t)] = 0.0  # a task without labels in the batch
        after = before * rng.uniform(0.5, 1.5, t)
        credit_group(got, cg, group, before, after, 0.1)
        _official_rule(ref, cr, group, before, after, 0.1)
    np.testing.assert_allclose(got, ref, atol=1e-15)
    np.testing.assert_array_equal(cg, cr)


def test_selective_credits_the_group_that_stepped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))
    loader = _loader(n=16, batch=16)
    ref_model = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.5)
    result = train_selective(loader, model, epochs=1, optimizer=torch.optim.SGD(model.parameters(),
                             lr=0.5), groups=[[0, 1, 2, 3]], decay=1.0, warmup=10, progress=False,
                             task_names=NAMES)  # fmt: skip
    x, y, _ = next(iter(_loader(n=16, batch=16)))
    before = task_losses(ref_model(x), y)
    ref_opt.zero_grad()
    before.sum().backward()
    ref_opt.step()
    with torch.no_grad():
        after = task_losses(ref_model(x), y)
    want, counts = np.zeros((4, 4)), np.zeros((4, 4), np.int64)
    _official_rule(want, counts, [0, 1, 2, 3], before.detach().double().numpy(),
                   after.double().numpy(), 1.0)  # fmt: skip
    np.testing.assert_allclose(result.affinity.values, want, atol=1e-6)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_selective_training_runs_regroups_and_is_seeded():
    def run():
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
        return train_selective(_loader(n=64, batch=8), model, epochs=2, warmup=2, decay=0.2,
                               progress=False, random_state=3)  # fmt: skip

    a, b = run(), run()
    np.testing.assert_array_equal(a.affinity.values, b.affinity.values)
    assert a.history[0] == (0, [["a"], ["not_a"], ["b"], ["coin"]])
    assert sorted(sum(a.groups, [])) == sorted(NAMES)
    assert a.affinity.signal == "proximal" and a.affinity.snapshot_epochs == [1, 2]
    assert a.steps == 16 and a.affinity.counts.sum() > 0


def test_regroup_finds_planted_blocks():
    a = np.full((6, 6), 0.01)
    a[:3, :3] = a[3:, 3:] = 1.0
    groups = regroup(a, random_state=0)
    assert sorted(map(sorted, groups)) == [[0, 1, 2], [3, 4, 5]]


def test_payoff_label_control_is_record_affinitys_label_signal():
    from stgmtl.payoff.signal_runs import default_signals, label_control
    from stgmtl.specialise.training import TrainConfig

    g = torch.Generator().manual_seed(3)
    x = torch.randn(96, 4, generator=g)
    y = torch.stack([x[:, 0] > 0, x[:, 0] > 0.5, x[:, 1] > 0], 1).float()
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=32, shuffle=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    names = ["a", "b", "c"]
    recorded = stgmtl.record_affinity(
        loader, model, signals=["label"], epochs=1, progress=False, task_names=names
    )["label"]
    control = label_control(y.numpy(), names)
    assert np.allclose(control.values, recorded.values, equal_nan=True)
    assert control.orientation == recorded.orientation == "source->recipient"
    assert default_signals(TrainConfig(epochs=3)) == list(SIGNALS)
    assert "colearning" not in default_signals(TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="targets: expected"):
        label_control(y.numpy(), names[:2])
