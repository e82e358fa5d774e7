"""The free affinity signals (stgmtl.affinity.signals) against plain loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stgmtl.affinity import (
    FREE_SIGNALS,
    TaskAffinity,
    colearning_signal,
    confusion_signal,
    datamap_signal,
    free_signals,
    label_signal,
)
from stgmtl.datamaps import DataMaps


def _maps(t=5, n=40, s=4, kind="epoch", seed=0, nan=True):
    rng = np.random.default_rng(seed)
    conf = rng.random((t, n))
    var = rng.random((t, n)) * 0.3
    snaps = rng.random((s, t, n))
    y = rng.integers(0, 2, (t, n)).astype(np.int32)
    y[1] = 1 - y[0]  # complement
    y[2] = y[0]  # twin
    if nan:
        conf[3, :3] = np.nan
        var[3, :3] = np.nan
        y[3, :3] = -1
        snaps[-1, 4, 5] = np.nan
    return DataMaps(
        task_names=[f"t{i}" for i in range(t)],
        sample_ids=np.arange(n),
        confidence=conf,
        variability=var,
        correctness=conf.copy(),
        count=np.full((t, n), s, np.int32),
        targets=y,
        snapshot_epochs=list(range(1, s + 1)),
        snapshot_confidence=snaps,
        snapshot_variability=snaps * 0.1,
        snapshot_correctness=snaps,
        snapshot_kind=kind,
        epochs=s,
    )


def test_datamap_signal_matches_loop_reference():
    dm = _maps()
    got = datamap_signal(dm)
    t = dm.num_tasks
    for i in range(t):
        for j in range(t):
            both = np.isfinite(dm.confidence[i]) & np.isfinite(dm.confidence[j])
            sq = [(dm.confidence[i, n] - dm.confidence[j, n]) ** 2
                  + (dm.variability[i, n] - dm.variability[j, n]) ** 2
                  for n in range(dm.num_samples) if both[n]]  # fmt: skip
            want = -math.sqrt(sum(sq) / (2 * len(sq)))
            assert got.values[i, j] == pytest.approx(want, abs=1e-12)
            assert got.counts[i, j] == both.sum()
    assert got.orientation == "symmetric" and got.signal == "datamap"
    assert got.snapshot_epochs == dm.snapshot_epochs
    assert "formula" in got.meta


def test_confusion_signal_is_the_symmetrised_says_yes_rule():
    dm = _maps(nan=False)
    got = confusion_signal(dm)
    t = dm.num_tasks
    yes = np.where(dm.targets == 1, dm.confidence, 1 - dm.confidence)
    for i in range(t):
        for j in range(t):
            if i == j:
                assert np.isnan(got.values[i, j])
                continue
            a_ij = yes[i][dm.targets[j] == 1].mean()
            a_ji = yes[j][dm.targets[i] == 1].mean()
            assert got.values[i, j] == pytest.approx((a_ij + a_ji) / 2, abs=1e-12)


def _entropy(p):
    p = np.asarray(p, float)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def test_label_statistics_match_a_contingency_loop():
    dm = _maps()
    y = dm.targets
    unc = label_signal(dm).values
    ce = label_signal(dm, statistic="conditional_entropy").values
    phi = label_signal(dm, statistic="phi").values
    t = dm.num_tasks
    for i in range(t):
        for j in range(t):
            both = (y[i] >= 0) & (y[j] >= 0)
            a, b = y[i][both], y[j][both]
            joint = np.array([[np.mean((a == u) & (b == v)) for v in (0, 1)] for u in (0, 1)])
            hj = _entropy(joint.sum(0))
            mi = _entropy(joint.sum(1)) + hj - _entropy(joint.ravel())
            assert unc[i, j] == pytest.approx(mi / hj, abs=1e-9)
            assert ce[i, j] == pytest.approx(-(hj - mi), abs=1e-9)
            assert phi[i, j] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-9)
    # planted: the complement and the twin are fully explained, with phi -1 and +1
    assert unc[0, 1] == pytest.approx(1.0) and unc[0, 2] == pytest.approx(1.0)
    assert phi[0, 1] == pytest.approx(-1.0) and phi[0, 2] == pytest.approx(1.0)


def test_label_signal_from_an_array_and_multiclass():
    y = np.array([[0, 1, 2, 2, 1, 0], [1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 0, 0]])
    aff = label_signal(y, task_names=["a", "b", "c"])
    assert aff.task_names == ["a", "b", "c"]
    # c is a function of a (2 -> 1, else 0): knowing a explains c fully
    assert aff.values[0, 2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="phi"):
        label_signal(y, statistic="phi")
    with pytest.raises(ValueError, match="statistic"):
        label_signal(y, statistic="nope")


@pytest.mark.parametrize("kind", ["epoch", "cumulative"])
def test_colearning_matches_loop_reference(kind):
    dm = _maps(kind=kind)
    got = colearning_signal(dm)
    c = dm.snapshot_confidence
    t = dm.num_tasks
    d = []
    for e in range(1, c.shape[0]):
        rows = []
        for k in range(t):
            diff = c[e, k] - c[e - 1, k]
            ok = np.isfinite(diff)
            rows.append(np.where(ok, diff - diff[ok].mean(), 0.0))
        d.append(np.array(rows))
    d = np.concatenate(d, axis=1)
    for i in range(t):
        for j in range(t):
            want = (d[i] @ d[j]) / math.sqrt((d[i] @ d[i]) * (d[j] @ d[j]))
            assert got.values[i, j] == pytest.approx(want, abs=1e-12)
    assert got.snapshot_epochs == dm.snapshot_epochs[1:]
    np.testing.assert_allclose(got.snapshots[-1], got.values, atol=1e-12)


def test_colearning_needs_two_snapshots():
    dm = _maps(s=1)
    with pytest.raises(ValueError, match="snapshot"):
        colearning_signal(dm)


def test_free_signals_returns_each_in_order_and_round_trips(tmp_path):
    dm = _maps()
    out = free_signals(dm)
    assert list(out) == list(FREE_SIGNALS)
    for name, aff in out.items():
        assert isinstance(aff, TaskAffinity) and aff.signal == name
        assert aff.values.dtype == np.float64 and aff.values.shape == (5, 5)
        back = TaskAffinity.load(aff.save(tmp_path / name))
        np.testing.assert_array_equal(back.values, aff.values)
        assert back.meta == aff.meta and back.orientation == aff.orientation
    with pytest.raises(ValueError, match="signals"):
        free_signals(dm, ["tag"])
    with pytest.raises(TypeError, match="signals"):
        free_signals(dm, "label")


def test_moved_confusion_rule_is_still_the_feature_stage_rule():
    from stgmtl.affinity import confusion_matrix, says_yes
    from stgmtl.features import confusion_matrix as feature_confusion
    from stgmtl.features import says_yes as feature_says_yes

    assert feature_confusion is confusion_matrix and feature_says_yes is says_yes
