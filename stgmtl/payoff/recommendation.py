"""What to train: chosen on validation within a budget, then confirmed on fresh seeds.

:func:`recommend` reads a :class:`~stgmtl.payoff.tables.PayoffResult` (what the harness trained
and measured) and does only what validation may decide:

1. **The reference.** Among the one-model systems within the budget (one model for all tasks
   at 1x parameters and at each budget ``b`` the harness trained, of every variant it trained:
   plain and, when asked for, the loss-balanced ``network-uncertainty``), the one with the
   lowest mean validation loss over seeds and tasks (ties: the cheaper, then the id). This is
   the budget-matched one model every candidate must beat, and the one the fresh-seed
   confirmation retrains beside the candidate.
2. **The candidate.** Every other trained system (single-task, pair and subset networks;
   grouped systems at their asserted budgets) is scored per seed and task by its validation
   loss relative to the reference on the same seed and task (paired), averaged over seeds. For
   each budget level ``b = 1, 2, ..., budget`` Standley's budgeted selection
   (:func:`~stgmtl.payoff.search.select_networks`) finds the set of systems within ``b`` that
   minimises the mean over tasks of the best chosen system's relative loss; each task is then
   served by its best chosen system on validation. The cheapest level whose objective is
   within one paired standard error (over seeds) of the best level's is the candidate.
3. **No verdict here.** The candidate is the best of many sets on the same validation losses,
   so its validation gain is optimistic and a test computed on those losses (or on test losses
   of the same trained weights) inherits the selection. The verdict comes from
   :func:`stgmtl.payoff.confirm.confirm`: the candidate and the reference are retrained on fresh
   seeds and compared by a one-sided paired t-test. Until then :attr:`Recommendation.verdict` is
   ``"unconfirmed"`` and one model stays the recommendation.

The test split is only ever reported for what validation chose; nothing is picked on it.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import check_float, fail
from stgmtl.payoff.runs import RunSpec
from stgmtl.payoff.search import select_networks
from stgmtl.payoff.tables import PayoffResult, system_id
from stgmtl.specialise.training import LOSS_WEIGHTINGS

__all__ = [
    "ONE_MODEL_KINDS",
    "Choice",
    "Recommendation",
    "choose",
    "choose_reference",
    "one_model_systems",
    "recommend",
    "served_mean",
]

#: System kinds of a one model for all tasks: plain, and trained with a loss weighting
#: (``network-uncertainty``).
ONE_MODEL_KINDS = ("network", *(f"network-{w}" for w in LOSS_WEIGHTINGS if w != "none"))


@dataclass
class Choice:
    """The candidate set found on validation (array form; see :func:`choose`).

    Attributes
    ----------
    chosen : list of int
        Indices of the chosen systems (empty when no set within the budget serves every task).
    server : np.ndarray
        ``(T,)`` index of the system serving each task.
    level : float
        The budget level the set was chosen at.
    objective : float
        Mean over tasks of the served relative validation loss (1.0 = the reference).
    per_seed : np.ndarray
        ``(S,)`` the same objective per seed.
    per_budget : list of dict
        The best set at each level: ``budget, chosen, server, cost, objective, exact``.
    """

    chosen: list[int]
    server: np.ndarray
    level: float
    objective: float
    per_seed: np.ndarray
    per_budget: list[dict[str, Any]] = field(default_factory=list)


def _seed_mean(cube: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(cube, axis=1)


def served_mean(cube: np.ndarray, server: np.ndarray) -> np.ndarray:
    """``(S,)`` mean over tasks of ``cube[server[t], s, t]``."""
    cols = np.arange(cube.shape[2])
    return cube[server, :, cols].mean(0)


def choose(
    val: np.ndarray,
    costs: np.ndarray,
    budget: float,
    *,
    max_exact: int = 2_000_000,
) -> Choice:
    """Choose the candidate set on validation (module docstring, step 2), from arrays.

    Only levels whose set beats the reference on validation (objective below 1) compete; among
    them the cheapest whose objective is within one standard error (over seeds) of the best
    level's is chosen. No such level: an empty choice.

    Parameters
    ----------
    val : np.ndarray
        ``(C, S, T)`` validation loss of system ``c`` on seed ``s`` and task ``t`` relative to
        the reference on the same seed and task (NaN where ``c`` does not serve ``t``).
    costs : np.ndarray
        ``(C,)`` parameters of each system relative to one model.
    budget : float
        Largest total cost.
    max_exact : int
        Exact selection up to this many candidate sets per level, a heuristic beyond.

    Returns
    -------
    Choice
    """
    lo = _seed_mean(val)
    levels = sorted({*range(1, int(math.floor(budget + 1e-9)) + 1), float(budget)})
    found: list[tuple[float, list[int], float, np.ndarray]] = []
    rows = []
    for level in levels:
        chosen, obj, exact = select_networks(lo, costs, float(level), max_exact=max_exact)
        if not chosen or not math.isfinite(obj):
            continue
        sub = np.where(np.isnan(lo[chosen]), np.inf, lo[chosen])
        server = np.asarray(chosen)[np.argmin(sub, axis=0)]
        found.append((float(level), chosen, obj, server))
        rows.append(
            {
                "budget": float(level),
                "chosen": chosen,
                "server": server,
                "cost": float(costs[chosen].sum()),
                "objective": obj,
                "exact": exact,
            }
        )
    beating = [f for f in found if f[2] < 1.0]  # only sets that beat the reference compete
    if not beating:
        return Choice([], np.zeros(val.shape[2], dtype=np.int64), 0.0, math.inf, np.array([]), rows)
    best = min(beating, key=lambda f: f[2])
    per_seed_best = served_mean(val, best[3])
    s = per_seed_best.size
    se = float(per_seed_best.std(ddof=1) / math.sqrt(s)) if s > 1 else 0.0
    se = se if math.isfinite(se) else 0.0
    level, chosen, obj, server = next(f for f in beating if f[2] <= best[2] + se)
    return Choice(chosen, server, level, obj, served_mean(val, server), rows)


@dataclass
class Recommendation:
    """The chosen grouping, its reference, and (after confirmation) the verdict.

    Attributes
    ----------
    one_model_best : bool
        True unless a fresh-seed confirmation accepted the candidate.
    verdict : str
        ``"grouping"`` (confirmed), ``"one model"`` (confirmation rejected it, or no candidate
        beat the reference even on validation) or ``"unconfirmed"`` (no confirmation run).
    reference : dict
        The budget-matched one model: ``system``, ``budget``, ``parameters``; when
        loss-balanced one models were trained also ``kind`` (``"network"`` or
        ``"network-uncertainty"``) and ``validation`` (the mean validation loss of every
        one model within the budget, what chose it).
    systems : list of dict
        The candidate's systems: ``system``, ``kind``, ``k``, ``tasks`` (served), ``cost``,
        ``budget``.
    groups : list of list of str
        The candidate grouping (for each chosen system the tasks it serves; a grouped system
        contributes its groups).
    k : int
    budget : float
        The inference budget, in parameters of one model.
    cost : float
        Parameters of the candidate relative to one model (1x).
    val_gain : float
        Mean relative loss decrease against the reference on validation (what chose it:
        optimistic).
    val_gain_se : float
        Its paired standard error over seeds.
    test_gain : float
        The same on test, for the same trained weights (reported, not a test of anything).
    confirmation : dict
        Filled by :func:`stgmtl.payoff.confirm.confirm`: the fresh-seed paired test on loss and
        ROC AUC (empty before).
    per_budget : polars.DataFrame
        The best set at each budget level: ``budget, systems, cost, val_gain, test_gain,
        exact``.
    message : str
        The recommendation in plain sentences.
    """

    one_model_best: bool
    verdict: str
    reference: dict[str, Any]
    systems: list[dict[str, Any]]
    groups: list[list[str]]
    k: int
    budget: float
    cost: float
    val_gain: float
    val_gain_se: float
    test_gain: float
    per_budget: pl.DataFrame
    confirmation: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (``per_budget`` as a list of rows)."""
        out = {k: v for k, v in vars(self).items() if k != "per_budget"}
        out["per_budget"] = self.per_budget.to_dicts()
        return json.loads(json.dumps(out, default=float))

    @property
    def has_candidate(self) -> bool:
        """Whether validation found a set that beats the reference (worth confirming)."""
        return bool(self.systems) and self.val_gain > 0

    def describe(self) -> str:
        """The message: what was chosen, against what, and what decided it."""
        weighted = str(self.reference.get("kind", "network")).removeprefix("network")
        how = f" with {weighted.lstrip('-')} loss weighting" if weighted else ""
        ref = f"one model{how} at {self.reference['budget']:g}x parameters"
        if not self.has_candidate:
            return (
                f"One model for all tasks: no set of networks within a budget of {self.budget:g} "
                f"model(s) beats the budget-matched reference ({ref}) on validation."
            )
        what = "; ".join(f"{s['kind']} on {len(s['tasks'])} task(s)" for s in self.systems)
        cand = (
            f"Candidate (chosen on validation): {len(self.systems)} system(s) ({what}), "
            f"{self.k} group(s), cost {self.cost:.2f} model(s); validation loss "
            f"{100 * self.val_gain:.2f} % (se {100 * self.val_gain_se:.2f}) below {ref}."
        )
        if not self.confirmation:
            return cand + " Not confirmed on fresh seeds: one model stays the recommendation."
        c = self.confirmation
        if len(c.get("seeds", [])) < 5:
            cand += " (Fewer than 5 fresh seeds: a smoke test, not a verdict.)"
        head = (
            "Train the candidate grouping: "
            if self.verdict == "grouping"
            else "One model for all tasks: the candidate was not confirmed: "
        )
        return f"{cand} {head}{c['loss']['sentence']} ROC AUC: {c['roc_auc']['sentence']}"


def _cube(
    runs: pl.DataFrame, ref: str, split: str, column: str, systems: list[str], names: list[str]
) -> tuple[np.ndarray, list[int]]:
    """``(systems, seeds, tasks)`` loss / the reference's on the same seed and task."""
    r = runs.filter(pl.col("split") == split).select("system", "seed", "task", column)
    base = r.filter(pl.col("system") == ref).select("seed", "task", pl.col(column).alias("ref"))
    rel = r.join(base, on=["seed", "task"]).with_columns(
        (pl.col(column) / pl.col("ref")).alias("rel")
    )
    seeds = sorted(set(base["seed"].to_list()))
    pos_s = {s: i for i, s in enumerate(systems)}
    pos_e = {s: i for i, s in enumerate(seeds)}
    pos_t = {t: i for i, t in enumerate(names)}
    m = np.full((len(systems), len(seeds), len(names)), np.nan)
    for s, e, t, v in rel.select("system", "seed", "task", "rel").iter_rows():
        if s in pos_s and t in pos_t and e in pos_e:
            m[pos_s[s], pos_e[e], pos_t[t]] = v
    return m, seeds


def one_model_systems(result: PayoffResult) -> dict[str, float]:
    """``{system id: budget}`` of the one-model systems (all tasks, one network; every kind of
    :data:`ONE_MODEL_KINDS`)."""
    names = tuple(result.task_names)
    out = {}
    for row in result.systems.iter_rows(named=True):
        if row["kind"] in ONE_MODEL_KINDS and int(row["num_tasks"]) == len(names):
            out[row["system"]] = float(row.get("budget") or 1.0)
    return out


def _reference_losses(result: PayoffResult, budget: float, column: str) -> dict[str, float]:
    """``{system: mean validation column}`` of the one-model systems within ``budget``."""
    ones = {s: b for s, b in one_model_systems(result).items() if b <= budget + 1e-9}
    one = system_id(RunSpec("network", tuple(result.task_names)))
    if one not in ones:
        raise fail("result", "runs that include one model for all tasks", "none")
    val = result.runs.filter((pl.col("split") == "val") & pl.col("system").is_in(list(ones)))
    means = val.group_by("system").agg(pl.col(column).mean()).sort("system")
    return {str(s): float(v) for s, v in means.iter_rows()}


def choose_reference(result: PayoffResult, budget: float, column: str) -> tuple[str, float]:
    """The one-model system within ``budget`` with the lowest mean validation loss (ties: the
    smaller budget, then the id): ``(system id, its budget)``. Only validation is read."""
    ones = one_model_systems(result)
    means = _reference_losses(result, budget, column)
    best = min(means, key=lambda s: (means[s], ones[s], s))
    return best, ones[best]


def recommend(
    result: PayoffResult, *, budget: float | None = None, max_exact: int = 2_000_000
) -> Recommendation:
    """Choose the candidate and its reference on validation (module docstring).

    Parameters
    ----------
    result : PayoffResult
        From :func:`stgmtl.payoff.run_payoff` (or ``PayoffResult.load``).
    budget : float, optional
        Largest total parameters of the chosen systems, in units of one model for all tasks
        (default: the harness's ``settings["budget"]``, else 1).
    max_exact : int
        Exhaustive selection up to this many candidate sets per level, a heuristic beyond.

    Returns
    -------
    Recommendation
        ``verdict="unconfirmed"``: run :func:`stgmtl.payoff.confirm.confirm` (the harness does)
        for the verdict.
    """
    if not isinstance(result, PayoffResult):
        raise fail("result", "a PayoffResult", type(result).__name__, error=TypeError)
    b = float(result.settings.get("budget", 1.0) if budget is None else budget)
    check_float("budget", b, low=1.0)
    column = str(result.settings.get("column", "loss"))
    names = list(result.task_names)
    ref, ref_budget = choose_reference(result, b, column)
    one = system_id(RunSpec("network", tuple(names)))
    ones = set(one_model_systems(result)) - {one}  # the 1x one model stays a candidate
    info = {r["system"]: r for r in result.systems.iter_rows(named=True)}
    pool = sorted(s for s in set(result.runs["system"].to_list()) if s not in ones)
    base = float(info[one]["parameters"])
    val, _ = _cube(result.runs, ref, "val", column, pool, names)
    # a candidate must have been trained on every exploration seed (systems of a signal
    # recorded on one seed only are not comparable with three-seed means)
    complete = [i for i in range(len(pool)) if np.isfinite(val[i]).any(1).all()]
    systems = [pool[i] for i in complete]
    val = val[complete]
    costs = np.array([max(float(info[s]["parameters"]) / base, 1e-6) for s in systems])
    test, _ = _cube(result.runs, ref, "test", column, systems, names)
    choice = choose(val, costs, b, max_exact=max_exact) if systems else None
    per_budget = pl.DataFrame(
        [
            {
                "budget": r["budget"],
                "systems": json.dumps([systems[c] for c in r["chosen"]]),
                "cost": r["cost"],
                "val_gain": 1.0 - r["objective"],
                "test_gain": float(1.0 - np.nanmean(served_mean(test, r["server"]))),
                "exact": r["exact"],
            }
            for r in (choice.per_budget if choice else [])
        ]
    )
    reference: dict[str, Any] = {
        "system": ref,
        "budget": ref_budget,
        "parameters": int(info[ref]["parameters"]),
    }
    if any(info[s]["kind"] != "network" for s in one_model_systems(result)):
        # loss-balanced one models were trained: say which kind won, among what, on validation
        reference["kind"] = str(info[ref]["kind"])
        reference["validation"] = _reference_losses(result, b, column)
    rec = Recommendation(
        one_model_best=True,
        verdict="unconfirmed",
        reference=reference,
        systems=[],
        groups=[list(names)],
        k=1,
        budget=b,
        cost=ref_budget,
        val_gain=0.0,
        val_gain_se=0.0,
        test_gain=0.0,
        per_budget=per_budget,
    )
    if choice is not None and choice.chosen:
        _fill_candidate(rec, choice, systems, info, names, costs, test)
    if not rec.has_candidate:
        rec.verdict = "one model"
    rec.message = rec.describe()
    return rec


def _fill_candidate(
    rec: Recommendation,
    choice: Choice,
    systems: list[str],
    info: dict[str, dict[str, Any]],
    names: list[str],
    costs: np.ndarray,
    test: np.ndarray,
) -> None:
    chosen_info, groups = [], []
    for c in choice.chosen:
        sid = systems[c]
        served = [names[i] for i in np.flatnonzero(choice.server == c)]
        row = info[sid]
        chosen_info.append(
            {
                "system": sid,
                "kind": row["kind"],
                "k": int(row["k"]),
                "tasks": served,
                "cost": float(costs[c]),
                "budget": float(row.get("budget") or 1.0),
            }
        )
        if row["kind"] == "network":
            if served:
                groups.append(served)
        else:
            groups += [[t for t in g if t in served] for g in json.loads(row["groups"])]
    s = choice.per_seed.size
    rec.systems = chosen_info
    rec.groups = [g for g in groups if g]
    rec.k = len(rec.groups)
    rec.cost = float(costs[choice.chosen].sum())
    rec.val_gain = 1.0 - choice.objective
    rec.val_gain_se = float(choice.per_seed.std(ddof=1) / math.sqrt(s)) if s > 1 else math.nan
    rec.test_gain = float(1.0 - np.nanmean(served_mean(test, choice.server)))
