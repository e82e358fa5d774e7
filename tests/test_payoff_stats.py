"""Payoff harness statistics: ground-truth gains and noise floor by hand, scores against scipy."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from scipy import stats

from stgmtl.affinity import TaskAffinity
from stgmtl.payoff.runs import RunResult, RunSpec
from stgmtl.payoff.scoring import (
    permutation_p_value,
    rank_agreement,
    score_signal,
    sign_accuracy,
    spearman,
    top1_accuracy,
)
from stgmtl.payoff.truth import ground_truth

NAMES = ["a", "b", "c"]


def _run(tasks: tuple[str, ...], seed: int, test: list[float], val: list[float]) -> RunResult:
    n = len(tasks)
    metrics = pl.DataFrame(
        {
            "split": ["val"] * n + ["test"] * n,
            "task": list(tasks) * 2,
            "loss": [*val, *test],
            "bce": [*val, *test],
            "roc_auc": [0.5] * (2 * n),
            "positives": [1] * (2 * n),
        }
    )
    return RunResult(
        RunSpec("network", tasks, seed=seed), f"{tasks}{seed}", metrics, 1.0, 1.0, 10, 10
    )


# test losses: singles per seed, pairs per seed {(x, y): (loss of x, loss of y)}
SINGLE = {0: [1.0, 2.0, 4.0], 1: [1.2, 2.2, 4.0]}
PAIRS = {
    0: {("a", "b"): (0.9, 2.2), ("a", "c"): (1.1, 3.0), ("b", "c"): (2.0, 4.4)},
    1: {("a", "b"): (1.0, 2.0), ("a", "c"): (1.2, 3.2), ("b", "c"): (2.3, 4.0)},
}


def _results() -> list[RunResult]:
    out = []
    for seed in (0, 1):
        for i, t in enumerate(NAMES):
            out.append(_run((t,), seed, [SINGLE[seed][i]], [SINGLE[seed][i] + 1]))
        for (x, y), (lx, ly) in PAIRS[seed].items():
            out.append(_run((x, y), seed, [lx, ly], [lx + 1, ly + 1]))
        out.append(_run(tuple(NAMES), seed, [0.95, 2.1, 3.9], [1.95, 3.1, 4.9]))
    return out


def test_gains_noise_floor_and_decided_pairs_by_hand() -> None:
    gt = ground_truth(_results(), NAMES, split="test")
    # gain of partner b for a on seed 0: (1.0 - 0.9) / 1.0 = 0.1; seed 1: (1.2 - 1.0) / 1.2
    g_ba = np.mean([(1.0 - 0.9) / 1.0, (1.2 - 1.0) / 1.2])
    g_ab = np.mean([(2.0 - 2.2) / 2.0, (2.2 - 2.0) / 2.2])
    g_ac = np.mean([(4.0 - 3.0) / 4.0, (4.0 - 3.2) / 4.0])
    g_ca = np.mean([(1.0 - 1.1) / 1.0, (1.2 - 1.2) / 1.2])
    g = gt.gains()
    assert g[1, 0] == pytest.approx(g_ba) and g[0, 1] == pytest.approx(g_ab)
    assert g[0, 2] == pytest.approx(g_ac) and g[2, 0] == pytest.approx(g_ca)
    assert np.isnan(np.diag(g)).all()
    floor = gt.noise_floor()
    ref = [np.std([1.0, 1.2], ddof=1) / 1.1, np.std([2.0, 2.2], ddof=1) / 2.1, 0.0]
    np.testing.assert_allclose(floor, ref)
    # two seeds: below the 5 the moderated pair tests need, no pair is decided
    assert not gt.decided().any() and not gt.pair_tests().enough_seeds
    aff = gt.affinity()
    assert aff.signal == "truth" and aff.values[1, 0] == pytest.approx(g_ba)
    one = gt.one_model_gain()
    assert one[0] == pytest.approx(np.mean([(1.0 - 0.95) / 1.0, (1.2 - 0.95) / 1.2]))
    frame = gt.to_frame()
    row = frame.filter((pl.col("source") == "b") & (pl.col("target") == "a"))
    assert row["gain"][0] == pytest.approx(g_ba)
    val = ground_truth(_results(), NAMES, split="val")
    assert val.gains()[1, 0] == pytest.approx(np.mean([(2.0 - 1.9) / 2.0, (2.2 - 2.0) / 2.2]))


def test_ground_truth_ignores_budget_matched_one_models() -> None:
    runs = _results()
    # one model at 2x parameters (listed after the 1x one): a reference, never the truth
    for seed in (0, 1):
        big = _run(tuple(NAMES), seed, [0.5, 1.0, 2.0], [1.5, 2.0, 3.0])
        runs.append(RunResult(RunSpec("network", tuple(NAMES), seed=seed, budget=2.0),
                              f"big{seed}", big.metrics, 1.0, 1.0, 10, 10))  # fmt: skip
    one = ground_truth(runs, NAMES, split="test").one_model_gain()
    assert one[0] == pytest.approx(np.mean([(1.0 - 0.95) / 1.0, (1.2 - 0.95) / 1.2]))
    np.testing.assert_allclose(
        ground_truth(runs, NAMES).gains(), ground_truth(_results(), NAMES).gains()
    )


def test_truth_reliability_is_the_seed_to_seed_rank_correlation() -> None:
    gt = ground_truth(_results(), NAMES)
    g = gt.seed_gains()
    off = ~np.eye(3, dtype=bool)
    r = stats.spearmanr(g[0][off], g[1][off]).statistic
    rel = gt.reliability()
    assert rel["seed_spearman"] == pytest.approx(r)
    if r > 0:
        assert rel["mean_reliability"] == pytest.approx(2 * r / (1 + r))
        assert rel["ceiling"] == pytest.approx(np.sqrt(2 * r / (1 + r)))
    else:
        assert np.isnan(rel["ceiling"])


def test_ground_truth_needs_every_single_task_run() -> None:
    runs = [r for r in _results() if not (r.spec.tasks == ("b",) and r.spec.seed == 1)]
    with pytest.raises(ValueError, match="none for 'b' on seed 1"):
        ground_truth(runs, NAMES)


def _planted(t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(t, t))
    signal = truth + rng.normal(scale=1.0, size=(t, t))
    np.fill_diagonal(truth, np.nan)
    np.fill_diagonal(signal, np.nan)
    return signal, truth


def _offdiag(m: np.ndarray) -> np.ndarray:
    return m[~np.eye(m.shape[0], dtype=bool)]


def test_correlations_equal_scipy() -> None:
    s, g = _planted(7, 0)
    s[2, 5] = np.nan  # an undefined pair is left out
    out = rank_agreement(s, g, n_bootstrap=20, n_permutations=20)
    ok = np.isfinite(_offdiag(s)) & np.isfinite(_offdiag(g))
    x, y = _offdiag(s)[ok], _offdiag(g)[ok]
    assert out["n_pairs"] == 41
    assert out["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert out["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert spearman(np.array([1.0, 1.0, 2.0]), np.array([3.0, 1.0, 2.0])) == pytest.approx(
        stats.spearmanr([1.0, 1.0, 2.0], [3.0, 1.0, 2.0]).statistic
    )


def test_exact_permutation_test_equals_scipy() -> None:
    s, g = _planted(5, 1)
    p, n = permutation_p_value(s, g, n_permutations=1000)
    assert n == 120

    def statistic(order: np.ndarray) -> float:
        o = order.astype(int)
        return spearman(_offdiag(s[np.ix_(o, o)]), _offdiag(g))

    ref = stats.permutation_test(
        (np.arange(5.0),),
        statistic,
        permutation_type="pairings",
        n_resamples=np.inf,
        alternative="greater",
    )
    assert p == pytest.approx(ref.pvalue, abs=1e-12)


def test_monte_carlo_permutation_and_bootstrap_against_plain_loops() -> None:
    s, g = _planted(9, 2)
    p, n = permutation_p_value(s, g, n_permutations=200, random_state=5)
    rng = np.random.default_rng(5)
    obs = spearman(_offdiag(s), _offdiag(g))
    hits = 0
    for _ in range(200):
        o = rng.permutation(9)
        hits += spearman(_offdiag(s[np.ix_(o, o)]), _offdiag(g)) >= obs - abs(obs) * 1e-12
    assert (n, p) == (200, (1 + hits) / 201)
    out = rank_agreement(s, g, n_bootstrap=300, n_permutations=10, random_state=3)
    rng = np.random.default_rng(3)
    reps = []
    for _ in range(300):
        draw = rng.integers(0, 9, size=9)
        xs, ys = [], []
        for i, j in itertools.product(draw, draw):
            if i != j:
                xs.append(s[i, j])
                ys.append(g[i, j])
        reps.append(stats.spearmanr(xs, ys).statistic)
    assert out["spearman_lo"] == pytest.approx(np.quantile(reps, 0.025), abs=1e-12)
    assert out["spearman_hi"] == pytest.approx(np.quantile(reps, 0.975), abs=1e-12)
    assert out["spearman_lo"] < out["spearman"] < out["spearman_hi"]


def test_a_strong_signal_beats_a_random_one() -> None:
    s, g = _planted(12, 4)
    noise = np.random.default_rng(9).normal(size=g.shape)
    good = rank_agreement(s, g, n_bootstrap=200, n_permutations=200)
    bad = rank_agreement(noise, g, n_bootstrap=200, n_permutations=200)
    assert good["p_value"] < 0.01 < bad["p_value"]
    assert good["spearman_lo"] > bad["spearman"]


def test_top1_and_sign_accuracy_by_hand() -> None:
    nan = np.nan
    g = np.array([[nan, 0.3, -0.2], [0.1, nan, 0.5], [0.4, -0.3, nan]])  # [source, recipient]
    s = np.array([[nan, 1.0, 0.0], [2.0, nan, 3.0], [1.0, 2.0, nan]])
    # recipient 0: truth best source 2 (0.4), signal best 1 (2.0) -> miss, within 0.35 of best
    # recipient 1: truth best 0 (0.3), signal best 2 (2.0) -> miss
    # recipient 2: truth best 1 (0.5), signal best 1 (3.0) -> hit
    out = top1_accuracy(s, g, np.array([0.35, 0.1, 0.1]))
    assert out["top1"] == pytest.approx(1 / 3) and out["top1_tolerant"] == pytest.approx(2 / 3)
    decided = np.isfinite(g)
    # recipient 1: helpful 0 (s=1.0) vs harmful 2 (s=2.0): wrong; recipient 2: helpful 1
    # (s=3.0) vs harmful 0 (s=0.0): right
    acc = sign_accuracy(s, g, decided)
    assert acc == {"sign_accuracy": 0.5, "n_sign_pairs": 2}
    tie = sign_accuracy(np.nan_to_num(s * 0), g, decided)
    assert tie["sign_accuracy"] == 0.5


def test_score_signal_reorders_by_task_name() -> None:
    gt = ground_truth(_results(), NAMES)
    g = gt.gains()
    perm = [2, 0, 1]
    names = [NAMES[i] for i in perm]
    aff = TaskAffinity(names, np.nan_to_num(g[np.ix_(perm, perm)], nan=0.0), "copy")
    out = score_signal(aff, gt, n_bootstrap=10, n_permutations=10)
    assert out["spearman"] == pytest.approx(1.0) and out["top1"] == 1.0
