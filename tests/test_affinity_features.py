"""The "affinity" feature kind: graph construction against a numpy reference, negative and
missing affinities, connectivity, planted groups through ``stgmtl.group``, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import adjusted_rand_score

import stgmtl
from stgmtl.affinity import TaskAffinity
from stgmtl.features import FEATURE_KINDS, affinity_features, affinity_graph, task_features


def _planted(sizes=(4, 4, 4), seed=0, within=0.8, between=-0.3, noise=0.15, directed=True):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    v = np.where(labels[:, None] == labels[None, :], within, between)
    v = v + noise * rng.normal(size=v.shape)
    if not directed:
        v = (v + v.T) / 2
    names = [f"t{i}" for i in range(len(labels))]
    orientation = "source->recipient" if directed else "symmetric"
    return TaskAffinity(
        task_names=names, values=v, signal="planted", orientation=orientation
    ), labels


def _graph_reference(v: np.ndarray, negative: str) -> np.ndarray:
    """Loops: symmetrise (NaN -> the other direction), unobserved -> mean of the observed pairs,
    shift/clip, zero diagonal."""
    t = len(v)
    s = np.full((t, t), np.nan)
    for i in range(t):
        for j in range(t):
            a, b = v[i, j], v[j, i]
            vals = [x for x in (a, b) if not np.isnan(x)]
            if vals:
                s[i, j] = a if np.isnan(b) else (b if np.isnan(a) else (a + b) / 2)
    observed = [s[i, j] for i in range(t) for j in range(t) if i != j and not np.isnan(s[i, j])]
    mean = sum(observed) / len(observed)
    for i in range(t):
        for j in range(t):
            if i != j and np.isnan(s[i, j]):
                s[i, j] = mean
    low = min(min(observed), mean)
    w = np.zeros((t, t))
    for i in range(t):
        for j in range(t):
            if i != j:
                w[i, j] = s[i, j] - low if negative == "shift" else max(s[i, j], 0.0)
    return w


@pytest.mark.parametrize("negative", ["shift", "clip"])
def test_graph_matches_loop_reference_with_missing_pairs(negative):
    rng = np.random.default_rng(1)
    t = 7
    v = rng.normal(size=(t, t)) + 0.5
    v[rng.uniform(size=(t, t)) < 0.15] = np.nan
    v[0, 1] = v[1, 0] = np.nan  # unobserved both ways: the mean observed pair's weight
    aff = TaskAffinity(task_names=[f"t{i}" for i in range(t)], values=v, signal="x")
    got = affinity_graph(aff, negative=negative)
    want = _graph_reference(v, negative)
    if connected_components(want > 0, directed=False)[0] == 1:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    sym = np.where(np.isnan(v), v.T, v)
    sym = (sym + np.where(np.isnan(v.T), v, v.T)) / 2
    mean = np.nanmean(sym[~np.eye(t, dtype=bool)])
    expect = mean - np.nanmin(sym[~np.eye(t, dtype=bool)]) if negative == "shift" else mean
    assert (
        got[0, 1] == pytest.approx(max(expect, 0.0))
        or connected_components(want > 0, directed=False)[0] > 1
    )
    assert (got >= 0).all() and np.allclose(got, got.T) and (np.diag(got) == 0).all()


def test_disconnected_graph_is_regularised_not_left_broken():
    aff, labels = _planted(sizes=(3, 3), noise=0.0, between=-1.0)
    w = affinity_graph(aff, negative="clip")  # clipping the harmful pairs disconnects the groups
    assert connected_components(w > 0, directed=False)[0] == 1
    between = w[labels[:, None] != labels[None, :]]
    assert np.allclose(between, 1e-3 * 0.8)  # 1e-3 x the mean positive weight
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn warns on a disconnected graph
        x = affinity_features(aff, n_groups=2, negative="clip")
    assert adjusted_rand_score(labels, stgmtl.group(x, 2).labels) == 1.0


@pytest.mark.parametrize("negative", ["shift", "clip"])
@pytest.mark.parametrize("directed", [True, False])
def test_group_recovers_planted_groups_from_an_affinity(negative, directed):
    aff, labels = _planted(sizes=(5, 4, 6, 5), seed=2, directed=directed)
    groups = stgmtl.group(aff, 4, feature_kwargs={"negative": negative})
    assert adjusted_rand_score(labels, groups.labels) == 1.0
    assert groups.task_names == aff.task_names
    table = stgmtl.choose_k(aff, ks=range(2, 7)).table  # runs on the affinity's features too
    assert table["k"].to_list() == [2, 3, 4, 5, 6]


def test_rows_mode_and_task_features_default_kind():
    aff, labels = _planted(seed=3)
    x = task_features(aff)  # default kind for a TaskAffinity
    np.testing.assert_array_equal(x, task_features(aff, "affinity", n_groups=None))
    assert x.shape == (12, 10) and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)
    rows = affinity_features(aff, mode="rows")
    v = aff.values.copy()
    off = ~np.eye(12, dtype=bool)
    v[~off] = v[off].mean()
    np.testing.assert_allclose(rows, np.hstack([v, v.T]).astype(np.float32))
    groups = stgmtl.group(aff, 3, feature_kwargs={"mode": "rows"})
    assert adjusted_rand_score(labels, groups.labels) == 1.0
    assert FEATURE_KINDS["affinity"].input_type is TaskAffinity


def test_bad_affinity_feature_input():
    aff, _ = _planted()
    with pytest.raises(TypeError, match=r"data: expected a DataMaps for feature kind 'datamap'"):
        stgmtl.group(aff, 3, features="datamap")
    with pytest.raises(ValueError, match=r"negative: expected one of 'shift', 'clip', got 'x'"):
        affinity_features(aff, negative="x")
    with pytest.raises(ValueError, match=r"mode: expected one of 'spectral', 'rows'"):
        affinity_features(aff, mode="cols")
    flat = TaskAffinity(task_names=list("abcd"), values=np.ones((4, 4)), signal="flat")
    with pytest.raises(ValueError, match="no pair has a positive weight"):
        affinity_features(flat, n_groups=2)
    empty = TaskAffinity(task_names=list("abcd"), values=np.full((4, 4), np.nan), signal="e")
    with pytest.raises(ValueError, match="affinity: expected at least one observed pair"):
        affinity_features(empty)
    small = TaskAffinity(task_names=list("ab"), values=np.eye(2), signal="s")
    with pytest.raises(ValueError, match="affinity: expected at least 3 tasks"):
        affinity_features(small)
    with pytest.raises(TypeError, match="affinity: expected a TaskAffinity, got 'ndarray'"):
        affinity_features(np.eye(3))
