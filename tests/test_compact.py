"""The compact state layout: its error bound on adversarial inputs, exact merges and resumes,
the counters' overflow guard, exact rollback, and the formats saved by stgmtl 0.2.0."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from stgmtl import DataMaps
from stgmtl.record import DataMapRecorder
from stgmtl.record.compact import BOUND, BOUND_DDOF1, LEVELS, MAX_UPDATES
from stgmtl.record.native import native_kernel

KERNELS = ["torch"] + (["native"] if native_kernel() is not None else [])
OLD = Path(__file__).with_name("data") / "formats_v0.2"
_STATS = ("confidence", "variability", "correctness", "count", "targets",
          "snapshot_confidence", "snapshot_variability", "snapshot_correctness")  # fmt: skip


def _reference(zs, ys, ddof):
    """float64 numpy statistics of one sample's observations (rows of zs / ys) per task."""
    z, y = np.asarray(zs, np.float64), np.asarray(ys, np.float64)
    with np.errstate(over="ignore"):
        p = np.where(y > 0.5, 1.0 / (1.0 + np.exp(-z)), 1.0 / (1.0 + np.exp(z)))
    var = p.std(axis=0, ddof=ddof) if len(p) > ddof else np.zeros(p.shape[1])
    return p.mean(axis=0), var, ((z > 0) == (y > 0.5)).mean(axis=0)


def _adversarial(rng, t):
    """Logits at the extremes, around 0 (p near 1/2) and near rounding ties of p * LEVELS."""
    ties = np.log((np.arange(1, t + 1) + 0.5) / (LEVELS - np.arange(1, t + 1) - 0.5))
    return [
        np.full(t, 40.0), np.full(t, -40.0), np.full(t, 1e4), np.full(t, -1e4),
        np.zeros(t), rng.normal(0, 1e-6, t), ties, -ties, rng.normal(0, 3, t),
    ]  # fmt: skip


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("zdtype", [torch.float32, torch.float64])
def test_bound_on_adversarial_inputs_at_the_epoch_limit(kernel, ddof, zdtype):
    rng = np.random.default_rng(ddof)
    t = 64
    rows = _adversarial(rng, t)
    # a long run at the limit: 255 observations alternating between the extremes (the largest
    # variability) and the ties (the largest rounding), labels 0 and 1
    zs = np.stack([rows[i % len(rows)] * (1 if i % 2 else -1) for i in range(MAX_UPDATES)])
    ys = (rng.random((MAX_UPDATES, t)) > 0.5).astype(np.float64)
    ys[:, 0] = 1.0
    zs[:, 1] = np.where(np.arange(MAX_UPDATES) % 2, 40.0, -40.0)  # p alternates 0 and 1
    # constant p a hair past a rounding tie: every observation rounds the same way, so the
    # confidence error reaches nearly 1 / (2 * LEVELS), the bound's main term
    k = np.arange(2, 10)
    zs[:, 2:10] = np.log((k + 0.5 + 1e-4) / (LEVELS - k - 0.5 - 1e-4))
    ys[:, 2:10] = 1.0
    rec = DataMapRecorder(t, 2, kernel=kernel, ddof=ddof)
    for z, y in zip(zs, ys, strict=True):
        rec.update(torch.from_numpy(z).to(zdtype).view(1, -1), torch.from_numpy(y).view(1, -1),
                   torch.tensor([0]))  # fmt: skip
    dm = rec.compute()
    conf, var, corr = _reference(torch.from_numpy(zs).to(zdtype).double().numpy(), ys, ddof)
    vbound = BOUND_DDOF1 if ddof else BOUND
    err = np.abs(dm.confidence[:, 0] - conf)
    assert err.max() <= BOUND and err[2:10].min() > 0.9 * 0.5 / LEVELS  # the bound is tight
    assert np.abs(dm.variability[:, 0] - var).max() <= vbound
    np.testing.assert_array_equal(dm.correctness[:, 0], corr)  # exact
    assert (dm.count[:, 0] == MAX_UPDATES).all() and np.isnan(dm.confidence[:, 1]).all()
    assert np.array_equal(dm.targets[:, 0], (ys > 0.5).any(axis=0).astype(np.int32))


@pytest.mark.parametrize("kernel", KERNELS)
def test_constant_probability_has_zero_variability_exactly(kernel):
    # the statistics are evaluated in integers: no cancellation when the variability is 0
    rec = DataMapRecorder(3, 1, kernel=kernel, ddof=1)
    z = torch.tensor([[0.3, -7.0, 12.0]])
    for _ in range(100):
        rec.update(z, torch.ones(1, 3), torch.tensor([0]))
    assert (rec.compute().variability == 0.0).all()


def _stream(seed, *, n_batches=12, b=16, t=9, n=10, masked=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        z = torch.randn(b, t, generator=g) * 4
        y = torch.randint(0, 2, (b, t), generator=g).float()
        i = torch.randint(0, n, (b,), generator=g)
        m = (torch.rand(b, t, generator=g) > 0.2) if masked else None
        out.append((z, y, i, m))
    return out


@pytest.mark.parametrize("kernel", KERNELS)
def test_merges_and_resumes_are_exact_and_order_independent(kernel):
    batches, t, n = _stream(0), 9, 10
    whole = DataMapRecorder(t, n, kernel=kernel)
    parts = [DataMapRecorder(t, n, kernel=kernel) for _ in range(3)]
    for k, (z, y, i, m) in enumerate(batches):
        whole.update(z, y, i, mask=m)
        parts[k % 3].update(z, y, i, mask=m)
    want = whole.state_dict()["state"]
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        acc = copy.deepcopy(parts[order[0]].state_dict()["state"])
        for j in order[1:]:
            whole.spec.merge_(acc, parts[j].state_dict()["state"])
        for key in ("packed", "seen", "missing"):
            assert torch.equal(acc[key], want[key]), (order, key)
    # a resume through a state dict, recording on, equals the straight run bit for bit
    first = DataMapRecorder(t, n, kernel=kernel)
    for z, y, i, m in batches[:5]:
        first.update(z, y, i, mask=m)
    resumed = DataMapRecorder.from_state_dict(copy.deepcopy(first.state_dict()), kernel=kernel)
    for z, y, i, m in batches[5:]:
        resumed.update(z, y, i, mask=m)
    assert torch.equal(resumed.state_dict()["state"]["packed"], want["packed"])


@pytest.mark.parametrize("kernel", KERNELS)
def test_counter_overflow_is_refused_and_leaves_the_state_unchanged(kernel):
    rec = DataMapRecorder(5, 3, kernel=kernel)
    z, y = torch.randn(1, 5), torch.ones(1, 5)
    for _ in range(MAX_UPDATES - 1):
        rec.update(z, y, torch.tensor([1]))
    before = copy.deepcopy(rec.state_dict()["state"])
    with pytest.raises(RuntimeError, match=r"256 observations of one sample.*layout='float64'"):
        rec.update(torch.randn(2, 5), torch.ones(2, 5), torch.tensor([1, 1]))  # a duplicate
    for key, value in before.items():
        assert (value is None and rec.state_dict()["state"][key] is None) or torch.equal(
            value, rec.state_dict()["state"][key]
        ), key
    rec.update(z, y, torch.tensor([1]))  # the 255th still fits
    assert rec.compute().count[0, 1] == MAX_UPDATES
    with pytest.raises(RuntimeError, match="more than the 255"):
        rec.update(z, y, torch.tensor([1]))
    wide = DataMapRecorder(5, 3, kernel=kernel, layout="float64")  # no such limit
    for _ in range(MAX_UPDATES + 3):
        wide.update(z, y, torch.tensor([1]))
    assert wide.compute().count[0, 1] == MAX_UPDATES + 3


@pytest.mark.skipif("native" not in KERNELS, reason="native kernel unavailable")
@pytest.mark.parametrize("threads", [1, 2])
def test_refused_batch_is_rolled_back_bit_for_bit_with_new_target_bits(threads):
    t = 2100  # three column tiles of the kernel: one without new target bits
    rec = DataMapRecorder(t, 6, kernel="native", cpu_threads=threads)
    z, y, i, m = _stream(1, n_batches=1, b=6, t=t, n=6)[0]
    y = torch.zeros_like(y)
    y[:, :1024] = 1.0  # positives seen in the first tile only: its target bits are set
    rec.update(z, y, torch.arange(6), mask=m | (torch.arange(t) < 1024))
    before = copy.deepcopy(rec.state_dict()["state"])
    z2, y2, i2, m2 = _stream(2, n_batches=1, b=5, t=t, n=6)[0]
    z2[4, t - 1] = float("nan")  # the very last value: everything else was added first
    with pytest.raises(ValueError, match="logits: expected finite values"):
        rec.update(z2, torch.ones_like(y2), i2, mask=m2)
    after = rec.state_dict()["state"]
    for key in ("packed", "seen", "missing"):
        assert torch.equal(before[key], after[key]), key


def test_memory_is_8_bytes_a_cell_for_binary_tasks():
    t, n = 40, 25
    rec = DataMapRecorder(t, n)
    rec.update(torch.randn(3, t), torch.ones(3, t), torch.tensor([0, 1, 2]))
    state = rec.state_dict()["state"]
    cells = sum(v.nbytes for k, v in state.items() if v is not None and k != "seen")
    assert cells == 8 * t * n and state["seen"].nbytes == 8 * n
    wide = DataMapRecorder(t, n, layout="float64")
    wide.update(torch.randn(3, t), torch.ones(3, t), torch.tensor([0, 1, 2]))
    state = wide.state_dict()["state"]
    assert sum(v.nbytes for k, v in state.items() if v is not None and k != "seen") == 21 * t * n


# ---- formats saved by stgmtl 0.2.0 (tests/data/make_format_fixtures.py) ------------------


def _assert_stats(dm, expected):
    for k in _STATS:
        np.testing.assert_array_equal(getattr(dm, k), expected[k], err_msg=k)


@pytest.mark.parametrize("name", ["binary", "multiclass"])
def test_recorder_states_saved_by_0_2_load_and_record_on(name):
    saved = torch.load(OLD / f"recorder_{name}.pt", weights_only=False)
    assert saved["version"] == 2 and "layout" not in saved
    expected = np.load(OLD / f"recorder_{name}_expected.npz")
    rec = DataMapRecorder.from_state_dict(saved)
    assert rec.layout == "float64"  # a float64 state resumes in its own layout
    _assert_stats(rec.compute(), expected)
    # into a recorder made with the default (compact) layout: the saved layout wins
    fresh = DataMapRecorder(**{k: v for k, v in saved["config"].items()})
    assert fresh.layout == "compact"
    fresh.load_state_dict(saved)
    assert fresh.layout == "float64"
    _assert_stats(fresh.compute(), expected)
    c = 5 if name == "multiclass" else None
    t = rec.num_tasks
    z = torch.randn(2, t) if c is None else torch.randn(2, t, c)
    rec.update(z, torch.ones(2, t, dtype=torch.long), torch.tensor([1, 4]))
    again = rec.state_dict()
    assert again["version"] == 3 and again["layout"] == "float64"
    assert (rec.compute().count.sum() - expected["count"].sum()) == 2 * t


def test_callback_state_saved_by_0_2_loads():
    pytest.importorskip("lightning")
    from stgmtl.integrations.lightning import DataMapCallback

    saved = torch.load(OLD / "callback_binary.pt", weights_only=False)
    cfg = saved["recorder"]["config"]
    callback = DataMapCallback(DataMapRecorder(**cfg))
    callback.load_state_dict(saved)
    _assert_stats(callback.compute(), np.load(OLD / "recorder_binary_expected.npz"))


def test_fit_datamaps_resumes_a_checkpoint_saved_by_0_2(tmp_path):
    import sys

    sys.path.insert(0, str(OLD.parent))
    try:
        from make_format_fixtures import _fit_pieces
    finally:
        sys.path.remove(str(OLD.parent))
    from torch.utils.data import DataLoader

    from stgmtl.record import fit_datamaps

    path = tmp_path / "run.pt"
    shutil.copy(OLD / "fit_checkpoint.pt", path)
    ds, model = _fit_pieces()
    loader = DataLoader(ds, batch_size=16, shuffle=True)
    kw = dict(lr=1e-2, snapshot_epochs=[2, 3], progress=False)
    dm = fit_datamaps(loader, model, epochs=3, checkpoint_path=path, **kw)
    _assert_stats(dm, np.load(OLD / "fit_expected.npz"))


def test_datamaps_saved_by_0_2_load():
    # the same recording as recorder_binary.pt, saved as DataMaps (format version 2)
    dm = DataMaps.load(OLD / "datamaps_binary")
    assert dm.epochs == 2 and dm.snapshot_epochs == [1] and dm.state_layout == "float64"
    _assert_stats(dm, np.load(OLD / "recorder_binary_expected.npz"))


def test_datamaps_round_trip_the_state_layout(tmp_path):
    rec = DataMapRecorder(3, 4)
    rec.update(torch.randn(2, 3), torch.ones(2, 3), torch.tensor([0, 3]))
    dm = rec.compute()
    assert dm.state_layout == "compact"
    back = DataMaps.load(dm.save(tmp_path / "maps"))
    assert back.state_layout == "compact"
    _assert_stats(back, {k: getattr(dm, k) for k in _STATS})
    with pytest.raises(ValueError, match="state_layout"):
        DataMaps(**{**dm.fields(), "state_layout": "float16"})


@pytest.mark.parametrize("kernel", KERNELS)
def test_counts_carried_by_an_open_epoch_snapshot_count_towards_the_limit(kernel):
    rec = DataMapRecorder(2, 2, kernel=kernel, snapshot_epochs=[2], snapshot_kind="epoch")
    z, y, i = torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([0])
    for _ in range(200):
        rec.update(z, y, i)
    rec.end_epoch()  # epoch 2 is a snapshot epoch: its sums restart at 0, 200 carried
    for _ in range(MAX_UPDATES - 200):
        rec.update(z, y, i)
    with pytest.raises(RuntimeError, match="256 observations"):
        rec.update(z, y, i)
    rec.end_epoch()  # the carried part merges back without overflow
    dm = rec.compute()
    assert dm.count[0, 0] == MAX_UPDATES and dm.snapshot_confidence.shape == (1, 2, 2)
    assert dm.confidence[0, 0] == pytest.approx(0.5, abs=BOUND)
