"""Per-task metrics against hand-computed values and sklearn; the summary over seeds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from stgmtl.specialise.metrics import summarise, task_metrics


def test_hand_computed_values() -> None:
    y = np.array([[1], [0], [1], [0]])
    s = np.array([[2.0], [-1.0], [-0.5], [0.3]])  # predictions 1, 0, 0, 1: TP FP FN TN = 1 1 1 1
    row = task_metrics(s, y, ["t"], method="m", seed=3).row(0, named=True)
    assert row["method"] == "m" and row["seed"] == 3 and row["task"] == "t"
    assert row["f1"] == pytest.approx(0.5)
    assert row["balanced_accuracy"] == pytest.approx(0.5)
    assert row["accuracy"] == pytest.approx(0.5)
    assert row["roc_auc"] == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered
    assert row["positives"] == 2


def test_against_sklearn_random_inputs() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < [0.05, 0.3, 0.5, 0.9]).astype(int)
    s = rng.normal(size=(200, 4)) + 1.5 * y - 0.5
    table = task_metrics(s, y, list("abcd"))
    assert table.columns[:7] == [
        "method",
        "seed",
        "task",
        "f1",
        "balanced_accuracy",
        "roc_auc",
        "accuracy",
    ]
    s[:, 1] = np.round(s[:, 1])  # ties: average ranks, as sklearn
    table = task_metrics(s, y, list("abcd"))
    for t in range(4):
        r = table.row(t, named=True)
        pred = s[:, t] > 0
        assert r["f1"] == pytest.approx(f1_score(y[:, t], pred))
        assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y[:, t], pred))
        assert r["roc_auc"] == pytest.approx(roc_auc_score(y[:, t], s[:, t]))
        assert r["accuracy"] == pytest.approx((pred == y[:, t]).mean())


def test_single_class_task_gives_nan_auc() -> None:
    t = task_metrics(np.array([[0.1], [-0.2]]), np.array([[0], [0]]), ["x"])
    assert np.isnan(t["roc_auc"][0]) and t["f1"][0] == 0.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="must both be"):
        task_metrics(np.zeros((3, 2)), np.zeros((3, 1)), ["a", "b"])
    with pytest.raises(ValueError, match="only 0 and 1"):
        task_metrics(np.zeros((2, 1)), np.array([[2], [0]]), ["a"])


def test_summarise_over_seeds() -> None:
    table = pl.DataFrame(
        {
            "method": ["a"] * 4 + ["b"] * 2,
            "seed": [0, 0, 1, 1, 0, 0],
            "task": ["x", "y"] * 3,
            "f1": [0.2, 0.4, 0.6, 0.8, 0.5, 0.5],
        }
    )
    out = summarise(table, metrics=("f1",))
    a = out.filter(pl.col("method") == "a").row(0, named=True)
    assert a["seeds"] == 2 and a["f1_mean"] == pytest.approx(0.5)
    assert a["f1_std"] == pytest.approx(np.std([0.3, 0.7], ddof=1))
    assert a["f1_min"] == pytest.approx(0.3) and a["f1_max"] == pytest.approx(0.7)
    b = out.filter(pl.col("method") == "b").row(0, named=True)
    assert b["seeds"] == 1 and b["f1_std"] is None
    with pytest.raises(ValueError, match="table: expected columns"):
        summarise(table)


def test_method_comparison_figure_shows_the_seed_means() -> None:
    from stgmtl.plots import method_comparison_figure
    from stgmtl.specialise.metrics import seed_means

    rng = np.random.default_rng(0)
    tables = [
        task_metrics(
            rng.normal(size=(50, 5)), rng.random((50, 5)) < 0.3, list("abcde"), method=m, seed=s
        )
        for m in ("grouped", "one_model")
        for s in (0, 1)
    ]
    table = pl.concat(tables)
    table = table.with_columns(  # an undefined AUC must not turn a seed mean into NaN
        pl.when((pl.col("task") == "a") & (pl.col("seed") == 0))
        .then(float("nan"))
        .otherwise(pl.col("roc_auc"))
        .alias("roc_auc")
    )
    fig = method_comparison_figure(table)
    assert len(fig.axes) == 3
    means = seed_means(table, ("f1", "balanced_accuracy", "roc_auc"))
    auc_ax = fig.axes[2]
    for i, method in enumerate(("grouped", "one_model")):
        dots = auc_ax.collections[i].get_offsets()[:, 1]
        want = means.filter(pl.col("method") == method)["roc_auc"].to_numpy()
        np.testing.assert_allclose(np.sort(dots), np.sort(want))
        assert np.isfinite(dots).all()
    with pytest.raises(ValueError, match="lacks columns"):
        method_comparison_figure(pl.DataFrame({"method": ["a"]}))


def test_grouping_agreement() -> None:
    from stgmtl.specialise.metrics import grouping_agreement

    ref = np.repeat(["a", "b", "c", "d"], 5)
    perfect = grouping_agreement(np.repeat([3, 1, 0, 2], 5), ref, n_permutations=50)
    assert perfect["nmi"] == pytest.approx(1.0) and perfect["ari"] == pytest.approx(1.0)
    assert perfect["nmi_p"] == pytest.approx(1 / 51)
    assert abs(perfect["ari_random_mean"]) < 0.1 and perfect["nmi_random_mean"] < 0.5
    rng = np.random.default_rng(0)
    noise = grouping_agreement(rng.integers(0, 4, 20), ref, n_permutations=50, random_state=1)
    assert noise["nmi"] < 0.6 and noise["nmi_p"] > 0.01
    again = grouping_agreement(rng.integers(0, 4, 20), ref, n_permutations=5, random_state=1)
    assert again["n_permutations"] == 5
    with pytest.raises(ValueError, match="must both be"):
        grouping_agreement([0, 1], ["a"])
