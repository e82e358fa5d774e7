"""Fuzzy memberships: high-precision reference, log-space robustness, exact zeros, FCM."""

from decimal import Decimal, localcontext

import numpy as np
import pytest

from stgmtl.grouping.kmeans import sq_distances
from stgmtl.grouping.membership import fuzzy_cmeans, fuzzy_memberships, log_memberships


def _decimal_reference(d: np.ndarray, m: float) -> np.ndarray:
    """u_tc = 1 / sum_j (d_tc / d_tj) ** (2 / (m - 1)) at 80 significant digits."""
    out = np.empty(d.shape)
    with localcontext() as ctx:
        ctx.prec = 80
        ctx.Emax = 10**8
        ctx.Emin = -(10**8)
        a = Decimal(2) / (Decimal(repr(m)) - 1)
        for t in range(d.shape[0]):
            row = [Decimal(repr(float(v))) for v in d[t]]
            for c in range(d.shape[1]):
                total = sum(((row[c] / dj) ** a for dj in row), Decimal(0))
                out[t, c] = float(1 / total)
    return out


@pytest.mark.parametrize("m", [1.07, 1.5, 2.0, 3.0])
def test_matches_high_precision_reference_on_ordinary_distances(m):
    rng = np.random.default_rng(1)
    d = rng.uniform(0.1, 10.0, size=(6, 4))
    np.testing.assert_allclose(
        fuzzy_memberships(d, m), _decimal_reference(d, m), rtol=1e-11, atol=0
    )


def test_matches_reference_on_huge_and_tiny_distances_at_m_1_07():
    d = np.array(
        [
            [1e300, 2e300, 5e299],
            [1e-300, 3e-300, 2e-300],
            [1e-200, 1.0, 1e200],
            [7.0, 7.0000001, 7.0000002],
            [5e-324, 1e-323, 1e308],
        ]
    )
    ref = _decimal_reference(d, 1.07)
    u = fuzzy_memberships(d, 1.07)
    assert np.isfinite(u).all()
    np.testing.assert_allclose(u.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(u, ref, rtol=1e-9, atol=1e-300)


def test_numpy_direct_formula_at_moderate_m():
    rng = np.random.default_rng(2)
    d = rng.uniform(0.5, 3.0, size=(50, 5))
    m = 2.0
    ratio = (d[:, :, None] / d[:, None, :]) ** (2 / (m - 1))
    np.testing.assert_allclose(fuzzy_memberships(d, m), 1 / ratio.sum(axis=2), rtol=1e-13)


def test_squared_distances_give_the_same_memberships():
    rng = np.random.default_rng(3)
    d = rng.uniform(0.1, 50.0, size=(20, 3))
    np.testing.assert_allclose(
        fuzzy_memberships(d**2, 1.07, squared=True), fuzzy_memberships(d, 1.07), rtol=1e-12
    )


def test_zero_distance_gets_full_membership_split_among_ties():
    d = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    u = fuzzy_memberships(d, 1.07)
    np.testing.assert_array_equal(
        u, [[1, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]]
    )


def test_finite_and_normalised_for_extreme_m_and_infinite_entries():
    d = np.array([[1.0, 2.0, np.inf], [1e-10, 1e10, 1.0]])
    for m in (1 + 1e-9, 1.07, 1e6):
        u = fuzzy_memberships(d, m)
        assert np.isfinite(u).all() and (u >= 0).all()
        np.testing.assert_allclose(u.sum(axis=1), 1.0, rtol=1e-14)
    assert fuzzy_memberships(d, 1.07)[0, 2] == 0.0
    assert np.isneginf(log_memberships(d, 1.07)[0, 2])


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    d = np.array([[1.0, 2.0], [3.0, 0.5]])
    np.testing.assert_allclose(fuzzy_memberships(torch.tensor(d), 1.5), fuzzy_memberships(d, 1.5))


@pytest.mark.parametrize("m", [1.0, 0.5, -2.0, float("nan"), float("inf")])
def test_rejects_bad_m(m):
    with pytest.raises(ValueError, match="m: expected a finite fuzzifier > 1"):
        fuzzy_memberships(np.ones((2, 2)), m)


def test_rejects_non_numeric_m():
    with pytest.raises(TypeError, match="m: expected a real number > 1"):
        fuzzy_memberships(np.ones((2, 2)), "1.07")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "d, msg",
    [
        (np.array([[1.0, -1.0]]), ">= 0 and not NaN"),
        (np.array([[1.0, np.nan]]), ">= 0 and not NaN"),
        (np.array([[np.inf, np.inf]]), "infinite distance"),
        (np.ones(3), "non-empty"),
        (np.ones((0, 3)), "non-empty"),
    ],
)
def test_rejects_bad_distances(d, msg):
    with pytest.raises(ValueError, match=msg):
        fuzzy_memberships(d)


def _plain_fcm(x, c, m, iters):
    """Textbook FCM (no log space), valid for moderate m and distances."""
    for _ in range(iters):
        d = np.sqrt(sq_distances(x, c))
        u = 1 / ((d[:, :, None] / d[:, None, :]) ** (2 / (m - 1))).sum(axis=2)
        w = u**m
        c = (w.T @ x) / w.sum(axis=0)[:, None]
    return c


def test_fcm_matches_textbook_iteration():
    rng = np.random.default_rng(4)
    x = np.vstack([rng.normal(loc, 1.0, size=(30, 2)) for loc in (0, 5, 10)])
    init = x[[0, 30, 60]] + 0.3
    c, u, obj, n_iter = fuzzy_cmeans(x, init, m=2.0, max_iter=500, tol=1e-12)
    ref = _plain_fcm(x, init, 2.0, n_iter)
    np.testing.assert_allclose(c, ref, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(u.sum(axis=1), 1.0)
    d2 = sq_distances(x, c)
    assert obj == pytest.approx(float((u**2.0 * d2).sum()))
    # a fixed point: centroids are the u^m-weighted means of the data
    w = u**2.0
    np.testing.assert_allclose(c, (w.T @ x) / w.sum(axis=0)[:, None], rtol=1e-6, atol=1e-6)
