"""How well an affinity signal predicts the measured gains of training tasks together.

Every score compares a signal's matrix ``values[source, recipient]`` with the ground truth's mean
gains (:class:`~stgmtl.payoff.truth.GroundTruth`) over the *directed pairs* ``(j -> i)``,
``j != i``, where both are defined:

``spearman``, ``kendall``
    Rank correlation (Spearman's rho; Kendall's tau-b, as ``scipy.stats.kendalltau``).
``*_lo``, ``*_hi``
    Percentile bootstrap interval over *tasks*: each replicate draws ``T`` tasks with
    replacement and keeps every directed pair between two draws of different tasks (pairs share
    tasks, so pairs are not independent draws; resampling tasks respects that).
``p_value``
    One-sided permutation test of Spearman's rho (Mantel test): the signal's rows and columns
    are relabelled by the same random permutation of the tasks, which keeps its structure and
    breaks only its link to the truth; ``p = (1 + #{rho_perm >= rho}) / (1 + n)``, or the exact
    fraction over all ``T!`` permutations when there are at most ``n_permutations`` of them.
``top1``
    Per recipient task, whether the signal's strongest partner is the truth's best partner;
    ``top1_tolerant`` counts it right when its true gain is within the recipient's noise floor
    of the best.
``sign_accuracy``
    On the decided pairs (moderated pair tests, at least 5 seeds; NaN below), per recipient:
    the fraction of (helpful, harmful) partner pairs that the signal orders helpful-first (ties
    count one half), pooled over recipients.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import kendalltau

from stgmtl._checks import check_float, check_int, fail, seed_from
from stgmtl.affinity import TaskAffinity
from stgmtl.payoff.stats import holm, mantel_null, signal_ranking_meaningful
from stgmtl.payoff.truth import GroundTruth, spearman

__all__ = [
    "reliability_sentence",
    "SCORE_COLUMNS",
    "aligned_values",
    "permutation_p_value",
    "rank_agreement",
    "score_signal",
    "score_signals",
    "sign_accuracy",
    "spearman",
    "top1_accuracy",
]

#: The columns of a signal-scores table in the order the command line and the report show them.
SCORE_COLUMNS = (
    "signal",
    "spearman",
    "spearman_lo",
    "spearman_hi",
    "kendall",
    "p_value",
    "p_holm",
    "critical_rho",
    "top1",
    "sign_accuracy",
    "n_decided",
    "meaningful",
    "control",
)
#: signals that are controls, not candidates (not counted in the Holm correction): a random
#: matrix, the label statistic, and each partner's single-task loss
#: (:func:`~stgmtl.payoff.truth.difficulty_control`)
CONTROLS = ("random", "label", "difficulty")


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return float("nan")
    return float(kendalltau(x, y).statistic)


def _pairs(signal: np.ndarray, truth: np.ndarray, tasks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Values at the directed pairs between the tasks ``tasks`` (repeats allowed)."""
    a, b = np.meshgrid(tasks, tasks, indexing="ij")
    keep = a != b
    s, g = signal[a[keep], b[keep]], truth[a[keep], b[keep]]
    ok = np.isfinite(s) & np.isfinite(g)
    return s[ok], g[ok]


def _check_square(name: str, m: Any, t: int | None = None) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or (t is not None and a.shape[0] != t):
        raise fail(name, "a square (T, T) matrix" if t is None else f"shape ({t}, {t})", a.shape)
    return a


def permutation_p_value(
    signal: np.ndarray, truth: np.ndarray, *, n_permutations: int = 1000, random_state: Any = 0
) -> tuple[float, int]:
    """One-sided Mantel permutation p-value of Spearman's rho (see the module docstring).

    Returns
    -------
    p : float
    n : int
        Permutations used (``T!`` when exact).
    """
    s = _check_square("signal", signal)
    g = _check_square("truth", truth, s.shape[0])
    check_int("n_permutations", n_permutations, low=1)
    t = s.shape[0]
    idx = np.arange(t)
    observed = spearman(*_pairs(s, g, idx))
    if not np.isfinite(observed):
        return float("nan"), 0
    tol = abs(observed) * 1e-12
    if math.factorial(t) <= n_permutations:
        null = [
            spearman(*_pairs(s[np.ix_(p, p)], g, idx))
            for p in map(list, itertools.permutations(range(t)))
        ]
        arr = np.asarray(null)
        return float(np.mean(arr >= observed - tol)), len(null)
    rng = np.random.default_rng(seed_from("random_state", random_state))
    count = 0
    for _ in range(n_permutations):
        p = rng.permutation(t)
        count += spearman(*_pairs(s[np.ix_(p, p)], g, idx)) >= observed - tol
    return float((1 + count) / (1 + n_permutations)), n_permutations


def rank_agreement(
    signal: np.ndarray,
    truth: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    n_permutations: int = 1000,
    confidence: float = 0.95,
    random_state: Any = 0,
) -> dict[str, float]:
    """Spearman and Kendall over directed pairs, bootstrap intervals, permutation p-value.

    Parameters
    ----------
    signal, truth : np.ndarray
        ``(T, T)`` matrices ``[source, recipient]`` in the same task order (NaN = undefined;
        the diagonal is ignored).
    n_bootstrap, n_permutations : int
    confidence : float
        Coverage of the percentile intervals.
    random_state : None, int or Generator

    Returns
    -------
    dict
        ``spearman, spearman_lo, spearman_hi, kendall, kendall_lo, kendall_hi, p_value,
        n_pairs``.
    """
    s = _check_square("signal", signal)
    g = _check_square("truth", truth, s.shape[0])
    check_int("n_bootstrap", n_bootstrap, low=1)
    check_float("confidence", confidence, low=0.0, high=0.999999, low_open=True)
    seed = seed_from("random_state", random_state)
    t = s.shape[0]
    x, y = _pairs(s, g, np.arange(t))
    rng = np.random.default_rng(seed)
    boot = np.full((n_bootstrap, 2), np.nan)
    for b in range(n_bootstrap):
        bx, by = _pairs(s, g, np.asarray(rng.integers(0, t, size=t)))
        if bx.size >= 3:
            boot[b] = spearman(bx, by), _kendall(bx, by)
    alpha = (1.0 - confidence) / 2
    with np.errstate(invalid="ignore"):
        lo = np.nanquantile(boot, alpha, axis=0) if np.isfinite(boot).any() else [np.nan] * 2
        hi = np.nanquantile(boot, 1 - alpha, axis=0) if np.isfinite(boot).any() else [np.nan] * 2
    p, _ = permutation_p_value(s, g, n_permutations=n_permutations, random_state=seed + 1)
    return {
        "spearman": spearman(x, y) if x.size >= 2 else float("nan"),
        "spearman_lo": float(lo[0]),
        "spearman_hi": float(hi[0]),
        "kendall": _kendall(x, y),
        "kendall_lo": float(lo[1]),
        "kendall_hi": float(hi[1]),
        "p_value": p,
        "n_pairs": int(x.size),
    }


def top1_accuracy(
    signal: np.ndarray, truth: np.ndarray, floor: np.ndarray | None = None
) -> dict[str, float]:
    """Share of recipients whose strongest partner by the signal is the truth's best.

    Only sources where both matrices are defined compete. Returns ``top1``,
    ``top1_tolerant`` (right when the pick's true gain is within ``floor[i]`` of the best; NaN
    without ``floor``) and ``n_recipients``.
    """
    s = _check_square("signal", signal)
    g = _check_square("truth", truth, s.shape[0])
    t = s.shape[0]
    hits, near, n = 0, 0, 0
    for i in range(t):
        ok = np.isfinite(s[:, i]) & np.isfinite(g[:, i])
        ok[i] = False
        if not ok.any():
            continue
        cand = np.flatnonzero(ok)
        pick = cand[np.argmax(s[cand, i])]
        best = cand[np.argmax(g[cand, i])]
        n += 1
        hits += int(pick == best)
        if floor is not None:
            near += int(g[pick, i] >= g[best, i] - floor[i])
    nan = float("nan")
    return {
        "top1": hits / n if n else nan,
        "top1_tolerant": (near / n if n else nan) if floor is not None else nan,
        "n_recipients": n,
    }


def sign_accuracy(signal: np.ndarray, truth: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    """Per recipient, how often the signal puts a helpful partner above a harmful one.

    Helpful / harmful: decided pairs with positive / negative true gain. Returns
    ``sign_accuracy`` (NaN when no recipient has both) and ``n_sign_pairs``.
    """
    s = _check_square("signal", signal)
    g = _check_square("truth", truth, s.shape[0])
    d = np.asarray(decided, dtype=bool)
    score, n = 0.0, 0
    for i in range(s.shape[0]):
        col = np.isfinite(s[:, i]) & d[:, i]
        col[i] = False
        helpful = s[col & (g[:, i] > 0), i]
        harmful = s[col & (g[:, i] < 0), i]
        if helpful.size and harmful.size:
            diff = helpful[:, None] - harmful[None, :]
            score += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
            n += diff.size
    return {"sign_accuracy": score / n if n else float("nan"), "n_sign_pairs": n}


def aligned_values(affinity: TaskAffinity | np.ndarray, task_names: list[str]) -> np.ndarray:
    """A signal's ``(T, T)`` values in the order ``task_names`` (a bare array is taken as is)."""
    if isinstance(affinity, TaskAffinity):
        missing = [t for t in task_names if t not in affinity.task_names]
        if missing:
            raise fail("affinity", f"a signal over the tasks {task_names[:3]}...", missing[:3])
        order = [affinity.task_names.index(t) for t in task_names]
        return affinity.values[np.ix_(order, order)]
    return _check_square("affinity", affinity, len(task_names))


def score_signal(
    affinity: TaskAffinity | np.ndarray,
    truth: GroundTruth,
    *,
    n_bootstrap: int = 1000,
    n_permutations: int = 1000,
    random_state: Any = 0,
) -> dict[str, float]:
    """Every score of the module docstring for one signal against ``truth``."""
    s = aligned_values(affinity, truth.task_names)
    g = truth.gains()
    out: dict[str, float] = {}
    out.update(
        rank_agreement(
            s, g, n_bootstrap=n_bootstrap, n_permutations=n_permutations, random_state=random_state
        )
    )
    out.update(top1_accuracy(s, g, truth.noise_floor()))
    tests = truth.pair_tests()
    decided = tests.decided != 0
    out.update(sign_accuracy(s, g, decided))
    if not tests.enough_seeds:
        out["sign_accuracy"] = float("nan")
    out["n_decided"] = int(decided.sum())
    return out


def score_signals(
    signals: Mapping[str, TaskAffinity | np.ndarray],
    truth: GroundTruth,
    *,
    n_bootstrap: int = 1000,
    n_permutations: int = 1000,
    random_state: Any = 0,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """:func:`score_signal` for every named signal, with the corrections a ranking needs.

    Added columns: ``p_holm`` (the Mantel p-value Holm-corrected across the non-control
    signals; controls keep NaN), ``critical_rho`` (the Mantel test's critical Spearman at
    ``alpha`` for this signal and ``T``: :func:`~stgmtl.payoff.stats.mantel_null`),
    ``truth_seed_spearman``, ``truth_reliability`` (Spearman-Brown of the seed mean),
    ``truth_ceiling`` (its square root), ``truth_seeds_for_0.7``, and ``meaningful``: whether
    the truth's ceiling exceeds the critical rho (below it even a perfect signal could not be
    told from chance, so the ranking of signals is *not meaningful*). Below 5 seeds no pair is
    decided, so ``sign_accuracy`` is NaN.
    """
    rel = truth.reliability()
    rows = []
    for name, a in signals.items():
        row = {
            "signal": name,
            **score_signal(
                a, truth, n_bootstrap=n_bootstrap, n_permutations=n_permutations,
                random_state=random_state,
            ),
        }  # fmt: skip
        null = mantel_null(
            aligned_values(a, truth.task_names), truth.gains(), n_permutations=n_permutations,
            alpha=alpha, random_state=random_state,
        )  # fmt: skip
        row["critical_rho"] = float(null.critical_rho)
        rows.append(row)
    out = pl.DataFrame(rows)
    cand = [i for i, r in enumerate(rows) if r["signal"] not in CONTROLS]
    p_holm = np.full(len(rows), np.nan)
    if cand:
        p_holm[cand] = holm(np.array([rows[i]["p_value"] for i in cand]))
    return out.with_columns(
        pl.Series("p_holm", p_holm),
        pl.col("signal").is_in(list(CONTROLS)).alias("control"),
        pl.lit(rel["seed_spearman"]).alias("truth_seed_spearman"),
        pl.lit(rel["mean_reliability"]).alias("truth_reliability"),
        pl.lit(rel["ceiling"]).alias("truth_ceiling"),
        pl.lit(rel["seeds_for_0.7"]).alias("truth_seeds_for_0.7"),
        pl.col("critical_rho")
        .map_elements(
            lambda c: signal_ranking_meaningful(rel["ceiling"], c), return_dtype=pl.Boolean
        )
        .alias("meaningful"),
    )


def reliability_sentence(scores: pl.DataFrame) -> str:
    """The truth's reliability in plain words, with a warning when signals cannot be ranked.

    Read from the ``truth_*`` and ``meaningful`` columns of :func:`score_signals`.
    """
    if scores.height == 0 or "truth_seed_spearman" not in scores.columns:
        return ""
    row = scores.row(0, named=True)

    def num(x: Any) -> str:
        return "n/a" if x is None or not math.isfinite(float(x)) else f"{float(x):.3f}"

    r, rel, ceil = row["truth_seed_spearman"], row["truth_reliability"], row["truth_ceiling"]
    need = row["truth_seeds_for_0.7"]
    text = (
        f"Truth reliability: the pair gains of one seed rank like another's with Spearman "
        f"{num(r)}; the seed mean's Spearman-Brown reliability is {num(rel)}"
    )
    if need is not None and math.isfinite(float(need)):
        text += f" ({int(need)} seeds would reach 0.7)"
    else:
        text += " (no number of seeds would reach 0.7: the seeds do not agree at all)"
    text += f"; no signal can rank-correlate with the mean gains much beyond {num(ceil)}."
    if not bool(scores["meaningful"].any()):
        text += (
            " WARNING: this ceiling is below the Mantel test's critical rho for every signal, "
            "so the signal ranking below is not meaningful (even a perfect signal could not be "
            "told from chance): train more seeds first."
        )
    return text
