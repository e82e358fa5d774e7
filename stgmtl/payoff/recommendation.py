"""Which grouping to train: chosen on validation within a budget, reported on test.

:func:`recommend` reads a :class:`~stgmtl.payoff.tables.PayoffResult` (what the
payoff harness trained and measured) and applies Standley et al.'s budgeted selection to every
trained *system* (single-task, pair, group and all-task networks; grouped models at one model's
parameters):

1. Each system's per-task validation loss is taken relative to one model for all tasks on the
   same seed, then averaged over the seeds it was trained on (paired; 1.0 = one model).
2. For every budget level ``b = 1, 2, ..., budget`` (in parameters of one model), the set of
   systems within ``b`` that minimises the mean over tasks of the best chosen system's relative
   loss is found (:func:`~stgmtl.payoff.search.select_networks`; every task must be
   served); then systems are dropped, costliest first, while the objective stays within the
   noise floor (below) of that best. Each task is then served by its best chosen system *on
   validation*, and the same assignment is scored on test.
3. **Noise floor:** the seed spread of the reference models' validation loss: each task's loss
   relative to its mean over seeds, averaged over tasks per seed, then the standard deviation
   over seeds (ddof 1), times ``noise_multiplier``. The references are the single-task
   networks when they were trained (as for the truth's noise floor), else one model.
4. The cheapest level whose validation objective is within the floor of the best level is
   chosen (more networks must earn their cost). It is recommended only if it beats one model
   on validation by more than the floor *and* on every seed it was trained on (a paired check:
   the chosen set is the best of many candidates on the same validation data, so its mean
   validation gain is optimistic). Otherwise **one model for all tasks is the
   recommendation**, and the message says so.

The number of groups is therefore chosen from measured validation gains within the budget; the
silhouette of :func:`stgmtl.choose_k` measures only how well tasks separate in a feature space.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import check_float, fail
from stgmtl.payoff.runs import RunSpec
from stgmtl.payoff.search import select_networks, selection_objective
from stgmtl.payoff.tables import PayoffResult, system_id

__all__ = ["Recommendation", "recommend"]


@dataclass
class Recommendation:
    """The chosen grouping and the evidence behind it.

    Attributes
    ----------
    one_model_best : bool
        True when one model for all tasks is the recommendation.
    systems : list of dict
        The chosen systems: ``system``, ``kind``, ``k``, ``tasks`` (the tasks it serves),
        ``cost``.
    groups : list of list of str
        The recommended grouping: for each chosen network the tasks it serves; a chosen grouped
        model contributes its groups.
    k : int
        Number of groups (networks, or groups of a grouped model).
    budget : float
        The inference budget (parameters of one model).
    cost : float
        Parameters of the choice, relative to one model.
    val_gain, test_gain : float
        Mean relative loss decrease against one model (validation: what chose it; test: what
        it achieved). 0 for one model.
    noise_floor : float
        The validation noise floor (see the module docstring).
    per_budget : polars.DataFrame
        The best set at each budget level: ``budget, systems, cost, val_gain, test_gain,
        wins_every_seed, exact``.
    message : str
        The recommendation in one plain sentence.
    """

    one_model_best: bool
    systems: list[dict[str, Any]]
    groups: list[list[str]]
    k: int
    budget: float
    cost: float
    val_gain: float
    test_gain: float
    noise_floor: float
    per_budget: pl.DataFrame
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (``per_budget`` as a list of rows)."""
        out = {k: v for k, v in vars(self).items() if k != "per_budget"}
        out["per_budget"] = self.per_budget.to_dicts()
        return json.loads(json.dumps(out, default=float))


def _per_seed(runs: pl.DataFrame, one: str, split: str, column: str) -> pl.DataFrame:
    """Per (system, seed, task): loss / one model's loss on the same seed and task."""
    r = runs.filter(pl.col("split") == split).select("system", "seed", "task", column)
    ref = r.filter(pl.col("system") == one).select("seed", "task", pl.col(column).alias("ref"))
    return r.join(ref, on=["seed", "task"]).with_columns(
        (pl.col(column) / pl.col("ref")).alias("rel")
    )


def _cube(rel: pl.DataFrame, systems: list[str], seeds: list[int], names: list[str]) -> np.ndarray:
    """``(systems, seeds, tasks)`` relative losses (NaN where not trained)."""
    pos_s = {s: i for i, s in enumerate(systems)}
    pos_e = {s: i for i, s in enumerate(seeds)}
    pos_t = {t: i for i, t in enumerate(names)}
    m = np.full((len(systems), len(seeds), len(names)), np.nan)
    for s, e, t, v in rel.select("system", "seed", "task", "rel").iter_rows():
        if s in pos_s and t in pos_t:
            m[pos_s[s], pos_e[e], pos_t[t]] = v
    return m


def _seed_mean(cube: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(cube, axis=1)


def _noise_floor(runs: pl.DataFrame, reference: list[str], column: str) -> float:
    """Seed spread of the reference models' task-mean loss (relative to each task's mean)."""
    r = runs.filter((pl.col("split") == "val") & pl.col("system").is_in(reference))
    wide = r.pivot(on="task", index="seed", values=column).drop("seed").to_numpy()
    if wide.shape[0] < 2 or not np.isfinite(wide).all():
        return float("nan")
    return float((wide / wide.mean(0, keepdims=True)).mean(1).std(ddof=1))


def _prune(
    lo: np.ndarray, costs: np.ndarray, chosen: list[int], limit: float
) -> tuple[list[int], float]:
    """Drop chosen systems (costliest first) while every task stays served and the objective
    stays within ``limit`` (the best objective plus the noise floor)."""
    chosen = list(chosen)
    dropped = True
    while dropped and len(chosen) > 1:
        dropped = False
        for c in sorted(chosen, key=lambda j: -costs[j]):
            rest = [j for j in chosen if j != c]
            if selection_objective(lo, rest) <= limit:
                chosen, dropped = rest, True
                break
    return chosen, selection_objective(lo, chosen)


def recommend(
    result: PayoffResult,
    *,
    budget: float | None = None,
    noise_multiplier: float = 1.0,
    max_exact: int = 2_000_000,
) -> Recommendation:
    """Choose what to train from the harness's measurements (module docstring).

    Parameters
    ----------
    result : PayoffResult
        From :func:`stgmtl.payoff.harness.run_payoff` (or ``PayoffResult.load``).
    budget : float, optional
        Largest total parameters of the chosen systems, in units of one model for all tasks
        (default: the harness's ``settings["budget"]``, else 1).
    noise_multiplier : float
        Scales the noise floor (larger = more conservative: one model wins more often).
    max_exact : int
        Exhaustive selection up to this many candidate sets per level, a heuristic beyond.

    Returns
    -------
    Recommendation
    """
    if not isinstance(result, PayoffResult):
        raise fail("result", "a PayoffResult", type(result).__name__, error=TypeError)
    b = float(result.settings.get("budget", 1.0) if budget is None else budget)
    check_float("budget", b, low=1.0)
    check_float("noise_multiplier", noise_multiplier, low=0.0)
    column = str(result.settings.get("column", "loss"))
    names = list(result.task_names)
    one = system_id(RunSpec("network", tuple(names)))
    runs = result.runs
    if one not in runs["system"].to_list():
        raise fail("result", "runs that include one model for all tasks", "none")
    seeds = sorted(set(runs["seed"].to_list()))
    val_rel = _per_seed(runs, one, "val", column)
    systems = sorted(set(val_rel["system"].to_list()))
    val = _cube(val_rel, systems, seeds, names)
    test = _cube(_per_seed(runs, one, "test", column), systems, seeds, names)
    lo_val = _seed_mean(val)
    info = {r["system"]: r for r in result.systems.iter_rows(named=True)}
    base = float(info[one]["parameters"])
    costs = np.array([max(float(info[s]["parameters"]) / base, 1e-6) for s in systems])
    singles = [system_id(RunSpec("network", (t,))) for t in names]
    reference = singles if all(s in systems for s in singles) else [one]
    floor = _noise_floor(runs, reference, column) * noise_multiplier
    floor_used = 0.0 if not math.isfinite(floor) else floor
    levels = sorted({*range(1, int(math.floor(b + 1e-9)) + 1), b})
    rows, choices = [], []
    cols = np.arange(len(names))
    for level in levels:
        chosen, obj, exact = select_networks(lo_val, costs, level, max_exact=max_exact)
        if not chosen:
            continue
        chosen, obj = _prune(lo_val, costs, chosen, obj + floor_used)
        sub = np.where(np.isnan(lo_val[chosen]), np.inf, lo_val[chosen])
        server = np.asarray(chosen)[np.argmin(sub, axis=0)]
        per_seed = 1.0 - val[server, :, cols].mean(0)  # (seeds,): NaN where a server is missing
        test_obj = float(np.mean(_seed_mean(test)[server, cols]))
        wins = bool(np.all(per_seed[np.isfinite(per_seed)] > 0))
        choices.append((level, chosen, obj, test_obj, server, wins))
        rows.append(
            {
                "budget": float(level),
                "systems": json.dumps([systems[c] for c in chosen]),
                "cost": float(costs[chosen].sum()),
                "val_gain": 1.0 - obj,
                "test_gain": 1.0 - test_obj,
                "wins_every_seed": wins,
                "exact": exact,
            }
        )
    per_budget = pl.DataFrame(rows)
    best_obj = min(c[2] for c in choices)
    level, chosen, obj, test_obj, server, wins = next(
        c for c in choices if c[2] <= best_obj + floor_used
    )
    one_best = not (obj < 1.0 - floor_used and wins) or chosen == [systems.index(one)]
    if one_best:
        chosen, obj, test_obj = [systems.index(one)], 1.0, 1.0
        server = np.full(len(names), chosen[0])
    chosen_info, groups = [], []
    for c in chosen:
        sid = systems[c]
        served = [names[i] for i in np.flatnonzero(server == c)]
        row = info[sid]
        chosen_info.append(
            {
                "system": sid,
                "kind": row["kind"],
                "k": int(row["k"]),
                "tasks": served,
                "cost": float(costs[c]),
            }
        )
        if row["kind"] == "network":
            if served:
                groups.append(served)
        else:
            groups += [[t for t in g if t in served] for g in json.loads(row["groups"])]
    groups = [g for g in groups if g]
    rec = Recommendation(
        one_model_best=one_best,
        systems=chosen_info,
        groups=groups,
        k=len(groups),
        budget=b,
        cost=float(costs[chosen].sum()),
        val_gain=1.0 - obj,
        test_gain=1.0 - test_obj,
        noise_floor=floor,
        per_budget=per_budget,
        message="",
    )
    rec.message = _message(rec, b, floor)
    return rec


def _message(rec: Recommendation, budget: float, floor: float) -> str:
    fl = "unknown (one seed)" if not math.isfinite(floor) else f"{100 * floor:.2f} %"
    if rec.one_model_best:
        return (
            f"One model for all tasks is the best choice: no set of networks within a budget "
            f"of {budget:g} model(s) beats it on validation by more than the noise floor "
            f"({fl}) and on every seed."
        )
    what = "; ".join(f"{s['kind']} on {len(s['tasks'])} task(s)" for s in rec.systems)
    return (
        f"Train {len(rec.systems)} system(s) ({what}), {rec.k} group(s), cost "
        f"{rec.cost:.2f} model(s): validation loss {100 * rec.val_gain:.2f} % below one model "
        f"(noise floor {fl}); on test {100 * rec.test_gain:+.2f} %."
    )
