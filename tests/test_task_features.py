"""The cross-task confusion feature: numpy reference, planted groups, bad input."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from stgmtl.datamaps import DataMaps
from stgmtl.features import confusion_affinity, confusion_features, confusion_matrix, task_features
from stgmtl.grouping import group


def _maps(conf, targets, task_type="binary"):
    t, n = conf.shape
    return DataMaps(
        task_names=[f"task{i}" for i in range(t)],
        sample_ids=np.arange(n),
        confidence=conf,
        variability=np.zeros_like(conf),
        correctness=(conf > 0.5).astype(np.float64),
        count=np.ones((t, n), np.int32),
        targets=targets,
        task_type=task_type,
    )


def _reference(conf, targets):
    t, n = conf.shape
    a = np.zeros((t, t))
    for i in range(t):
        for u in range(t):
            if i == u:
                continue
            pos = [j for j in range(n) if targets[u, j] == 1]
            if pos:  # P(task i says yes on j): its confidence where its own label is 1
                vals = [
                    0.0
                    if np.isnan(conf[i, j]) or targets[i, j] < 0
                    else (conf[i, j] if targets[i, j] == 1 else 1.0 - conf[i, j])
                    for j in pos
                ]
                a[i, u] = sum(vals) / len(pos)
    return a


def test_confusion_matrix_matches_loop_reference():
    rng = np.random.default_rng(0)
    t, n = 7, 40
    conf = rng.uniform(0, 1, (t, n))
    conf[rng.uniform(size=(t, n)) < 0.1] = np.nan  # never observed
    targets = (rng.uniform(size=(t, n)) < 0.2).astype(np.int32)  # multi-label
    targets[conf != conf] = -1
    targets[3] = 0  # a task without positives: its column stays zero
    got = confusion_matrix(_maps(conf, targets))
    np.testing.assert_allclose(got, _reference(conf, targets), rtol=1e-12, atol=1e-15)
    assert np.all(got[:, 3] == 0) and np.all(np.diag(got) == 0)


def _planted(n_groups=6, per_group=10, per_task=30, seed=0):
    """One-vs-rest tasks; each task fires on its group-mates' positives, barely on others."""
    rng = np.random.default_rng(seed)
    t = n_groups * per_group
    truth = np.repeat(np.arange(n_groups), per_group)
    owner = np.repeat(np.arange(t), per_task)  # the positive task of each sample
    targets = (owner[None, :] == np.arange(t)[:, None]).astype(np.int32)
    same = truth[:, None] == truth[owner][None, :]
    fired = np.where(same, rng.uniform(0.2, 0.4, same.shape), rng.uniform(0.0, 0.05, same.shape))
    conf = np.where(targets == 1, rng.uniform(0.5, 0.9, same.shape), 1.0 - fired)
    return _maps(conf, targets), truth


def test_planted_confusion_groups_are_recovered():
    dm, truth = _planted()
    feats = task_features(dm, "confusion", n_components=6)
    assert feats.dtype == np.float32 and feats.shape == (60, 6)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    groups = group(dm, k=6, random_state=0, progress=False, features="confusion")
    assert adjusted_rand_score(truth, groups.labels) == 1.0


def test_same_seed_same_features():
    dm, _ = _planted(seed=1)
    a = confusion_features(dm, n_components=5, random_state=3)
    b = confusion_features(dm, n_components=5, random_state=3)
    np.testing.assert_array_equal(a, b)


def test_n_components_is_capped_below_task_count():
    dm, _ = _planted(n_groups=2, per_group=3)
    assert confusion_features(dm, n_components=50).shape == (6, 4)


def test_bad_input():
    dm, _ = _planted(n_groups=2, per_group=3)
    with pytest.raises(ValueError, match="n_components"):
        confusion_features(dm, n_components=0)
    with pytest.raises(TypeError, match="n_components"):
        confusion_features(dm, n_components=2.5)
    conf = np.full((4, 8), 0.9)
    with pytest.raises(ValueError, match="binary"):
        confusion_matrix(_maps(conf, np.zeros((4, 8), np.int32), task_type="multiclass"))
    with pytest.raises(ValueError, match="all confusions are 0"):
        confusion_features(_maps(np.ones((4, 8)), np.eye(4, 8, dtype=np.int32)))
    with pytest.raises(ValueError, match="at least 3 tasks"):
        confusion_features(_maps(np.full((2, 8), 0.5), np.eye(2, 8, dtype=np.int32)))


def test_grouper_sizes_the_embedding_by_the_group_count():
    dm, _ = _planted()
    assert task_features(dm, "confusion").shape == (60, 20)  # no group count: 20
    assert task_features(dm, "confusion", n_groups=6).shape == (60, 6)
    assert task_features(dm, "datamap", n_groups=6).shape == task_features(dm).shape  # ignored
    assert task_features(dm, "confusion", n_groups=6, n_components=4).shape == (60, 4)


def _knn_reference(s, q):
    """Loop reference: each row keeps its q largest off-diagonal entries (lower index first on
    ties), then union symmetrisation."""
    t = s.shape[0]
    b = np.zeros_like(s)
    for i in range(t):
        order = sorted((j for j in range(t) if j != i), key=lambda j: (-s[i, j], j))
        for j in order[:q]:
            b[i, j] = s[i, j]
    return np.maximum(b, b.T)


@pytest.mark.parametrize("q", [1, 3, 8])
def test_knn_affinity_matches_loop_reference(q):
    rng = np.random.default_rng(2)
    t, n = 9, 60
    conf = rng.uniform(0, 1, (t, n))
    targets = (rng.uniform(size=(t, n)) < 0.2).astype(np.int32)
    dm = _maps(conf, targets)
    a = confusion_matrix(dm)
    dense = confusion_affinity(dm)
    np.testing.assert_allclose(dense, (a + a.T) / 2, rtol=1e-15)
    got = confusion_affinity(dm, n_neighbors=q)
    assert got.shape == (t, t) and got.format == "csr"
    np.testing.assert_allclose(got.toarray(), _knn_reference(dense, q), rtol=1e-15)
    assert ((got != 0).sum(axis=1) >= min(q, t - 1)).all()


def test_auto_neighbors_is_one_average_group():
    dm, truth = _planted()  # 60 tasks
    auto = confusion_features(dm, n_groups=6)  # n_neighbors="auto": 60 / 6 = 10
    np.testing.assert_array_equal(auto, confusion_features(dm, n_groups=6, n_neighbors=10))
    dense = confusion_features(dm, n_groups=6, n_neighbors=None)
    assert not np.allclose(auto, dense)
    # without a group count "auto" is the dense affinity
    np.testing.assert_array_equal(
        confusion_features(dm, n_components=6),
        confusion_features(dm, n_components=6, n_neighbors=None),
    )
    for q in (6, 10, None):  # a kNN graph thinner than about half a group can split groups
        g = group(dm, k=6, random_state=0, progress=False,
                  features="confusion", feature_kwargs={"n_neighbors": q})  # fmt: skip
        assert adjusted_rand_score(truth, g.labels) == 1.0


def test_bad_neighbors():
    dm, _ = _planted(n_groups=2, per_group=3)
    with pytest.raises(ValueError, match="n_neighbors"):
        confusion_features(dm, n_neighbors="all")
    with pytest.raises(ValueError, match="n_neighbors"):
        confusion_features(dm, n_neighbors=0)
    with pytest.raises(TypeError, match="n_neighbors"):
        confusion_features(dm, n_neighbors=2.5)
