"""choose_k: planted k is picked, table shape, pick rule, Xie-Beni, bad input."""

import numpy as np
import polars as pl
import pytest

from stgmtl.grouping.choose_k import ChooseKResult, _pick, choose_k, xie_beni


def planted(t=240, d=60, k=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, t)
    centres = rng.normal(scale=3.0, size=(k, d))
    return (centres[labels] + rng.normal(size=(t, d))).astype(np.float32), labels


def test_picks_the_planted_number_of_groups():
    x, _ = planted()
    res = choose_k(x, ks=range(2, 8), n_init=3)
    assert isinstance(res, ChooseKResult) and res.best_k == 4
    table, best = res
    assert best == 4
    assert table.columns == ["k", "silhouette", "xie_beni", "stability", "inertia", "chosen"]
    assert table["k"].to_list() == list(range(2, 8))
    assert table.filter(pl.col("chosen"))["k"].to_list() == [4]
    row = table.filter(pl.col("k") == 4).row(0, named=True)
    assert row["stability"] == 1.0 and row["silhouette"] > 0.5
    assert table["inertia"].is_sorted(descending=True)


def test_k_equal_one_and_single_seed():
    x, _ = planted(t=40)
    res = choose_k(x, ks=[1], n_seeds=1)
    assert res.best_k == 1
    row = res.table.row(0, named=True)
    assert np.isnan(row["silhouette"]) and np.isnan(row["xie_beni"]) and np.isnan(row["stability"])


def test_pick_rule_prefers_stable_then_silhouette_then_smaller_k():
    t = pl.DataFrame(
        {
            "k": [2, 3, 4, 5],
            "silhouette": [0.5, 0.9, 0.7, 0.7],
            "stability": [1.0, 0.5, 0.95, 0.95],
        }
    )
    assert _pick(t, 0.9) == 4
    assert _pick(t, 0.99) == 2
    assert _pick(t, 1.01) == 3  # nothing stable enough: best silhouette overall


def test_xie_beni_matches_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3))
    c = x[:3]
    u = rng.dirichlet(np.ones(3), size=20)
    num = sum(u[t, j] ** 2 * ((x[t] - c[j]) ** 2).sum() for t in range(20) for j in range(3))
    sep = min(((c[i] - c[j]) ** 2).sum() for i in range(3) for j in range(3) if i != j)
    assert xie_beni(x, u, c, 2.0) == pytest.approx(num / (20 * sep))


@pytest.mark.parametrize(
    "ks, msg",
    [
        ([], "ks: expected candidate"),
        ([0, 2], "ks: expected an int >= 1, got 0"),
        ([41], "ks: expected numbers of groups in \\[1, T=40\\], got \\[41\\]"),
    ],
)
def test_bad_ks(ks, msg):
    x, _ = planted(t=40)
    with pytest.raises(ValueError, match=msg):
        choose_k(x, ks=ks)
