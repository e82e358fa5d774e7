"""k-means: k-means++ seeding, planted recovery, best-of-n_init, determinism, exact distances."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from stgmtl.grouping.kmeans import kmeans, kmeans_plusplus, refine_full_space, sq_distances


def _blobs(sizes, d=16, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(len(sizes), d))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[labels] + spread * rng.normal(size=(labels.size, d))
    return x.astype(np.float32), labels


def test_sq_distances_exact_and_zero_on_centroids():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 7))
    c = x[[3, 10]]
    d2 = sq_distances(x, c, chunk_bytes=512)
    ref = ((x[:, None, :] - c[None]) ** 2).sum(axis=2)
    np.testing.assert_allclose(d2, ref, rtol=1e-14)
    assert d2[3, 0] == 0.0 and d2[10, 1] == 0.0


@pytest.mark.parametrize("trials", [1, None])
def test_kmeans_plusplus_picks_distinct_rows_one_per_blob(trials):
    x, labels = _blobs([200, 20, 5, 60, 15])
    c = kmeans_plusplus(x, 5, np.random.default_rng(0), trials)
    rows = [int(np.flatnonzero((x == ci).all(axis=1))[0]) for ci in c]
    assert len(set(rows)) == 5
    if trials is None:  # greedy: one seed in every blob, even the tiny ones
        assert sorted(labels[rows]) == [0, 1, 2, 3, 4]
    again = kmeans_plusplus(x, 5, np.random.default_rng(0), trials)
    np.testing.assert_array_equal(c, again)


def test_recovers_unequal_planted_blobs_and_reports_exact_inertia():
    x, labels = _blobs([400, 40, 10, 300, 250])
    res = kmeans(x, 5, n_init=3)
    assert adjusted_rand_score(labels, res.labels) == 1.0
    d2 = sq_distances(x, res.centroids)
    np.testing.assert_allclose(res.sq_distances, d2, rtol=1e-12, atol=1e-12 * d2.max())
    np.testing.assert_array_equal(res.labels, d2.argmin(axis=1))
    assert res.inertia == pytest.approx(d2.min(axis=1).sum(), rel=1e-12)
    sk = KMeans(5, n_init=10, random_state=0).fit(x)
    assert res.inertia <= sk.inertia_ * (1 + 1e-5)


def test_same_seed_is_bitwise_identical_more_restarts_and_swaps_never_hurt():
    x, _ = _blobs([100, 80, 60, 40], spread=2.5, seed=1)
    a = kmeans(x, 6, n_init=4, random_state=7)
    b = kmeans(x, 6, n_init=4, random_state=7)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.labels, b.labels)
    plain = {n: kmeans(x, 6, n_init=n, random_state=7, swap_rounds=0) for n in (1, 4)}
    assert plain[4].inertia <= plain[1].inertia  # restarts: the best is kept
    assert a.inertia <= plain[4].inertia * (1 + 1e-12)  # swaps repair the best restart


@pytest.mark.parametrize(
    "init", ["k-means++", "greedy-k-means++", "faiss-random", "faiss-k-means++"]
)
def test_every_init_runs(init):
    x, labels = _blobs([50, 50, 50])
    res = kmeans(x, 3, init=init, n_init=2)
    assert res.centroids.shape == (3, 16) and res.labels.shape == (150,)


def test_single_cluster_is_the_mean():
    x, _ = _blobs([30, 30])
    res = kmeans(x, 1)
    np.testing.assert_allclose(res.centroids[0], x.mean(axis=0), rtol=1e-5)
    assert (res.labels == 0).all()


def test_explicit_thread_count_gives_the_same_partition():
    x, labels = _blobs([60, 60, 60])
    a = kmeans(x, 3, n_threads=1)
    b = kmeans(x, 3, n_threads=2)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_rejects_unknown_init():
    with pytest.raises(ValueError, match="init: expected one of"):
        kmeans(np.zeros((4, 2), dtype=np.float32), 2, init="random")  # type: ignore[arg-type]


def test_full_space_refinement_matches_a_numpy_lloyd_loop():
    x, labels = _blobs([60, 50, 40], d=300, spread=6.0, seed=3)
    x = x + 5.0  # an offset, so that the block-wise centring matters
    start = labels.copy()
    start[:25] = (start[:25] + 1) % 3  # a poor start
    ref = start.copy()
    x64 = x.astype(np.float64)
    for _ in range(20):
        cent = np.stack([x64[ref == j].mean(axis=0) for j in range(3)])
        d2_ref = sq_distances(x64, cent)
        new = d2_ref.argmin(axis=1)
        if np.array_equal(new, ref):
            break
        ref = new
    d2, lab, n_iter = refine_full_space(x, start, 3, block_size=64)
    np.testing.assert_array_equal(lab, ref)
    np.testing.assert_allclose(d2, d2_ref, rtol=1e-4)
    assert n_iter >= 2
    blocks = [x[:, c : c + 100] for c in range(0, 300, 100)]
    d2_b, lab_b, _ = refine_full_space(lambda: iter(blocks), start, 3)
    np.testing.assert_array_equal(lab_b, lab)
    np.testing.assert_allclose(d2_b, d2, rtol=1e-5)
    with pytest.raises(ValueError, match="every group"):
        refine_full_space(x, np.zeros(150, dtype=int), 3)


def test_swaps_recover_groups_that_seeding_loses_at_many_groups():
    """60 groups: k-means++ draws are diluted by the covered groups' noise, so one restart of
    seeding + Lloyd merges some groups and splits others; swap rounds find every group."""
    rng = np.random.default_rng(0)
    k = 60
    labels = np.repeat(np.arange(k), rng.integers(20, 60, size=k))
    x = (rng.normal(size=(k, 24))[labels] + 0.45 * rng.normal(size=(labels.size, 24))).astype(
        np.float32
    )
    plain_aris, swapped_aris = [], []
    for seed in range(5):
        plain = kmeans(x, k, n_init=1, swap_rounds=0, random_state=seed)
        swapped = kmeans(x, k, n_init=1, random_state=seed)
        plain_aris.append(adjusted_rand_score(labels, plain.labels))
        swapped_aris.append(adjusted_rand_score(labels, swapped.labels))
        assert swapped.inertia <= plain.inertia
        assert swapped.n_swaps > 0 or plain_aris[-1] == 1.0
    assert max(plain_aris) < 1.0  # the failure the swaps repair
    assert swapped_aris == [1.0] * 5


def test_refinement_dense_and_sparse_group_averaging_agree(monkeypatch):
    """Small k averages groups with a dense (k, T) matrix, large k with a sparse one."""
    import stgmtl.grouping.kmeans as km

    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 300))[rng.integers(0, 3, 150)] + rng.normal(size=(150, 300))
    x = x.astype(np.float32)
    start = np.arange(150) % 3
    dense = refine_full_space(x, start, 3, block_size=64)
    monkeypatch.setattr(km, "_DENSE_AVERAGING_MAX", 0)  # force the sparse route
    sparse_ = refine_full_space(x, start, 3, block_size=64)
    np.testing.assert_array_equal(dense[1], sparse_[1])
    np.testing.assert_allclose(dense[0], sparse_[0], rtol=1e-5)
    assert dense[2] == sparse_[2]
