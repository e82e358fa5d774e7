"""The verdict's false-positive rate, simulated on null loss tables.

:func:`~stgmtl.payoff.recommendation.recommend` and the confirmation read loss tables only, so
their behaviour when no grouping helps can be simulated at the harness's real shapes, thousands
of times in seconds. A **null table** has ``C`` candidate systems and a reference whose losses
differ only by seed noise:

    L[c, s, t] = mu[t] * (1 + a[s] + e[c, s, t])

``mu[t]`` a task's typical loss, ``a[s]`` a seed effect shared by every system of that seed
(the pairing), ``e`` independent noise of standard deviation ``noise_sd`` per system, seed and
task. Each replicate draws exploration tables (validation), runs :func:`~stgmtl.payoff.
recommendation.choose` exactly as :func:`~stgmtl.payoff.recommendation.recommend` does, and,
when a candidate beats the reference on validation, draws the fresh confirmation seeds of the
chosen systems and the reference and applies the same paired test
(:func:`~stgmtl.payoff.stats.paired_confirmation`). The false-positive rate is the fraction of
replicates whose verdict is "grouping", with a Clopper-Pearson interval. For contrast the rate of
the validation-only rule (the candidate beats the reference on validation by more than one
paired standard error and on every seed: what the verdict used to rest on) is reported too.

What it does not model: ROC AUC (the real verdict also requires the AUC test, so its rate can
only be lower), the choice of the reference between 1x and ``b`` x, and heavy-tailed or
correlated noise between systems. Under its own assumptions the confirmation's rate is ``alpha``
times the rate of finding a candidate, by construction of a test on fresh seeds; the simulation
checks the implementation and shows what the validation-only rule would do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stgmtl._checks import check_float, check_int, fail, seed_from
from stgmtl.payoff.recommendation import choose, served_mean
from stgmtl.payoff.stats import clopper_pearson, paired_confirmation

__all__ = ["NullRate", "simulate_null"]


@dataclass(frozen=True)
class NullRate:
    """Result of :func:`simulate_null`.

    Attributes
    ----------
    n_sim : int
    rate, lo, hi : float
        False-positive rate of the verdict (chosen on validation, confirmed on fresh seeds) and
        its Clopper-Pearson ``1 - alpha`` interval.
    validation_rate, validation_lo, validation_hi : float
        The same for the validation-only rule (no fresh seeds).
    candidate_rate : float
        How often validation found a candidate to confirm at all.
    alpha : float
    shape : dict
        ``systems, tasks, seeds, confirm_seeds, budget, noise_sd, seed_sd``.
    """

    n_sim: int
    rate: float
    lo: float
    hi: float
    validation_rate: float
    validation_lo: float
    validation_hi: float
    candidate_rate: float
    alpha: float
    shape: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One sentence with both rates and their intervals."""
        level = 100 * (1 - self.alpha)
        return (
            f"On {self.n_sim} null tables ({self.shape['systems']} systems, "
            f"{self.shape['tasks']} tasks, {self.shape['seeds']} seeds, confirmed on "
            f"{self.shape['confirm_seeds']} fresh seeds) the verdict recommended a grouping in "
            f"{100 * self.rate:.2f} % ({level:g} % Clopper-Pearson interval "
            f"{100 * self.lo:.2f}-{100 * self.hi:.2f} %); the validation-only rule in "
            f"{100 * self.validation_rate:.2f} % ({100 * self.validation_lo:.2f}-"
            f"{100 * self.validation_hi:.2f} %)."
        )


def _table(
    rng: np.random.Generator, mu: np.ndarray, c: int, s: int, noise_sd: float, seed_sd: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(C, S, T)`` losses of the candidates and ``(S, T)`` of the reference, null."""
    a = rng.normal(0.0, seed_sd, size=(1, s, 1))
    cand = mu * (1.0 + a + rng.normal(0.0, noise_sd, size=(c, s, mu.size)))
    ref = mu * (1.0 + a[0] + rng.normal(0.0, noise_sd, size=(s, mu.size)))
    return cand, ref


def simulate_null(
    *,
    systems: int = 30,
    tasks: int = 15,
    seeds: int = 3,
    confirm_seeds: int = 5,
    budget: float = 2.0,
    costs: np.ndarray | None = None,
    n_sim: int = 2000,
    noise_sd: float = 0.03,
    seed_sd: float = 0.05,
    serves: float = 1.0,
    serving: np.ndarray | None = None,
    alpha: float = 0.05,
    max_exact: int = 20_000,
    random_state: Any = 0,
) -> NullRate:
    """Simulate the verdict on null tables (module docstring).

    Parameters
    ----------
    systems, tasks, seeds : int
        Shape of the exploration tables (candidate systems besides the reference).
    confirm_seeds : int
        Fresh seeds of the confirmation (at least 2).
    budget : float
        The recommendation's budget (in units of one model).
    costs : np.ndarray, optional
        ``(systems,)`` costs (default: 1 each).
    n_sim : int
        Replicates.
    noise_sd, seed_sd : float
        Per-system noise and shared seed effect, relative to a task's loss.
    serves : float
        Fraction of tasks each system serves (the rest NaN, as single-task and pair networks
        serve few tasks); at least one task each.
    serving : np.ndarray, optional
        ``(systems, tasks)`` bool: which tasks each system serves, in place of ``serves`` (e.g.
        the real harness's single-task networks and grouped systems).
    alpha : float
        Level of the confirmation test and of the intervals.
    max_exact : int
        Exact budgeted selection up to this many candidate sets, a heuristic beyond.
    random_state : None, int or Generator

    Returns
    -------
    NullRate
    """
    for name, v, low in (("systems", systems, 1), ("tasks", tasks, 1), ("seeds", seeds, 2),
                         ("confirm_seeds", confirm_seeds, 2), ("n_sim", n_sim, 1)):  # fmt: skip
        check_int(name, v, low=low)
    check_float("noise_sd", noise_sd, low=0.0, low_open=True)
    check_float("seed_sd", seed_sd, low=0.0)
    check_float("serves", serves, low=0.0, high=1.0, low_open=True)
    check_float("alpha", alpha, low=0.0, high=0.5, low_open=True)
    rng = np.random.default_rng(seed_from("random_state", random_state))
    cost = np.ones(systems) if costs is None else np.asarray(costs, dtype=np.float64)
    mu = rng.uniform(0.2, 0.8, size=tasks)
    if serving is not None:
        mask = np.asarray(serving, dtype=bool)
        if mask.shape != (systems, tasks) or not mask.any(0).all():
            raise fail(
                "serving", f"a ({systems}, {tasks}) bool array serving every task", mask.shape
            )
    else:
        n_serve = max(1, int(round(serves * tasks)))
        mask = np.zeros((systems, tasks), dtype=bool)
        for c in range(systems):
            mask[c, rng.choice(tasks, n_serve, replace=False)] = True
        mask[rng.integers(systems), :] = True  # one system can serve every task alone
    hits = val_hits = found = 0
    for _ in range(n_sim):
        cand, ref = _table(rng, mu, systems, seeds, noise_sd, seed_sd)
        rel = np.where(mask[:, None, :], cand / ref[None], np.nan)
        choice = choose(rel, cost, budget, max_exact=max_exact)
        if not choice.chosen or choice.objective >= 1.0:
            continue
        found += 1
        gains = 1.0 - choice.per_seed
        se = gains.std(ddof=1) / math.sqrt(gains.size)
        val_hits += bool(gains.mean() > se and (gains > 0).all())
        fresh, fresh_ref = _table(rng, mu, systems, confirm_seeds, noise_sd, seed_sd)
        ratio = served_mean(fresh / fresh_ref[None], choice.server)  # (seeds,), as confirm()
        hits += paired_confirmation(ratio, np.ones_like(ratio), alpha=alpha).accepted
    lo, hi = clopper_pearson(hits, n_sim, alpha)
    vlo, vhi = clopper_pearson(val_hits, n_sim, alpha)
    shape = {
        "systems": systems, "tasks": tasks, "seeds": seeds, "confirm_seeds": confirm_seeds,
        "budget": budget, "noise_sd": noise_sd, "seed_sd": seed_sd, "serves": serves,
    }  # fmt: skip
    return NullRate(
        n_sim, hits / n_sim, lo, hi, val_hits / n_sim, vlo, vhi, found / n_sim, alpha, shape
    )
