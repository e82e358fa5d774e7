"""Confirm on fresh seeds: the only test the payoff verdict rests on.

The candidate of :func:`~stgmtl.payoff.recommendation.recommend` was chosen as the best of many
sets on validation losses; a p-value on those losses, or on test losses of the same trained
weights, inherits that selection. So the candidate's systems and the budget-matched reference
are retrained on ``n`` **fresh seeds** (seeds no exploration run used; each seed pairs the two:
the same batches, dropout stream and initial weights where shapes agree), and each task is served
by the system validation assigned it. The statistic is the one validation chose on: per fresh
seed, the mean over tasks of the candidate's test loss relative to the reference's on the same
seed and task; a one-sided t-test of "below 1" (:func:`~stgmtl.payoff.stats.paired_confirmation`
against 1, ``df = n - 1``, level ``alpha``; this is the paired test of the seed-paired relative
losses). ROC AUC (per seed, the mean over tasks; candidate minus reference) is tested the same
way, one-sided. Both are co-primary: the verdict is "grouping" only when **both** reject "no
gain" (an intersection-union test, valid at ``alpha`` without a correction). The test split is
fixed, so the interval covers the variation between training seeds, not between test sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from stgmtl.payoff.recommendation import Recommendation
from stgmtl.payoff.runs import RunResult, RunSpec
from stgmtl.payoff.stats import paired_confirmation
from stgmtl.payoff.tables import loss_lookup, runs_table

__all__ = ["confirm", "confirmation_specs", "confirmation_tests", "fresh_seeds"]


def fresh_seeds(used: Sequence[int], n: int) -> list[int]:
    """``n`` seeds after every seed in ``used`` (never one an exploration run had)."""
    start = max(used, default=-1) + 1
    return list(range(start, start + n))


def confirmation_specs(
    rec: Recommendation, specs_by_system: Mapping[str, RunSpec], seeds: Sequence[int]
) -> list[RunSpec]:
    """The runs of a confirmation: each candidate system and the reference, on every seed."""
    wanted = [s["system"] for s in rec.systems] + [rec.reference["system"]]
    missing = [w for w in wanted if w not in specs_by_system]
    if missing:
        raise KeyError(f"specs_by_system: no spec for systems {missing}")
    return [replace(specs_by_system[w], seed=int(s)) for s in seeds for w in wanted]


def _per_seed(
    results: Sequence[RunResult], rec: Recommendation, column: str, seeds: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(seeds, tasks)`` test ``column`` of the candidate (tasks as served) and the reference."""
    look = loss_lookup(runs_table(list(results))[0], column)
    serve = {t: s["system"] for s in rec.systems for t in s["tasks"]}
    ref = rec.reference["system"]
    tasks = sorted(serve)

    def values(system: str | None, seed: int) -> list[float]:
        return [look[(system or serve[t], seed, "test", t)] for t in tasks]

    cand = np.array([values(None, s) for s in seeds])
    base = np.array([values(ref, s) for s in seeds])
    return cand, base


def confirmation_tests(
    cand_loss: np.ndarray,
    base_loss: np.ndarray,
    cand_auc: np.ndarray,
    base_auc: np.ndarray,
    alpha: float = 0.05,
) -> tuple[np.ndarray, Any, Any, bool]:
    """The verdict's statistics on ``(seeds, tasks)`` test values of candidate and reference.

    Returns ``(ratio, loss_test, auc_test, accepted)``: the per-seed mean over tasks of the
    relative loss ``cand / base``; the one-sided paired t-test (:func:`~stgmtl.payoff.stats.
    paired_confirmation`) of that ratio against 1; the same on the per-seed mean ROC AUC (higher
    is better); and whether both reject (intersection-union).
    """
    ratio = (cand_loss / base_loss).mean(1)  # per seed: mean over tasks of the relative loss
    loss = paired_confirmation(ratio, np.ones_like(ratio), alpha=alpha)
    # higher AUC is better: test the negated values so that a positive difference favours it
    auc = paired_confirmation(-cand_auc.mean(1), -base_auc.mean(1), alpha=alpha)
    return ratio, loss, auc, bool(loss.accepted and auc.accepted)


def confirm(
    rec: Recommendation,
    results: Sequence[RunResult],
    seeds: Sequence[int],
    *,
    column: str = "loss",
    alpha: float = 0.05,
) -> Recommendation:
    """Fill ``rec``'s confirmation and verdict from the fresh-seed runs (module docstring).

    Parameters
    ----------
    rec : Recommendation
        With a candidate (``rec.has_candidate``).
    results : sequence of RunResult
        The runs of :func:`confirmation_specs` (finished or cached).
    seeds : sequence of int
        The fresh seeds (at least 2; 5 or more for a useful test).
    column : str
        The loss column (lower is better).
    alpha : float
        Level of the one-sided test.

    Returns
    -------
    Recommendation
        ``rec`` itself, updated: ``confirmation`` (``seeds``, ``loss`` and ``roc_auc``: each the
        test's numbers and a sentence), ``verdict``, ``one_model_best`` and ``message``.
    """
    if not rec.has_candidate:
        raise ValueError("rec: expected a recommendation with a candidate to confirm, got none")
    cand, base = _per_seed(results, rec, column, seeds)
    cand_auc, base_auc = _per_seed(results, rec, "roc_auc", seeds)
    ratio, loss, auc, ok = confirmation_tests(cand, base, cand_auc, base_auc, alpha)
    auc_c, auc_b = cand_auc.mean(1), base_auc.mean(1)
    rec.confirmation = {
        "seeds": [int(s) for s in seeds],
        "loss": {
            **loss.to_dict(),
            "relative_loss": ratio.tolist(),
            "candidate": cand.mean(1).tolist(),
            "reference": base.mean(1).tolist(),
            "sentence": loss.describe(),
        },
        "roc_auc": {
            **{k: v for k, v in auc.to_dict().items() if k != "relative_mean"},
            "candidate": auc_c.tolist(),
            "reference": auc_b.tolist(),
            "sentence": _auc_sentence(auc, auc_c, auc_b),
        },
        "test": "one-sided t on the per-seed mean relative loss (< 1) and on the ROC AUC "
        "difference (> 0); both must reject (intersection-union)",
    }
    rec.verdict = "grouping" if ok else "one model"
    rec.one_model_best = not ok
    rec.message = rec.describe()
    return rec


def _auc_sentence(test: Any, cand: np.ndarray, base: np.ndarray) -> str:
    return (
        f"candidate {cand.mean():.4f} vs reference {base.mean():.4f} "
        f"(difference {test.mean_diff:+.4f}, {100 * (1 - test.alpha):g} % interval "
        f"[{test.ci_lo:+.4f}, {test.ci_hi:+.4f}], one-sided p = {test.p_value:.3g}, df {test.df})."
    )
