"""The payoff verdict's statistics: confirmation, pair tests, reliability, controls.

- :func:`paired_confirmation`: the verdict, a one-sided paired t-test on fresh seeds.
- :func:`holm`, :func:`benjamini_hochberg`, :func:`benjamini_yekutieli`: adjusted p-values.
- :func:`moderated_pair_tests`: which directed task pairs help or harm, with a pooled variance.
- :func:`spearman_brown`, :func:`seeds_for_reliability`, :func:`mantel_null`,
  :func:`signal_ranking_meaningful`: whether the ground truth can rank signals at all.
- :func:`clopper_pearson`: an exact interval for a simulated false-positive rate.
- :func:`rank_among_controls`: a candidate against random size-matched partitions.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from stgmtl._checks import check_choice, check_float, check_int, fail, seed_from

__all__ = [
    "Confirmation", "ControlRank", "MantelNull", "PairTests", "benjamini_hochberg",
    "benjamini_yekutieli", "clopper_pearson", "holm", "mantel_null", "moderated_pair_tests",
    "paired_confirmation", "rank_among_controls", "seed_reliability", "seeds_for_reliability",
    "signal_ranking_meaningful", "spearman_brown",
]  # fmt: skip


def _vector(name: str, x: Any, min_len: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size < min_len or not np.isfinite(a).all():
        raise fail(name, f"a 1-D array of at least {min_len} finite numbers", x)
    return a


# ------------------------------------------------------------------------ the confirmation
@dataclass(frozen=True)
class Confirmation:
    """A one-sided paired t-test of ``d = reference - candidate`` (:func:`paired_confirmation`)."""

    n: int
    df: int
    mean_diff: float
    sd_diff: float
    t: float
    p_value: float
    alpha: float
    lower: float
    ci_lo: float
    ci_hi: float
    relative_mean: float
    accepted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One sentence: the test, df, level, verdict and intervals."""
        verdict = "the candidate is better" if self.accepted else "not shown better"
        level = 100 * (1 - self.alpha)
        return (
            f"One-sided paired t-test over {self.n} fresh seeds (H1: lower test loss than the "
            f"reference), t({self.df}) = {self.t:.3g}, p = {self.p_value:.3g} at level "
            f"{self.alpha:g}: {verdict}; mean difference {self.mean_diff:.4g} "
            f"({100 * self.relative_mean:+.2f} % of the reference's loss), one-sided {level:g} % "
            f"lower bound {self.lower:.4g}, two-sided {level:g} % interval "
            f"[{self.ci_lo:.4g}, {self.ci_hi:.4g}]."
        )


def paired_confirmation(candidate: Any, reference: Any, *, alpha: float = 0.05) -> Confirmation:
    """Is the candidate's test loss lower than the reference's, seed by seed? (one-sided t)

    Parameters
    ----------
    candidate, reference : array_like
        Per-seed task-mean test losses, 1-D, the same length ``n >= 2``, paired by seed, from
        models trained on *fresh* seeds (not the ones that chose the candidate: a p-value on
        the losses that made the choice is not valid).
    alpha : float
        Level of the test, in ``(0, 0.5]``.

    Returns
    -------
    Confirmation
        ``d = reference - candidate`` (positive: candidate better); ``df = n - 1``,
        ``t = mean(d) / (sd(d) / sqrt(n))`` (sd with ddof 1), ``p_value`` of H1: mean d > 0;
        ``lower``: the one-sided ``1 - alpha`` lower confidence bound of mean d (``lower > 0``
        exactly when ``p_value < alpha``); ``ci_lo, ci_hi``: the *two-sided* ``1 - alpha``
        interval (95 % at the default, wider than the one-sided bound); ``relative_mean``:
        mean d over the reference's mean loss (NaN if that is 0); ``accepted``:
        ``p_value < alpha``.

    Notes
    -----
    ``sd(d) = 0`` (every seed gives the same difference) is taken at the t-test's limit, as
    ``scipy.stats.ttest_rel`` does: a positive mean gives ``t = inf, p = 0`` (accepted), a
    negative one ``t = -inf, p = 1``; identical losses (all ``d = 0``) give ``t = nan`` and
    ``p = 1`` (scipy gives NaN): no evidence, never accepted. The intervals collapse to the
    mean.
    """
    cand = _vector("candidate", candidate, 2)
    ref = _vector("reference", reference, 2)
    if ref.size != cand.size:
        raise fail("reference", f"{cand.size} values (one per seed of candidate)", ref.size)
    alpha = check_float("alpha", alpha, low=0.0, high=0.5, low_open=True)
    d = ref - cand
    n, df = d.size, d.size - 1
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    if sd > 0:
        t = mean / se
        p = float(stats.t.sf(t, df))
    else:
        t = math.copysign(math.inf, mean) if mean != 0 else math.nan
        p = 0.0 if mean > 0 else 1.0
    one, two = stats.t.ppf(1 - alpha, df), stats.t.ppf(1 - alpha / 2, df)
    ref_mean = float(ref.mean())
    rel = mean / ref_mean if ref_mean != 0 else math.nan
    return Confirmation(n, df, mean, sd, float(t), p, alpha, float(mean - one * se),
                        float(mean - two * se), float(mean + two * se), rel, p < alpha)  # fmt: skip


# ------------------------------------------------------------------ multiple comparisons
def _adjust(p: Any, method: str) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(arr)
    if ((arr[ok] < 0) | (arr[ok] > 1)).any() or np.isinf(arr).any():
        raise fail("p", "p-values in [0, 1] (NaN allowed)", p)
    out = np.full(arr.shape, np.nan)
    vals = arr[ok]
    m = vals.size
    if m == 0:
        return out
    order = np.argsort(vals, kind="stable")
    ranked = vals[order]
    i = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate((m - i + 1) * ranked)
    else:
        c = float(np.sum(1.0 / i)) if method == "by" else 1.0
        adj = np.minimum.accumulate((c * m / i * ranked)[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def holm(p: Any) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate).

    ``p``: p-values in ``[0, 1]``, any shape; NaN passes through as NaN and is not counted in
    the number of tests ``m``. Returns the same shape: ``max_{j <= i} min(1, (m - j + 1)
    p_(j))`` for the ``i``-th smallest.
    """
    return _adjust(p, "holm")


def benjamini_hochberg(p: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate, independent or PRDS tests).

    ``min_{j >= i} min(1, m p_(j) / j)`` for the ``i``-th smallest of ``m`` finite p-values;
    NaN passes through and is not counted in ``m``. Any shape.
    """
    return _adjust(p, "bh")


def benjamini_yekutieli(p: Any) -> np.ndarray:
    """Benjamini-Yekutieli adjusted p-values (false discovery rate under any dependence).

    Benjamini-Hochberg's times ``c(m) = sum_{i <= m} 1 / i`` (about ``ln m + 0.58``), capped
    at 1; NaN passes through and is not counted in ``m``. Any shape.
    """
    return _adjust(p, "by")


# ----------------------------------------------------------------------------- pair tests
@dataclass(frozen=True)
class PairTests:
    """Pooled-variance pair tests (see :func:`moderated_pair_tests`); arrays ``(T, T)``."""

    n_seeds: int
    n_pairs: int
    df: int
    pooled_sd: float
    mean: np.ndarray
    t: np.ndarray
    p_helpful: np.ndarray
    p_harmful: np.ndarray
    q: np.ndarray
    decided: np.ndarray
    alpha: float
    method: str
    enough_seeds: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The scalars, and the counts of decided pairs (not the matrices)."""
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}
        n_help, n_harm = int((self.decided == 1).sum()), int((self.decided == -1).sum())
        return out | {"n_helpful": n_help, "n_harmful": n_harm}


def _measured_pairs(seed_gains: Any) -> tuple[np.ndarray, np.ndarray]:
    """The gains as floats and the ``(T, T)`` mask of pairs finite on every seed."""
    g = np.asarray(seed_gains, dtype=np.float64)
    if g.ndim != 3 or g.shape[1] != g.shape[2] or g.shape[0] < 1 or np.isinf(g).any():
        raise fail("seed_gains", "a (S, T, T) array of gains (NaN = not measured)", g.shape)
    s, finite = g.shape[0], np.isfinite(g).sum(axis=0)
    off = ~np.eye(g.shape[1], dtype=bool)
    partial = off & (finite > 0) & (finite < s)
    if partial.any():
        i, j = np.argwhere(partial)[0]
        what = f"pair ({i}, {j}) finite on {finite[i, j]} of {s} seeds"
        raise fail("seed_gains", "each pair finite on every seed or on none", what)
    return g, off & (finite == s)


def moderated_pair_tests(
    seed_gains: Any, *, min_seeds: int = 5, alpha: float = 0.05, method: str = "by"
) -> PairTests:
    """Which directed pairs help or harm: a paired t per pair with one pooled variance.

    Parameters
    ----------
    seed_gains : array_like
        ``(S, T, T)`` ``[seed, source, recipient]`` relative gains of training with the source;
        NaN where not measured (the diagonal is ignored). A pair is measured when it is finite
        on every seed; a pair finite on some seeds only is an error (NaN it out on purpose).
    min_seeds : int
        With fewer seeds ``S`` nothing is tested or decided (``enough_seeds=False``, a
        ``reason``, NaN p-values). At least 2.
    alpha : float
        False discovery rate of the decisions.
    method : {"by", "bh"}
        Benjamini-Yekutieli (default) or Benjamini-Hochberg over all ``2 * n_pairs`` tests.

    Returns
    -------
    PairTests
        ``t = mean / sqrt(s2 / S)`` per pair; ``p_helpful`` (H1: mean > 0) and ``p_harmful``
        (H1: mean < 0), both on ``df``; ``q``: the adjusted p-value of the direction the mean
        points to; ``decided`` (int8): +1 helpful, -1 harmful where that ``q <= alpha``, else 0.

    Notes
    -----
    The variance is pooled: ``s2`` is the mean over measured pairs of the per-pair sample
    variances (ddof 1), on ``df = n_pairs * (S - 1)``. This is the limit of full moderation in
    limma's empirical-Bayes t (prior degrees of freedom -> infinity, every pair's variance
    shrunk to the common one): with 3-5 seeds a per-pair variance on 2-4 df is so noisy that a
    per-pair t both misses real pairs and passes pairs whose spread happens to be small. The
    cost is an assumption of one seed-noise level for all pairs. Pairs share tasks and seeds,
    so the effective df is below the nominal one; with tens of pairs the t quantiles barely
    move. A pooled variance of 0 gives ``t = +-inf`` (``p = 1`` both ways for a zero mean).

    The ``2 * n_pairs`` one-sided tests are corrected together. They are dependent: all share
    the pooled variance, pairs with a common task share its losses, and a pair's two tests are
    perfectly negatively dependent (``p_harmful = 1 - p_helpful``), which is outside the
    positive dependence (PRDS) under which Benjamini-Hochberg is proved. Benjamini-Yekutieli
    controls the false discovery rate under any dependence, at the price of the factor
    ``sum 1/i``; "bh" is allowed where that price is judged too high.
    """
    g, measured = _measured_pairs(seed_gains)
    min_seeds = check_int("min_seeds", min_seeds, low=2)
    alpha = check_float("alpha", alpha, low=0.0, high=1.0, low_open=True)
    method = check_choice("method", method, ("by", "bh"))
    s, t_n = g.shape[0], g.shape[1]
    n_pairs = int(measured.sum())
    nan = np.full((t_n, t_n), np.nan)
    with np.errstate(invalid="ignore"):
        mean = np.where(measured, g.mean(axis=0), np.nan)
    df = n_pairs * (s - 1)
    reason = ""
    if s < min_seeds:
        reason = f"{s} seeds < min_seeds = {min_seeds}: no pair is decided"
    elif n_pairs == 0:
        reason = "no measured pair"
    if reason:
        zero = np.zeros((t_n, t_n), dtype=np.int8)
        return PairTests(s, n_pairs, df, math.nan, mean, nan, nan, nan, nan, zero, alpha,
                         method, s >= min_seeds, reason)  # fmt: skip
    s2 = float(g[:, measured].var(axis=0, ddof=1).mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = np.where(measured, mean / np.sqrt(s2 / s), np.nan)
    p_help = np.where(np.isnan(tstat) & measured, 1.0, stats.t.sf(tstat, df))
    p_harm = np.where(np.isnan(tstat) & measured, 1.0, stats.t.cdf(tstat, df))
    both = _adjust(np.stack([p_help, p_harm]), method)
    helpful = both[0] <= both[1]
    q = np.where(measured, np.where(helpful, both[0], both[1]), np.nan)
    sign = np.where(helpful, 1, -1)
    decided = np.where(measured & (q <= alpha), sign, 0).astype(np.int8)
    return PairTests(s, n_pairs, df, math.sqrt(s2), mean, tstat, p_help, p_harm, q, decided,
                     alpha, method, True, "")  # fmt: skip


# ---------------------------------------------------------------------------- reliability
def spearman_brown(r: float, m: float) -> float:
    """Reliability of the mean of ``m`` seeds from the reliability ``r`` of one seed.

    ``m r / (1 + (m - 1) r)``. ``r`` is e.g. the mean correlation between two seeds' gain
    matrices; NaN when ``r <= 0`` or ``r`` is not finite (no positive agreement between seeds:
    averaging does not make a reliable truth, and the formula's value would mean nothing).
    ``m > 0`` (a real number; seeds are whole, but the formula is not).
    """
    m = check_float("m", m, low=0.0, low_open=True)
    if not isinstance(r, numbers.Real) or isinstance(r, bool) or r > 1:
        raise fail("r", "a number <= 1 (NaN allowed)", r)
    r = float(r)
    if not math.isfinite(r) or r <= 0:
        return math.nan
    return m * r / (1 + (m - 1) * r)


def seeds_for_reliability(r: float, target: float = 0.7) -> int | None:
    """The fewest seeds ``m >= 1`` whose mean reaches reliability ``target`` (Spearman-Brown).

    ``None`` when ``r <= 0`` or not finite (no number of seeds reaches it). ``target`` in
    ``(0, 1)``.
    """
    target = check_float("target", target, low=0.0, high=1.0, low_open=True)
    if target >= 1:
        raise fail("target", "a number in (0, 1)", target)
    if math.isnan(spearman_brown(r, 1)):
        return None
    r = float(r)
    m = max(1, math.ceil(target * (1 - r) / (r * (1 - target)) - 1e-9))
    while spearman_brown(r, m) < target - 1e-12:  # guard against rounding in the ceiling
        m += 1
    return m


def seed_reliability(values: Any, *, min_rows: int = 3) -> dict[str, float]:
    """How reproducible a measurement is across seeds: the seed-to-seed correlations and the
    Spearman-Brown reliability of the seed mean.

    Only the rows measured on **every** seed are used (a row missing on some seed is left out,
    so that every row's mean is over the same ``S`` seeds the Spearman-Brown step assumes). For
    each pair of seeds, Spearman's rho (average ranks) and Pearson's r over those rows; their
    means over the pairs of seeds, through :func:`spearman_brown` for ``S`` seeds, give the
    reliabilities.

    Parameters
    ----------
    values : array_like
        ``(S, ...)``: one measurement per seed (first axis) and row (the other axes, flattened;
        NaN = not measured).
    min_rows : int
        Fewest complete rows for a correlation (else NaN).

    Returns
    -------
    dict
        ``seeds`` (``S``), ``rows`` (rows measured on every seed), ``seed_spearman``,
        ``seed_pearson`` (mean correlation of two seeds; NaN for one seed or too few rows),
        ``reliability_spearman``, ``reliability_pearson`` (:func:`spearman_brown` of those for
        ``S`` seeds; NaN when the correlation is not positive).
    """
    a = np.asarray(values, dtype=np.float64)
    if a.ndim < 1 or a.shape[0] < 1:
        raise fail("values", "an array of shape (seeds, ...) with at least one seed", a.shape)
    check_int("min_rows", min_rows, low=2)
    a = a.reshape(a.shape[0], -1)
    s = a.shape[0]
    a = a[:, np.isfinite(a).all(0)]
    rhos: list[float] = []
    rs: list[float] = []
    if a.shape[1] >= min_rows:
        for i, j in itertools.combinations(range(s), 2):
            rhos.append(_spearman(a[i], a[j]))
            sd = float(a[i].std() * a[j].std())
            rs.append(float(np.corrcoef(a[i], a[j])[0, 1]) if sd > 0 else math.nan)
    out = {"seeds": float(s), "rows": float(a.shape[1])}
    for name, vals in (("spearman", rhos), ("pearson", rs)):
        r = float(np.mean(vals)) if vals else math.nan
        out[f"seed_{name}"] = r
        out[f"reliability_{name}"] = spearman_brown(r, s) if math.isfinite(r) else math.nan
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return math.nan
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else math.nan


def _rho(signal: np.ndarray, truth: np.ndarray, off: np.ndarray) -> float:
    ok = off & np.isfinite(signal) & np.isfinite(truth)
    return _spearman(signal[ok], truth[ok])


@dataclass(frozen=True)
class MantelNull:
    """A Mantel permutation test of Spearman's rho (see :func:`mantel_null`)."""

    rho: float
    p_value: float
    critical_rho: float
    n_permutations: int
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mantel_null(
    signal: Any,
    truth: Any,
    *,
    n_permutations: int = 999,
    alpha: float = 0.05,
    random_state: Any = 0,
) -> MantelNull:
    """One-sided Mantel test of Spearman's rho over directed pairs, with its critical rho.

    Parameters
    ----------
    signal, truth : array_like
        ``(T, T)`` ``[source, recipient]``; rho is over the off-diagonal pairs where both are
        finite. The null relabels the signal's rows and columns by one random permutation.
    n_permutations : int
        Random permutations; when ``T! <= n_permutations`` all ``T!`` are enumerated instead.
    alpha : float
        Level of the critical rho.
    random_state : None, int, Generator or RandomState

    Returns
    -------
    MantelNull
        ``p_value = (1 + #{rho_perm >= rho}) / (1 + n)`` (exact: the fraction of all ``T!``,
        the identity included), as ``stgmtl.specialise.scoring.permutation_p_value`` (same
        stream for the same ``random_state``). ``critical_rho``: the ``k``-th largest null
        rho, ``k = floor(alpha (n + 1))`` (exact: ``floor(alpha T!) + 1``), i.e. the null's
        ``1 - alpha`` quantile: without ties, ``p_value <= alpha`` exactly when
        ``rho > critical_rho``; ``inf`` when ``k = 0`` (too few permutations for ``alpha``).
        ``rho = nan`` (fewer than 2 pairs, or a constant side) gives ``p_value = nan``.
    """
    s, g = np.asarray(signal, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise fail("signal", "a square (T, T) matrix", s.shape)
    if g.shape != s.shape:
        raise fail("truth", f"shape {s.shape}", g.shape)
    check_int("n_permutations", n_permutations, low=1)
    alpha = check_float("alpha", alpha, low=0.0, high=1.0, low_open=True)
    t = s.shape[0]
    off = ~np.eye(t, dtype=bool)
    observed = _rho(s, g, off)
    exact = math.factorial(t) <= n_permutations
    if exact:
        perms: Any = map(list, itertools.permutations(range(t)))
    else:
        rng = np.random.default_rng(seed_from("random_state", random_state))
        perms = (rng.permutation(t) for _ in range(n_permutations))
    if not np.isfinite(observed):
        return MantelNull(math.nan, math.nan, math.nan, 0, exact)
    null = np.sort(np.array([_rho(s[np.ix_(p, p)], g, off) for p in perms]))[::-1]
    n = null.size
    count = int(np.sum(null >= observed - abs(observed) * 1e-12))
    p = count / n if exact else (1 + count) / (1 + n)
    k = min(n, math.floor(alpha * n + 1e-9) + 1) if exact else math.floor(alpha * (n + 1) + 1e-9)
    critical = float(null[k - 1]) if k >= 1 else math.inf
    return MantelNull(observed, float(p), critical, n, exact)


def signal_ranking_meaningful(ceiling: float, critical_rho: float) -> bool:
    """Can a signal's rank agreement with the truth be significant at all?

    ``ceiling`` is ``sqrt(reliability)`` of the truth (no signal can agree with a noisy truth
    better than the truth agrees with itself); a ranking is meaningful only when it exceeds
    the Mantel ``critical_rho`` for this ``T``. NaN (a reliability <= 0) gives ``False``.
    """
    c, k = float(ceiling), float(critical_rho)
    return bool(math.isfinite(c) and not math.isnan(k) and c > k)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided ``1 - alpha`` interval of a binomial proportion from ``k`` of ``n``.

    ``(Beta(alpha/2; k, n-k+1), Beta(1-alpha/2; k+1, n-k))`` quantiles, with ``lo = 0`` at
    ``k = 0`` and ``hi = 1`` at ``k = n``.
    """
    n = check_int("n", n, low=1)
    k = check_int("k", k, low=0, high=n)
    alpha = check_float("alpha", alpha, low=0.0, high=1.0, low_open=True)
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


# ------------------------------------------------------------------------- random controls
@dataclass(frozen=True)
class ControlRank:
    """A gain among ``P`` random-partition controls (see :func:`rank_among_controls`)."""

    value: float
    P: int
    n_better_or_equal: int
    p_value: float
    percentile: float
    resolution: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def can_claim(self, alpha: float = 0.05) -> bool:
        """``P >= ceil(1/alpha) - 1`` (19 at 5 %) and ``p_value <= alpha``.

        The first condition follows from the second (``p_value >= 1 / (P + 1)``); it is
        stated so that the reason a claim is refused is plain.
        """
        alpha = check_float("alpha", alpha, low=0.0, high=1.0, low_open=True)
        return self.P >= math.ceil(1 / alpha - 1e-9) - 1 and self.p_value <= alpha + 1e-12

    def describe(self, alpha: float = 0.05) -> str:
        """One sentence; says the resolution when ``P`` is too small for a claim at ``alpha``."""
        text = (
            f"{self.P - self.n_better_or_equal} of {self.P} random size-matched partitions are "
            f"worse (percentile {100 * self.percentile:.0f} %, p = {self.p_value:.3g})"
        )
        need = math.ceil(1 / alpha - 1e-9) - 1
        if self.P < need:
            return (
                f"{text}; with {self.P} controls the smallest possible p is "
                f"{self.resolution:.3g}, so no claim at {alpha:g} can be made ({need} needed)."
            )
        claim = "beats" if self.can_claim(alpha) else "does not beat"
        return f"{text}: the candidate {claim} random partitions at {alpha:g}."


def rank_among_controls(
    value: float, controls: Any, *, higher_is_better: bool = True
) -> ControlRank:
    """Where the candidate's gain falls among ``P`` random size-matched partition controls.

    ``value`` is the candidate's gain, ``controls`` the ``P >= 1`` finite gains of random
    size-matched partitions, each averaged over the same seeds (``higher_is_better=False`` for
    losses). ``n_better_or_equal`` counts controls at least as good (ties count against the
    candidate); ``p_value = (1 + n_better_or_equal) / (1 + P)``; ``percentile`` is the fraction
    of controls strictly worse; ``resolution = 1 / (P + 1)`` is the smallest possible p.
    """
    v = check_float("value", value)
    c = _vector("controls", controls, 1)
    if not isinstance(higher_is_better, bool | np.bool_):
        raise fail("higher_is_better", "True or False", higher_is_better, error=TypeError)
    sign = 1.0 if higher_is_better else -1.0
    at_least = int(np.sum(sign * c >= sign * v))
    worse = int(np.sum(sign * c < sign * v))
    p = c.size
    return ControlRank(v, p, at_least, (1 + at_least) / (1 + p), worse / p, 1 / (p + 1))
