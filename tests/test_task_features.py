"""The cross-task confusion feature: numpy reference, planted groups, bad input."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from stgmtl.datamaps import DataMaps
from stgmtl.features import (
    choose_neighbors,
    confusion_affinity,
    confusion_features,
    confusion_matrix,
    neighbor_candidates,
    neighbor_stability,
    task_features,
)
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
    ties), union symmetrisation, plus the edges of a maximum spanning tree (Prim's algorithm
    over the positive entries, a loop)."""
    t = s.shape[0]
    b = np.zeros_like(s)
    for i in range(t):
        order = sorted((j for j in range(t) if j != i), key=lambda j: (-s[i, j], j))
        for j in order[:q]:
            b[i, j] = s[i, j]
    w = np.maximum(b, b.T)
    inside = {0}
    while len(inside) < t:
        edges = [
            (s[i, j], i, j) for i in inside for j in range(t) if j not in inside and s[i, j] > 0
        ]
        if not edges:
            break
        _, i, j = max(edges)
        w[i, j] = w[j, i] = s[i, j]
        inside.add(j)
    return w


def _components(w):
    from scipy.sparse.csgraph import connected_components

    return connected_components(np.asarray(w) > 0, directed=False)[0]


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
    assert _components(got.toarray()) == 1


def _two_cliques(size=5, bridge=0.02, seed=0):
    """Two planted groups whose tasks confuse each other strongly (about 0.3) and the other
    group's tasks barely (0.02): a 2-neighbour graph without a spanning tree can split them
    into more pieces than groups."""
    rng = np.random.default_rng(seed)
    t, per = 2 * size, 40
    truth = np.repeat([0, 1], size)
    owner = np.repeat(np.arange(t), per)
    targets = (owner[None, :] == np.arange(t)[:, None]).astype(np.int32)
    same = truth[:, None] == truth[owner][None, :]
    fired = np.where(
        same, rng.uniform(0.25, 0.35, same.shape), rng.uniform(0.9, 1.1, same.shape) * bridge
    )
    conf = np.where(targets == 1, 0.9, 1.0 - fired)
    return _maps(conf, targets), truth


def test_neighbour_graph_is_connected_by_construction():
    dm, _ = _two_cliques()
    dense = confusion_affinity(dm)
    for q in (1, 2, 3):
        with_tree = _knn_reference(dense, q)
        keep = np.zeros_like(dense, dtype=bool)
        for i in range(len(dense)):
            order = sorted(
                (j for j in range(len(dense)) if j != i), key=lambda j: (-dense[i, j], j)
            )
            keep[i, order[:q]] = True
        knn_only = np.where(keep | keep.T, dense, 0.0)
        assert _components(knn_only) >= 2  # without the tree the graph falls apart
        w = confusion_affinity(dm, n_neighbors=q).toarray()
        assert _components(w) == 1 and np.allclose(w, with_tree)
    # a task never observed has no confusion at all: the features still exist (tiny ridge)
    conf, targets = dm.confidence.copy(), dm.targets.copy()
    conf[0], targets[0] = np.nan, -1
    feats = confusion_features(_maps(conf, targets), n_groups=2, n_neighbors=2)
    assert np.isfinite(feats).all()


def test_auto_neighbors_is_chosen_by_stability_and_reproducible():
    dm, truth = _planted()  # 60 tasks, 6 groups
    scores = neighbor_stability(dm, 6, random_state=0)
    assert list(scores) == neighbor_candidates(60, 6) and list(scores)[-1] is None
    assert all(-1 <= m <= 1 and e >= 0 and -1 <= a <= 1 for m, e, a in scores.values())
    q = choose_neighbors(scores)
    # the one-standard-error rule: a candidate near the most stable one
    best = max(m for m, _, _ in scores.values())
    assert scores[q][0] >= best - max(e for m, e, _ in scores.values() if m == best)
    auto = confusion_features(dm, n_groups=6)  # n_neighbors="auto"
    np.testing.assert_array_equal(auto, confusion_features(dm, n_groups=6, n_neighbors=q))
    np.testing.assert_array_equal(auto, confusion_features(dm, n_groups=6))  # seeded
    # without a group count "auto" is the dense affinity
    np.testing.assert_array_equal(
        confusion_features(dm, n_components=6),
        confusion_features(dm, n_components=6, n_neighbors=None),
    )
    for nn in ("auto", 6, 10, None):
        g = group(dm, k=6, random_state=0, progress=False,
                  features="confusion", feature_kwargs={"n_neighbors": nn})  # fmt: skip
        assert adjusted_rand_score(truth, g.labels) == 1.0


def test_choose_neighbors_rule():
    # within one standard error of the most stable: the best agreement, then the densest
    scores = {2: (0.9, 0.05, 0.5), 3: (0.87, 0.01, 0.5), 4: (0.5, 0.0, 0.9), None: (0.6, 0, 0.9)}
    assert choose_neighbors(scores) == 3
    assert choose_neighbors({2: (1.0, 0.0, 0.5), 5: (1.0, 0.0, 0.2), None: (0.9, 0.0, 1.0)}) == 2
    assert choose_neighbors({2: (1.0, 0.0, 0.5), 5: (1.0, 0.0, 0.5), None: (1.0, 0, 0.5)}) is None
    assert choose_neighbors({2: (0.7, 0.0, 0.1), 5: (0.6, 0.0, 0.9), None: (0.5, 0.0, 1.0)}) == 2


def test_stability_prefers_the_graph_that_survives_resampling():
    """Two planted groups, noisy confusions: the dense graph and thin graphs are compared on
    resamples; whatever is chosen must give the planted groups."""
    dm, truth = _two_cliques(size=6, bridge=0.1, seed=3)
    scores = neighbor_stability(dm, 2, random_state=1)
    q = choose_neighbors(scores)
    g = group(dm, k=2, random_state=0, progress=False, features="confusion",
              feature_kwargs={"n_neighbors": q})  # fmt: skip
    assert adjusted_rand_score(truth, g.labels) == 1.0


@pytest.mark.parametrize("rs", [None, 7, np.random.default_rng(1), np.random.RandomState(2)])
def test_random_state_forms(rs):
    dm, _ = _planted(n_groups=2, per_group=4)
    assert confusion_features(dm, n_groups=2, random_state=rs).shape == (8, 2)


def test_bad_neighbors():
    dm, _ = _planted(n_groups=2, per_group=3)
    with pytest.raises(ValueError, match="n_neighbors"):
        confusion_features(dm, n_neighbors="all")
    with pytest.raises(ValueError, match="n_neighbors"):
        confusion_features(dm, n_neighbors=0)
    with pytest.raises(TypeError, match="n_neighbors"):
        confusion_features(dm, n_neighbors=2.5)


def _overlapping_suite(seed=0, per_class=60):
    """Tasks with overlapping labels, scored by a simulated model that is right on every real
    task (says yes with probability about 0.9 on its positives, 0.05 elsewhere) and at chance on
    random labels: twins (identical labels), nested tasks and a random task."""
    rng = np.random.default_rng(seed)
    cls = np.repeat(np.arange(6), per_class)  # class 5: negative for every real task
    labels = {
        "twin_a": cls == 0, "twin_b": cls == 0,
        "animal": np.isin(cls, [1, 2]), "dog": cls == 1, "bird": cls == 2,
        "vehicle": np.isin(cls, [3, 4]), "car": cls == 3, "truck": cls == 4,
        "random": rng.uniform(size=cls.size) < 0.5,
    }  # fmt: skip
    names = list(labels)
    targets = np.stack([labels[n] for n in names]).astype(np.int32)
    p_yes = np.where(targets == 1, rng.uniform(0.85, 0.95, targets.shape),
                     rng.uniform(0.02, 0.08, targets.shape))  # fmt: skip
    p_yes[names.index("random")] = rng.uniform(0.45, 0.55, cls.size)
    conf = np.where(targets == 1, p_yes, 1.0 - p_yes)  # probability of the true label
    dm = DataMaps(task_names=names, sample_ids=np.arange(cls.size), confidence=conf,
                  variability=np.zeros_like(conf), correctness=(conf > 0.5).astype(np.float64),
                  count=np.ones(conf.shape, np.int32), targets=targets)  # fmt: skip
    return dm, names


def test_overlapping_labels_twins_are_partners_and_random_is_nobodys():
    dm, names = _overlapping_suite()
    s = np.asarray(confusion_affinity(dm))
    s[np.eye(len(names), dtype=bool)] = -np.inf
    partner = {n: names[int(np.argmax(s[i]))] for i, n in enumerate(names)}
    assert partner["twin_a"] == "twin_b" and partner["twin_b"] == "twin_a"
    assert all(partner[n] != "random" for n in names if n != "random"), partner
    assert partner["dog"] == partner["bird"] == "animal"
    assert partner["car"] == partner["truck"] == "vehicle"
    # the probability of "yes" is read from confidence and target: on the twins' positives the
    # twin says yes with its confidence there (about 0.9), not 1 - confidence (its error)
    a = confusion_matrix(dm)
    i, j = names.index("twin_a"), names.index("twin_b")
    assert a[i, j] > 0.8 and a[j, i] > 0.8
    g = group(dm, k=3, random_state=0, progress=False, features="confusion")
    lab = dict(zip(names, g.labels, strict=True))
    assert lab["twin_a"] == lab["twin_b"]
    assert lab["dog"] == lab["bird"] == lab["animal"] != lab["car"]
    assert lab["car"] == lab["truck"] == lab["vehicle"]
