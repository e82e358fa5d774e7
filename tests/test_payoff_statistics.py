"""The payoff verdict's statistics against scipy, hand computations, brute force and simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from stgmtl.payoff.stats import (
    benjamini_hochberg,
    benjamini_yekutieli,
    clopper_pearson,
    holm,
    mantel_null,
    moderated_pair_tests,
    paired_confirmation,
    rank_among_controls,
    seeds_for_reliability,
    signal_ranking_meaningful,
    spearman_brown,
)


# ------------------------------------------------------------------------ paired confirmation
def test_confirmation_by_hand():
    # d = [0.1, 0.3, 0.2]: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt 3) = 2 sqrt 3 on 2 df
    c = paired_confirmation([1.0, 1.0, 1.0], [1.1, 1.3, 1.2])
    t = 2 * math.sqrt(3)
    assert (c.n, c.df) == (3, 2)
    assert c.mean_diff == pytest.approx(0.2) and c.sd_diff == pytest.approx(0.1)
    assert c.t == pytest.approx(t)
    # Student t on 2 df in closed form: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert c.p_value == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)))

    def q2(q):  # its quantile: a sqrt(2 / (1 - a^2)), a = 2q - 1
        a = 2 * q - 1
        return a * math.sqrt(2 / (1 - a * a))

    se = 0.1 / math.sqrt(3)
    assert c.lower == pytest.approx(0.2 - q2(0.95) * se)
    assert (c.ci_lo, c.ci_hi) == pytest.approx((0.2 - q2(0.975) * se, 0.2 + q2(0.975) * se))
    assert c.relative_mean == pytest.approx(0.2 / 1.2)
    assert c.accepted and c.p_value < 0.05 and c.lower > 0 and c.ci_lo < c.lower
    text = c.describe()
    assert "t(2) = 3.46" in text and "level 0.05" in text and "95 % interval" in text
    assert set(c.to_dict()) >= {"n", "df", "t", "p_value", "lower", "ci_lo", "ci_hi"}


@pytest.mark.parametrize("seed", range(4))
def test_confirmation_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0.5, 1.0, 6)
    cand = ref - rng.normal(0.02 * (seed - 1), 0.03, 6)
    c = paired_confirmation(cand, ref, alpha=0.05)
    one = stats.ttest_rel(ref, cand, alternative="greater")
    two = stats.ttest_rel(ref, cand)
    assert c.t == pytest.approx(one.statistic) and c.p_value == pytest.approx(one.pvalue)
    assert c.df == one.df == 5
    assert c.lower == pytest.approx(one.confidence_interval(0.95).low)
    ci = two.confidence_interval(0.95)
    assert (c.ci_lo, c.ci_hi) == pytest.approx((ci.low, ci.high))
    assert c.accepted == (one.pvalue < 0.05) == (c.lower > 0)


def test_confirmation_rejects_at_rate_alpha_under_the_null():
    rng = np.random.default_rng(7)
    reps = 2000
    ref = rng.normal(1.0, 0.1, (reps, 5))
    cand = ref + rng.normal(0.0, 0.02, (reps, 5))
    hits = sum(paired_confirmation(c, r).accepted for c, r in zip(cand, ref, strict=True))
    lo, hi = stats.binom.ppf([0.0005, 0.9995], reps, 0.05)
    assert lo <= hits <= hi


def test_confirmation_zero_spread():
    up = paired_confirmation([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    assert up.sd_diff == 0 and up.t == math.inf and up.p_value == 0 and up.accepted
    assert up.lower == up.ci_lo == up.ci_hi == pytest.approx(0.5)
    down = paired_confirmation([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
    assert down.t == -math.inf and down.p_value == 1 and not down.accepted
    same = paired_confirmation([1.0, 2.0], [1.0, 2.0])
    assert math.isnan(same.t) and same.p_value == 1 and not same.accepted


def test_confirmation_argument_errors():
    with pytest.raises(ValueError, match=r"^reference: expected 3 values"):
        paired_confirmation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"^candidate: expected a 1-D array of at least 2"):
        paired_confirmation([1.0], [1.0])
    with pytest.raises(ValueError, match=r"^reference: expected .* finite"):
        paired_confirmation([1, 2], [1, np.nan])
    with pytest.raises(ValueError, match=r"^alpha: expected a finite number in \(0.0, 0.5\]"):
        paired_confirmation([1, 2], [1, 3], alpha=0.7)


# ------------------------------------------------------------------------ multiple comparisons
P4 = [0.01, 0.04, 0.03, 0.2]


def test_adjustments_by_hand():
    assert holm(P4) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    bh = [0.04, 0.16 / 3, 0.16 / 3, 0.2]
    assert benjamini_hochberg(P4) == pytest.approx(bh)
    assert benjamini_yekutieli(P4) == pytest.approx(np.array(bh) * 25 / 12)
    # NaN passes through and does not count in m
    with_nan = holm([0.01, np.nan, 0.04, 0.03, 0.2])
    assert np.isnan(with_nan[1]) and np.delete(with_nan, 1) == pytest.approx(holm(P4))
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped
    assert benjamini_yekutieli([0.9, 0.95]) == pytest.approx([1.0, 1.0])
    assert np.isnan(benjamini_hochberg([np.nan, np.nan])).all()
    two_d = benjamini_hochberg(np.array(P4).reshape(2, 2))
    assert two_d.shape == (2, 2) and two_d.ravel() == pytest.approx(bh)


@pytest.mark.parametrize("method", ["bh", "by"])
def test_fdr_adjustments_match_scipy(method):
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(0, 1, 40), rng.uniform(0, 0.01, 10), [0.02, 0.02]])
    ours = (benjamini_hochberg if method == "bh" else benjamini_yekutieli)(p)
    assert ours == pytest.approx(stats.false_discovery_control(p, method=method), rel=1e-12)
    p[[3, 17]] = np.nan
    ours = (benjamini_hochberg if method == "bh" else benjamini_yekutieli)(p)
    ok = ~np.isnan(p)
    assert np.isnan(ours[~ok]).all()
    assert ours[ok] == pytest.approx(stats.false_discovery_control(p[ok], method=method))


def test_adjustments_are_monotone_and_reject_bad_p():
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 0.2, 30)
    order = np.argsort(p)
    for adjust in (holm, benjamini_hochberg, benjamini_yekutieli):
        adj = adjust(p)
        assert (adj >= p).all() and (adj <= 1).all() and (np.diff(adj[order]) >= 0).all()
    with pytest.raises(ValueError, match=r"^p: expected p-values in \[0, 1\]"):
        holm([0.1, 1.2])


# ----------------------------------------------------------------------------- pair tests
def test_pair_tests_by_hand():
    g = np.full((3, 2, 2), np.nan)
    g[:, 0, 1] = [0.1, 0.2, 0.3]  # mean 0.2, variance 0.01
    g[:, 1, 0] = [-0.1, -0.1, 0.2]  # mean 0.0, variance 0.03
    r = moderated_pair_tests(g, min_seeds=2)
    assert (r.n_seeds, r.n_pairs, r.df) == (3, 2, 4)
    assert r.pooled_sd == pytest.approx(math.sqrt(0.02))
    assert r.t[0, 1] == pytest.approx(math.sqrt(6)) and r.t[1, 0] == pytest.approx(0.0)
    a = stats.t.sf(math.sqrt(6), 4)
    assert r.p_helpful[0, 1] == pytest.approx(a) and r.p_harmful[0, 1] == pytest.approx(1 - a)
    # BY over the 4 tests {a, 0.5, 0.5, 1 - a}: BH values 4a, 1, 2/3, 1 - a -> 4a and 2/3
    assert r.q[0, 1] == pytest.approx(min(1.0, 25 / 12 * 4 * a))
    assert r.q[1, 0] == pytest.approx(min(1.0, 25 / 12 * 2 / 3))
    assert np.isnan(r.q[0, 0]) and (r.decided == 0).all() and r.enough_seeds
    assert r.to_dict()["n_helpful"] == 0 and r.reason == ""


def _planted(seeds=5, t=8, seed=0):
    rng = np.random.default_rng(seed)
    truth = np.zeros((t, t))
    truth[0, 1:4], truth[5, 2], truth[6, 0:3] = 0.15, 0.2, -0.15
    g = truth + rng.normal(0, 0.02, (seeds, t, t))
    g[:, np.arange(t), np.arange(t)] = np.nan
    g[:, 7, 3] = np.nan  # one pair not measured
    return g, np.sign(truth).astype(np.int8)


def test_planted_effects_are_decided_with_their_sign():
    g, sign = _planted()
    r = moderated_pair_tests(g)
    assert r.n_pairs == 8 * 7 - 1 and r.df == r.n_pairs * 4
    assert (r.decided == sign).all()
    assert r.decided.dtype == np.int8 and np.isnan(r.q[7, 3]) and r.decided[7, 3] == 0
    d = r.to_dict()
    assert (d["n_helpful"], d["n_harmful"]) == (4, 3)
    # bh decides at least what by decides
    assert (moderated_pair_tests(g, method="bh").decided == sign).all()


def test_too_few_seeds_decide_nothing():
    g, _ = _planted(seeds=4)
    r = moderated_pair_tests(g)
    assert not r.enough_seeds and (r.decided == 0).all() and "4 seeds < min_seeds = 5" in r.reason
    assert np.isnan(r.q).all() and np.isnan(r.p_helpful).all()
    assert (moderated_pair_tests(g, min_seeds=4).decided != 0).any()


def test_pure_noise_rarely_decides_any_pair():
    # Under the complete null every decision is false, so FDR = P(any decision); BY keeps it
    # <= alpha = 0.05 under any dependence. If the rate were exactly 0.05 the count would pass
    # the binomial 0.999 quantile with probability 0.001 (and the stream is seeded).
    rng = np.random.default_rng(11)
    reps, any_false = 300, 0
    for _ in range(reps):
        g = rng.normal(0, 0.05, (5, 10, 10))
        g[:, np.arange(10), np.arange(10)] = np.nan
        any_false += bool((moderated_pair_tests(g).decided != 0).any())
    assert any_false <= stats.binom.ppf(0.999, reps, 0.05)


def test_pair_tests_with_zero_pooled_variance():
    g = np.zeros((5, 3, 3))
    g[:, 0, 1], g[:, 1, 0] = 0.1, -0.2
    g[:, np.arange(3), np.arange(3)] = np.nan
    r = moderated_pair_tests(g)
    assert r.pooled_sd == 0 and r.t[0, 1] == math.inf and r.t[1, 0] == -math.inf
    assert r.p_helpful[2, 0] == r.p_harmful[2, 0] == 1  # zero mean: no evidence either way
    expected = np.zeros((3, 3), dtype=np.int8)
    expected[0, 1], expected[1, 0] = 1, -1
    assert (r.decided == expected).all()


def test_pair_tests_argument_errors():
    g, _ = _planted()
    g[2, 0, 1] = np.nan
    with pytest.raises(ValueError, match=r"^seed_gains: expected each pair finite on every seed"):
        moderated_pair_tests(g)
    with pytest.raises(ValueError, match=r"^seed_gains: expected a \(S, T, T\) array"):
        moderated_pair_tests(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"^method: expected one of 'by', 'bh'"):
        moderated_pair_tests(_planted()[0], method="holm")


# ---------------------------------------------------------------------------- reliability
def test_spearman_brown_by_hand_and_nan_cases():
    assert spearman_brown(0.5, 2) == pytest.approx(2 / 3)
    assert spearman_brown(0.2, 5) == pytest.approx(1 / 1.8)
    assert spearman_brown(0.3, 1) == pytest.approx(0.3)
    for r in (0.0, -0.59, float("nan")):
        assert math.isnan(spearman_brown(r, 3))
    with pytest.raises(ValueError, match=r"^r: expected a number <= 1"):
        spearman_brown(1.2, 2)


def test_spearman_brown_predicts_the_correlation_of_seed_means():
    # parallel measures: a true value plus independent seed noise with reliability 0.25
    rng = np.random.default_rng(0)
    true = rng.normal(0, 1, 40_000)
    seeds = true + rng.normal(0, math.sqrt(3), (8, true.size))
    one = np.corrcoef(seeds[0], seeds[1])[0, 1]
    four = np.corrcoef(seeds[:4].mean(0), seeds[4:].mean(0))[0, 1]
    assert one == pytest.approx(0.25, abs=0.02)
    assert four == pytest.approx(spearman_brown(0.25, 4), abs=0.02)


def test_seeds_for_reliability_is_the_smallest_enough():
    for r in np.linspace(0.02, 0.98, 49):
        m = seeds_for_reliability(r)
        brute = next(k for k in itertools.count(1) if spearman_brown(r, k) >= 0.7)
        assert m == brute
    assert seeds_for_reliability(0.5) == 3 and seeds_for_reliability(0.5, target=0.75) == 3
    assert seeds_for_reliability(0.8) == 1
    assert seeds_for_reliability(0.0) is None and seeds_for_reliability(-0.59) is None


def _reference_mantel(s, g, n, seed, alpha):
    """By a loop: scipy's spearmanr over off-diagonal finite pairs of s relabelled."""
    off = ~np.eye(len(s), dtype=bool)

    def rho(a):
        ok = off & np.isfinite(a) & np.isfinite(g)
        return stats.spearmanr(a[ok], g[ok]).statistic

    rng = np.random.default_rng(seed)
    null = np.array([rho(s[np.ix_(p, p)]) for p in (rng.permutation(len(s)) for _ in range(n))])
    obs = rho(s)
    p = (1 + np.sum(null >= obs - 1e-12)) / (1 + n)
    k = int(alpha * (n + 1) + 1e-9)
    return obs, p, np.sort(null)[::-1][k - 1]


@pytest.mark.parametrize("strength", [0.0, 0.3, 1.0])
def test_mantel_matches_a_loop_over_permutations(strength):
    rng = np.random.default_rng(5)
    truth = rng.normal(0, 1, (9, 9))
    truth[2, 4] = np.nan
    signal = strength * truth + rng.normal(0, 1, (9, 9))
    signal[np.isnan(signal)] = 0.0
    r = mantel_null(signal, truth, n_permutations=199, random_state=3)
    rho, p, crit = _reference_mantel(signal, truth, 199, 3, 0.05)
    assert r.rho == pytest.approx(rho) and r.p_value == pytest.approx(p)
    assert r.critical_rho == pytest.approx(crit) and (r.n_permutations, r.exact) == (199, False)
    assert (r.p_value <= 0.05) == (r.rho > r.critical_rho)


def test_mantel_exact_for_small_t_and_critical_rho_matches_p():
    rng = np.random.default_rng(6)
    truth = rng.normal(0, 1, (4, 4))
    agree = 0
    for i in range(20):
        signal = (i % 4) * 0.4 * truth + rng.normal(0, 1, (4, 4))
        r = mantel_null(signal, truth, n_permutations=999, alpha=0.1)
        assert r.exact and r.n_permutations == 24
        null = [mantel_null(signal[np.ix_(p, p)], truth, n_permutations=1).rho
                for p in map(list, itertools.permutations(range(4)))]  # fmt: skip
        assert r.p_value == pytest.approx(np.mean(np.array(null) >= r.rho - 1e-12))
        assert (r.p_value <= 0.1) == (r.rho > r.critical_rho)
        agree += r.p_value <= 0.1
    assert 0 < agree < 20  # both sides of the critical value were exercised


def test_mantel_edge_cases():
    t = np.arange(16.0).reshape(4, 4)
    r = mantel_null(t, t, n_permutations=10, alpha=0.05)
    assert not r.exact and r.critical_rho == math.inf  # 0.05 * 11 < 1: no p can reach 0.05
    flat = mantel_null(np.ones((4, 4)), t)  # a constant signal has no ranks
    assert math.isnan(flat.rho) and math.isnan(flat.p_value)
    with pytest.raises(ValueError, match=r"^truth: expected shape \(4, 4\)"):
        mantel_null(t, np.ones((3, 3)))


def test_signal_ranking_meaningful():
    assert signal_ranking_meaningful(math.sqrt(0.5), 0.3)
    assert not signal_ranking_meaningful(math.sqrt(0.04), 0.3)
    assert not signal_ranking_meaningful(math.sqrt(spearman_brown(0.9, 3)), math.inf)
    assert not signal_ranking_meaningful(float("nan"), 0.3)


# --------------------------------------------------------------------------- clopper-pearson
@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (1, 1), (17, 1000)])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_clopper_pearson_matches_binomtest(k, n, alpha):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")
    assert clopper_pearson(k, n, alpha) == pytest.approx((ci.low, ci.high))
    lo, hi = clopper_pearson(k, n, alpha)
    if k == 0:  # closed forms at the edges
        assert lo == 0 and hi == pytest.approx(1 - (alpha / 2) ** (1 / n))
    if k == n:
        assert hi == 1 and lo == pytest.approx((alpha / 2) ** (1 / n))
    with pytest.raises(ValueError, match=r"^k: expected an int in \[0, "):
        clopper_pearson(n + 1, n)


# --------------------------------------------------------------------------- random controls
def test_rank_among_controls_by_hand():
    controls = np.arange(1.0, 20.0)  # 19 controls
    top = rank_among_controls(20.0, controls)
    assert (top.P, top.n_better_or_equal, top.percentile) == (19, 0, 1.0)
    assert top.p_value == pytest.approx(0.05) and top.resolution == pytest.approx(0.05)
    assert top.can_claim() and "beats random partitions" in top.describe()
    tie = rank_among_controls(19.0, controls)  # a tie counts against the candidate
    assert tie.n_better_or_equal == 1 and tie.p_value == pytest.approx(0.1)
    assert tie.percentile == pytest.approx(18 / 19) and not tie.can_claim()
    assert tie.can_claim(alpha=0.1)
    few = rank_among_controls(9.0, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert few.p_value == pytest.approx(1 / 6) and not few.can_claim()
    assert "smallest possible p is 0.167" in few.describe() and "19 needed" in few.describe()
    loss = rank_among_controls(0.5, [0.6, 0.4, 0.7], higher_is_better=False)
    assert (loss.n_better_or_equal, loss.percentile) == (1, pytest.approx(2 / 3))


def test_rank_among_controls_is_valid_under_exchangeability():
    rng = np.random.default_rng(2)
    reps = 4000
    draws = rng.normal(0, 1, (reps, 20))
    claims = sum(rank_among_controls(d[0], d[1:]).can_claim() for d in draws)
    lo, hi = stats.binom.ppf([0.0005, 0.9995], reps, 0.05)  # exactly 1/20 when exchangeable
    assert lo <= claims <= hi
    with pytest.raises(ValueError, match=r"^controls: expected a 1-D array of at least 1"):
        rank_among_controls(1.0, [])
