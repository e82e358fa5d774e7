"""Reduction: method choice, lossless PCA, projection quality and determinism, streaming, errors."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from stgmtl.grouping.reduce import _iter_blocks, reduce_features


def _pdist(x):
    x = np.asarray(x, dtype=np.float64)
    g = x @ x.T
    n = np.diag(g)
    return np.sqrt(np.maximum(n[:, None] + n[None, :] - 2 * g, 0))


def _data(t, d, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(4, d))
    return (base[rng.integers(0, 4, t)] + rng.normal(size=(t, d))).astype(dtype)


def test_auto_keeps_narrow_features_as_they_are():
    x = _data(30, 20)
    r = reduce_features(x)
    assert r.method == "none" and r.embedding.dtype == np.float32
    np.testing.assert_array_equal(r.embedding, x)


def test_auto_pca_via_gram_is_lossless_for_few_tasks():
    x = _data(60, 5000)
    r = reduce_features(x, n_components=59, block_size=700)
    assert r.method == "pca" and r.embedding.shape == (60, 59)
    assert r.explained_variance_ratio == pytest.approx(1.0)
    np.testing.assert_allclose(_pdist(r.embedding), _pdist(x), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("t, d", [(60, 5000), (400, 200), (300, 3000)])
def test_auto_components_find_the_planted_directions(t, d):
    x = _data(t, d, seed=2)  # 4 planted groups: 3 signal directions above the noise edge
    assert reduce_features(x, min_components=1).embedding.shape == (t, 3)
    assert reduce_features(x).embedding.shape == (t, 16)  # default floor of 16
    assert reduce_features(x, n_components=5).embedding.shape == (t, 5)


def test_pca_via_covariance_matches_sklearn():
    x = _data(400, 200, dtype=np.float64)
    r = reduce_features(x, n_components=20)
    assert r.method == "pca"
    ref = PCA(n_components=20, svd_solver="full").fit(x)
    np.testing.assert_allclose(np.abs(r.embedding), np.abs(ref.transform(x)), rtol=1e-3, atol=1e-3)
    assert r.explained_variance_ratio == pytest.approx(ref.explained_variance_ratio_.sum())


def test_projection_roughly_preserves_distances_and_is_seeded():
    x = _data(300, 3000)
    r = reduce_features(x, method="projection", n_components=128, projection_dim=256)
    assert r.method == "projection" and r.embedding.shape == (300, 128)
    iu = np.triu_indices(300, 1)
    ratio = _pdist(r.embedding)[iu] / _pdist(x)[iu]
    assert 0.85 < np.median(ratio) < 1.05 and np.quantile(ratio, 0.01) > 0.6
    again = reduce_features(x, method="projection", n_components=128, projection_dim=256)
    np.testing.assert_array_equal(again.embedding, r.embedding)
    other = reduce_features(x, method="projection", random_state=1)
    assert not np.array_equal(other.embedding, r.embedding)


@pytest.mark.parametrize("method", ["projection", "rpca"])
def test_sketches_do_not_depend_on_block_size(method):
    x = _data(300, 3000)
    a = reduce_features(x, method=method, block_size=3000).embedding
    b = reduce_features(x, method=method, block_size=777).embedding
    # leading components; trailing noise components are near-degenerate and may rotate slightly
    np.testing.assert_allclose(a[:, :20], b[:, :20], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("n_power_iter", [0, 1])
def test_randomized_pca_matches_exact_leading_components(n_power_iter):
    x = _data(300, 2000, dtype=np.float64)
    r = reduce_features(
        x, n_components=8, projection_dim=256, n_power_iter=n_power_iter, block_size=700
    )
    assert r.method == "rpca" and r.embedding.shape == (300, 8)
    xc = x - x.mean(axis=0)
    vals, vecs = np.linalg.eigh(xc @ xc.T)
    ref = vecs[:, ::-1][:, :8] * np.sqrt(vals[::-1][:8])  # exact PCA scores
    # the 3 planted directions carry almost all of their variance; noise directions most of it
    ratio = np.linalg.norm(r.embedding, axis=0) / np.linalg.norm(ref, axis=0)
    assert (ratio[:3] > 0.995).all() and (ratio[3:] > 0.9).all() and (ratio < 1 + 1e-5).all()
    if n_power_iter:  # one power iteration pins the planted directions down pointwise
        err = np.abs(np.abs(r.embedding[:, :3]) - np.abs(ref[:, :3])).max()
        assert err < 2e-3 * np.abs(ref[:, :3]).max()


def test_rpca_needs_a_reiterable_source():
    x = _data(300, 2000)
    blocks = [x[:, :1000], x[:, 1000:]]
    assert reduce_features(lambda: iter(blocks)).method == "rpca"
    assert reduce_features(iter(blocks)).method == "projection"
    with pytest.raises(ValueError, match="one-shot iterator"):
        reduce_features(iter(blocks), method="rpca")


def test_column_block_iterator_and_callable_match_array_input():
    x = _data(300, 2500)
    blocks = [x[:, c : c + 1024] for c in range(0, 2500, 1024)]
    for method in ("projection", "rpca"):
        ref = reduce_features(x, method=method, block_size=1024).embedding
        from_callable = reduce_features(lambda: iter(blocks), method=method).embedding
        np.testing.assert_allclose(from_callable, ref, rtol=1e-5, atol=1e-4)
    from_iter = reduce_features(iter(blocks), method="projection").embedding
    np.testing.assert_array_equal(
        from_iter, reduce_features(lambda: iter(blocks), method="projection").embedding
    )
    few = _data(50, 2500)
    streamed = reduce_features(iter([few[:, :1000], few[:, 1000:]]), n_components=49)
    assert streamed.method == "pca"  # few tasks: exact PCA even when streamed
    np.testing.assert_allclose(_pdist(streamed.embedding), _pdist(few), rtol=1e-5, atol=1e-3)


def test_float32_array_is_read_in_views_without_copy():
    x = _data(10, 5000)
    for _, block in _iter_blocks(x, 1024):
        assert np.shares_memory(block, x)


def test_torch_and_integer_input():
    torch = pytest.importorskip("torch")
    x = _data(40, 300)
    a = reduce_features(torch.from_numpy(x)).embedding
    np.testing.assert_array_equal(a, reduce_features(x).embedding)
    h = reduce_features(torch.from_numpy(x).to(torch.bfloat16))
    assert h.embedding.dtype == np.float32
    ints = reduce_features(np.arange(12).reshape(4, 3) % 5)
    assert ints.method == "none"


@pytest.mark.parametrize(
    "data, msg",
    [
        (np.full((5, 4), np.nan), "non-finite value .*task 0, feature 0"),
        (np.where(np.eye(5, 400) > 0, np.inf, 1.0), "non-finite value \\(inf\\) at task 0"),
        (np.zeros((0, 5)), "empty"),
        (np.zeros((5, 0)), "empty"),
        (np.ones(5), "2-D"),
        (np.ones((5, 300)), "identical features"),
        (np.ones((5, 3)), "identical features"),
        (np.ones((400, 300)), "identical features"),
        (np.ones((400, 3000), dtype=np.float32), "identical features"),
        (iter([]), "empty iterator"),
        (iter([np.ones((3, 2)), np.ones((4, 2))]), "block 1 has 4 rows"),
    ],
)
def test_bad_input_raises_clear_errors(data, msg):
    with pytest.raises(ValueError, match=msg):
        reduce_features(data)


def test_bad_parameters_and_dtypes():
    x = _data(10, 10)
    with pytest.raises(ValueError, match="^method: expected one of"):
        reduce_features(x, method="svd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^n_components: expected an int >= 1, got 0"):
        reduce_features(x, n_components=0)
    with pytest.raises(ValueError, match="block_size"):
        reduce_features(x, block_size=0)
    with pytest.raises(TypeError, match="^n_power_iter: expected an int >= 0, got 1.5"):
        reduce_features(x, n_power_iter=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="real numbers"):
        reduce_features(np.array([["a", "b"], ["c", "d"]]))


def test_passes_compute_first_pass_statistics_once_and_share_them():
    """Column means and per-task centred norms from the first pass equal numpy's (also for
    blocks rescaled by a power of two); later passes reuse them instead of reading for them."""
    from stgmtl.grouping.reduce import Passes

    x = _data(40, 700, seed=4).astype(np.float64)
    x[:, 300:400] *= 1e50  # a block that needs a scale
    passes = Passes(x, 128, False)
    seen = list(passes.blocks("first"))
    ref_means = x.mean(axis=0)
    got = np.concatenate([mean * scale for _, _, mean, scale in seen])
    np.testing.assert_allclose(got, ref_means, rtol=1e-12)
    xc = x - ref_means
    np.testing.assert_allclose(passes.row_norms, (xc**2).sum(axis=1), rtol=1e-6)
    assert passes.sumsq == pytest.approx(float((xc**2).sum()), rel=1e-6)
    assert passes.complete and passes.n_cols == 700 and passes.varies
    again = list(passes.blocks("second"))
    assert all(a[2] is b[2] for a, b in zip(seen, again, strict=True))  # the same arrays


def test_passes_redo_an_unfinished_first_pass_and_notice_changed_blocks():
    from stgmtl.grouping.reduce import Passes

    x = _data(30, 500, seed=5)
    passes = Passes(x, 100, False)
    it = passes.blocks("first")
    next(it)
    it.close()  # abandoned after one block: its statistics are incomplete
    assert not passes.complete
    list(passes.blocks("again"))
    assert passes.complete and len(passes.means) == 5
    xc = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(passes.row_norms, (xc**2).sum(axis=1), rtol=1e-5)
    blocks = [[x[:, :250], x[:, 250:]], [x[:, :100], x[:, 100:300], x[:, 300:]]]
    calls = iter(blocks)
    shifting = Passes(lambda: iter(next(calls)), None, False)
    list(shifting.blocks("first"))
    with pytest.raises(ValueError, match="changed between passes"):
        list(shifting.blocks("second"))


def test_grouper_reads_a_callable_source_once_per_stage_pass(monkeypatch):
    """The reduction and the refinement share one Passes: one first pass computes the
    statistics, and every read of the data is a pass a stage needs (one peek at the first
    block, the sketch, the power iterations, the refinement's passes); the groups equal those
    of the array input."""
    from stgmtl.grouping.grouper import TaskGrouper
    from stgmtl.grouping.reduce import Passes

    firsts = []
    blocks = Passes.blocks

    def counting(self, desc):
        firsts.append(not self.complete)
        return blocks(self, desc)

    monkeypatch.setattr(Passes, "blocks", counting)

    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 3000))[np.arange(300) % 4] * 0.5 + rng.normal(size=(300, 3000))
    x = x.astype(np.float32)
    reads = []

    def source():
        reads.append(1)
        return iter([x[:, c : c + 1000] for c in range(0, 3000, 1000)])

    est = TaskGrouper(4, m=1.5, progress=False).fit(source)
    assert est.reduction_ == "rpca" and est.refined_
    assert len(reads) == 1 + (1 + est.n_power_iter + 1) + est.n_refine_iter_
    assert sum(firsts) == 1 and len(firsts) == len(reads) - 1
    ref = TaskGrouper(4, m=1.5, progress=False).fit(x)
    np.testing.assert_array_equal(est.labels_, ref.labels_)
