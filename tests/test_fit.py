"""fit_datamaps equals a manual loop with the recorder; eval recording; checkpoint resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stgmtl.record import DataMapRecorder, IndexedDataset, fit_datamaps

T, N, D = 3, 40, 6
_FIELDS = ("confidence", "variability", "correctness", "count", "targets",
           "snapshot_confidence", "snapshot_variability", "snapshot_correctness")  # fmt: skip


def _data(missing=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g)
    w = torch.randn(D, T, generator=g)
    y = (x @ w > 0).float()
    if missing:
        y[::7, 1] = float("nan")
    return IndexedDataset(TensorDataset(x, y))


def _model():
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, T))


def _loader(ds):
    return DataLoader(ds, batch_size=16, shuffle=True)


class _Interrupting:
    """A loader that raises KeyboardInterrupt when epoch ``after + 1`` starts."""

    def __init__(self, loader, after):
        self.loader, self.after, self.epoch = loader, after, 0
        self.dataset = loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.epoch += 1
        if self.epoch > self.after:
            raise KeyboardInterrupt
        return iter(self.loader)


def _manual(ds, model, epochs, record="train", onecycle=False):
    """The same training written by hand with the recorder in the user's loop."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rec = DataMapRecorder(T, N, snapshot_epochs=[2, 3], recording=record)
    loader = _loader(ds)
    sched = None
    if onecycle:
        total = epochs * len(loader)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=total)
    for _ in range(epochs):
        model.train()
        for x, y, i in loader:
            logits = model(x)
            mask = ~torch.isnan(y)
            per = nn.functional.binary_cross_entropy_with_logits(
                logits, torch.where(mask, y, 0), reduction="none"
            )
            m = mask.float()
            loss = ((per * m).sum(0) / m.sum(0).clamp(min=1)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if record == "train":
                rec.update(logits, y, i, mask=None if mask.all() else mask)
        if record == "eval":
            model.eval()
            with torch.no_grad():
                for x, y, i in loader:
                    mask = ~torch.isnan(y)
                    rec.update(model(x), y, i, mask=None if mask.all() else mask)
        rec.end_epoch()
    return rec.compute()


def _equal(a, b):
    for name in _FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("record", ["train", "eval"])
@pytest.mark.parametrize("missing", [False, True])
def test_fit_equals_manual_loop(record, missing):
    ds = _data(missing)
    dm = fit_datamaps(_loader(ds), _model(), epochs=3, lr=1e-2, snapshot_epochs=[2, 3],
                      record=record, progress=False, random_state=0)  # fmt: skip
    ref = _manual(ds, _model(), 3, record)
    _equal(dm, ref)
    assert dm.recording == record and dm.epochs == 3 and dm.num_tasks == T
    assert (dm.count[1] < dm.count[0]).any() == missing
    assert np.nanmean(dm.confidence) > 0.5  # the tasks are learnable


def test_onecycle_equals_manual_loop():
    ds = _data()
    dm = fit_datamaps(_loader(ds), _model(), epochs=3, lr=1e-2, scheduler="onecycle",
                      snapshot_epochs=[2, 3], progress=False, random_state=0)  # fmt: skip
    _equal(dm, _manual(ds, _model(), 3, onecycle=True))
    constant = fit_datamaps(_loader(ds), _model(), epochs=3, lr=1e-2, scheduler="constant",
                            snapshot_epochs=[2, 3], progress=False, random_state=0)  # fmt: skip
    _equal(constant, _manual(ds, _model(), 3))
    assert not np.array_equal(dm.confidence, constant.confidence)  # the schedule took effect


def test_callable_scheduler_and_errors():
    ds = _data()
    seen = []

    def factory(opt, total_steps):
        seen.append(total_steps)
        return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    model = _model()
    fit_datamaps(_loader(ds), model, epochs=2, lr=1e-2, scheduler=factory, progress=False)
    assert seen == [2 * len(_loader(ds))]
    with pytest.raises(ValueError, match="scheduler"):
        fit_datamaps(_loader(ds), _model(), epochs=1, scheduler="cosine", progress=False)
    batches = list(_loader(ds))
    with pytest.raises(ValueError, match="for a loader without len"):
        fit_datamaps(iter(batches), _model(), epochs=1, num_samples=N, scheduler="onecycle")


@pytest.mark.parametrize("scheduler", [None, "onecycle"])
def test_checkpoint_resume_equals_uninterrupted(tmp_path, scheduler):
    ds = _data()
    path = tmp_path / "ck" / "run.pt"
    kw = dict(lr=1e-2, snapshot_epochs=[2, 4], progress=False, scheduler=scheduler)
    straight = fit_datamaps(_loader(ds), _model(), epochs=4, **kw)
    # an interrupted run: the schedule is planned for 4 epochs, Ctrl-C comes in epoch 3
    with pytest.raises(KeyboardInterrupt):
        fit_datamaps(_Interrupting(_loader(ds), 2), _model(), epochs=4, checkpoint_path=path,
                     **kw)  # fmt: skip
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["run.pt"]
    other = nn.Sequential(nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, T))  # weights come from disk
    resumed = fit_datamaps(_loader(ds), other, epochs=4, checkpoint_path=path, **kw)
    _equal(resumed, straight)


def test_options_and_errors():
    ds = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def loss_fn(logits, y):
        seen.append(logits.shape)
        return nn.functional.binary_cross_entropy_with_logits(logits, y)

    dm = fit_datamaps(_loader(ds), model, epochs=1, optimizer=opt, loss_fn=loss_fn,
                      task_names=["a", "b", "c"], progress=False, ddof=1)  # fmt: skip
    assert seen and dm.task_names == ["a", "b", "c"] and dm.ddof == 1
    dm = fit_datamaps(_loader(ds), copy.deepcopy(model), epochs=1, pos_weight=[1, 2, 3],
                      task_weights=[1, 0, 1], probe_indices=[0, 5], progress=False)  # fmt: skip
    assert dm.sample_ids.tolist() == [0, 5]
    with pytest.raises(ValueError, match="epochs"):
        fit_datamaps(_loader(ds), model, epochs=0)
    with pytest.raises(ValueError, match="record"):
        fit_datamaps(_loader(ds), model, record="test")
    with pytest.raises(ValueError, match="dataset"):
        IndexedDataset([1, 2])[0]


def test_multiclass_fit():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, D, generator=g)
    y = torch.stack([(x[:, 0] > 0).long() + (x[:, 1] > 0).long(), (x[:, 2] > 0).long()], 1)
    model = nn.Sequential(nn.Linear(D, 2 * 3), nn.Unflatten(1, (2, 3)))
    ds = IndexedDataset(TensorDataset(x, y))
    dm = fit_datamaps(_loader(ds), model, epochs=2, task_type="multiclass", progress=False)
    assert dm.task_type == "multiclass" and dm.num_classes == 3
    assert (dm.count == 2).all() and (dm.targets == y.T.numpy()).all()
