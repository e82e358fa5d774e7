"""User-facing conventions: loader / model mistakes, set-like arguments, random_state, progress.

- A loader or model mistake raises a message that says what to yield and which of model output
  and targets has which shape (not torch internals).
- ``snapshot_epochs`` and ``probe_indices`` are sets: sorted and without repeats, as documented.
- ``random_state`` takes None, an int, a numpy Generator or a RandomState wherever it exists.
- Progress bars only for work long enough to watch: tiny runs print nothing to stderr.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stgmtl
from stgmtl import DataMapRecorder, IndexedDataset, fit_datamaps
from stgmtl.grouping.reduce import reduce_features
from stgmtl.plots import datamap_figure
from stgmtl.specialise import grouping_agreement
from stgmtl.specialise.baselines import random_groups

N, T = 24, 3


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 5, generator=g)
    y = (torch.rand(N, T, generator=g) > 0.5).float()
    return x, y


def _fit(loader, model=None, **kw):
    torch.manual_seed(0)
    model = nn.Linear(5, T) if model is None else model
    return fit_datamaps(loader, model, epochs=kw.pop("epochs", 2), progress=False, **kw)


# ------------------------------------------------------------------ loader and model (kind 4)
def test_loader_without_indices_says_what_to_yield(single_thread):
    x, y = _data()
    with pytest.raises(ValueError) as info:
        _fit(DataLoader(TensorDataset(x, y), batch_size=8))
    msg = str(info.value)
    assert msg.startswith("loader: expected batches (inputs, targets, indices)")
    assert "stgmtl.IndexedDataset" in msg and "got batches of 2 items" in msg
    # the advice works
    dm = _fit(DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=8))
    assert dm.num_samples == N and (dm.count == 2).all()


def test_wrong_number_of_task_logits_names_both_shapes(single_thread):
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y, torch.arange(N)), batch_size=8)
    with pytest.raises(ValueError) as info:
        _fit(loader, nn.Linear(5, T + 1))
    msg = str(info.value)
    assert msg.startswith("model: expected output of shape (B, T) = (8, 3)")
    assert "got model output of shape (8, 4) for targets of shape (8, 3)" in msg
    assert "disagree on the number of tasks" in msg
    with pytest.raises(ValueError, match=r"model output of shape \(8,\) for targets of shape"):
        _fit(loader, nn.Sequential(nn.Linear(5, 1), nn.Flatten(0)))


def test_other_loader_mistakes(single_thread):
    x, y = _data()
    with pytest.raises(ValueError, match=r"targets of shape \(B, T\).*got targets of shape \(8,\)"):
        _fit(DataLoader(TensorDataset(x, y[:, 0], torch.arange(N)), batch_size=8),
             nn.Linear(5, 1))  # fmt: skip
    with pytest.raises(ValueError, match="use the dataset without IndexedDataset"):
        _fit(DataLoader(IndexedDataset(TensorDataset(x, y, torch.arange(N))), batch_size=8))
    with pytest.raises(ValueError, match="got a batch of type dict"):
        _fit([{"x": x, "y": y}], num_samples=N)


# ----------------------------------------------------------------- set-like arguments (kind 5)
def test_snapshot_epochs_and_probe_indices_are_sorted_sets(single_thread):
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y, torch.arange(N)), batch_size=8)
    rec = DataMapRecorder(T, N, snapshot_epochs=[3, 2, 2], probe_indices=[3, 1, 1])
    assert rec.snapshot_epochs == [2, 3] and rec.probe_indices.tolist() == [1, 3]
    messy = _fit(loader, epochs=3, snapshot_epochs=[3, 2, 2], probe_indices=[3, 1, 1])
    clean = _fit(loader, epochs=3, snapshot_epochs=[2, 3], probe_indices=[1, 3])
    assert messy.snapshot_epochs == [2, 3] and messy.sample_ids.tolist() == [1, 3]
    for name in ("confidence", "variability", "correctness", "snapshot_confidence"):
        np.testing.assert_array_equal(getattr(messy, name), getattr(clean, name))
    with pytest.raises(ValueError, match=r"snapshot_epochs: expected epochs in \[1, epochs=3\]"):
        _fit(loader, epochs=3, snapshot_epochs=[2, 5])
    with pytest.raises(TypeError, match="snapshot_epochs: expected a non-empty 1-D sequence"):
        DataMapRecorder(T, N, snapshot_epochs=[1.5])


# ----------------------------------------------------------------------- random_state (kind 6)
FORMS = [None, 3, np.random.default_rng(0), np.random.RandomState(0)]


@pytest.mark.parametrize("rs", FORMS, ids=["None", "int", "Generator", "RandomState"])
def test_every_random_state_takes_the_four_forms(rs, single_thread):
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y, torch.arange(N)), batch_size=8, shuffle=True)
    dm = _fit(loader, random_state=rs)
    feats = np.random.default_rng(1).standard_normal((8, 6))
    assert stgmtl.group(feats, 2, random_state=rs, progress=False).n_groups == 2
    assert stgmtl.choose_k(feats, ks=[2, 3], random_state=rs).best_k in (2, 3)
    assert random_groups(np.eye(2)[[0, 0, 1, 1]], random_state=rs).shape == (4, 2)
    assert 0 <= grouping_agreement([0, 0, 1, 1], [0, 0, 1, 1], n_permutations=3,
                                   random_state=rs)["nmi_p"] <= 1  # fmt: skip
    assert datamap_figure(dm, max_points=5, random_state=rs) is not None
    wide = np.random.default_rng(2).standard_normal((300, 400))
    assert reduce_features(wide, method="rpca", random_state=rs).embedding.shape[0] == 300


@pytest.mark.parametrize("bad", [-1, "0", 1.5])
def test_bad_random_state_is_a_clear_error(bad, single_thread):
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y, torch.arange(N)), batch_size=8)
    for call in (
        lambda: _fit(loader, random_state=bad),
        lambda: grouping_agreement([0, 1], [0, 1], random_state=bad),
        lambda: random_groups(np.eye(2), random_state=bad),
        lambda: reduce_features(np.eye(4), random_state=bad),
    ):
        with pytest.raises((ValueError, TypeError), match="^random_state: expected None, an int"):
            call()


def test_same_int_or_same_seeded_generator_gives_the_same_data_maps(single_thread):
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y, torch.arange(N)), batch_size=8, shuffle=True)
    a, b = _fit(loader, random_state=5), _fit(loader, random_state=5)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    g1 = _fit(loader, random_state=np.random.default_rng(9))
    g2 = _fit(loader, random_state=np.random.default_rng(9))
    np.testing.assert_array_equal(g1.confidence, g2.confidence)


# -------------------------------------------------------------------------- progress (kind 6)
def test_tiny_work_prints_no_progress_bar(capfd, single_thread):
    x, y = _data()
    stgmtl.group(np.random.default_rng(0).standard_normal((12, 30)), 3)  # progress=True default
    stgmtl.group(np.random.default_rng(0).standard_normal((12, 30)), 3, reduce="rpca")
    torch.manual_seed(0)
    fit_datamaps(DataLoader(TensorDataset(x, y, torch.arange(N)), batch_size=8),
                 nn.Linear(5, T), epochs=1)  # fmt: skip
    err = capfd.readouterr().err
    assert err == "", err
