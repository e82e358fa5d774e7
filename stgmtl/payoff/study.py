"""The known-answer study: the verdict's power on planted suites, its false positives on nulls.

A decision procedure is judged by how often it finds what is there and how often it claims what
is not. On suites of :mod:`~stgmtl.payoff.planted` the answer is known:

* **Power** at a strength level: the fraction of planted instances on which the harness
  recommends a grouping in which no group mixes the two planted sides **and** the fresh-seed
  confirmation accepted it against the best one model at the budget (verdict ``"grouping"``):
  :func:`recommends_planted`, :func:`power_by_strength`.
* **False-positive rate**: the fraction of exact-null instances (the candidates are the same one
  model retrained with other seeds, :func:`exact_null_trial`) on which the verdict is
  ``"grouping"``: :func:`false_positive_rate`.
* **The measured effect** of a level (what power is plotted against, not the knob): the
  planted grouping's relative test-loss decrease against the one model at its budget, per
  exploration seed (``gain_vs_budget`` of source ``"planted"`` in the harness's payoff table),
  pooled over the level's instances: :func:`planted_effect`.

Every rate comes with its exact Clopper-Pearson interval
(:func:`~stgmtl.payoff.stats.clopper_pearson`). :data:`POWER_STUDY` is the harness's setting for
the study: no pair truth (the harness's default trains every pair, too costly here), k = 2 only,
the planted split (as a precomputed signal) and the label statistic as grouping sources, one
random partition, one network per group at budget 2, five fresh confirmation seeds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from stgmtl._checks import check_float, check_int, fail
from stgmtl.payoff.confirm import confirmation_tests, fresh_seeds
from stgmtl.payoff.execution import run_all
from stgmtl.payoff.planted import PlantedSuite
from stgmtl.payoff.recommendation import choose
from stgmtl.payoff.runs import RunContext, RunSpec, factory_identity
from stgmtl.payoff.splits import data_fingerprint
from stgmtl.payoff.stats import clopper_pearson
from stgmtl.payoff.tables import loss_lookup, runs_table
from stgmtl.specialise.training import TrainConfig

__all__ = [
    "NULL_SEED_STRIDE",
    "POWER_STUDY",
    "Rate",
    "Trial",
    "exact_null_trial",
    "false_positive_rate",
    "planted_effect",
    "planted_trial",
    "power_by_strength",
    "rate",
    "effect_by_side",
    "recommends_planted",
    "trained_sets",
]

#: :class:`~stgmtl.payoff.settings.PayoffSettings` overrides of the power study (module
#: docstring); ``signals`` are added per suite (the planted split and the label statistic).
POWER_STUDY: dict[str, Any] = {
    "seeds": (0, 1, 2),
    "truth": "none",
    "singles": False,
    "ks": (2,),
    "architectures": ("network",),
    "budget": 2.0,
    "random_partitions": 1,
    "confirm_seeds": 5,
}

#: Exact-null candidate ``c`` (1, 2, ...) on seed ``s`` is the one model trained on seed
#: ``s + c * NULL_SEED_STRIDE``.
NULL_SEED_STRIDE = 100_000


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` with its exact Clopper-Pearson ``1 - alpha`` interval."""

    k: int
    n: int
    rate: float
    lo: float
    hi: float
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, what: str = "rate") -> str:
        level = 100 * (1 - self.alpha)
        return (
            f"{what} {self.k}/{self.n} = {self.rate:.2f} ({level:g} % Clopper-Pearson interval "
            f"{self.lo:.2f}-{self.hi:.2f})"
        )


def rate(hits: Sequence[bool], alpha: float = 0.05) -> Rate:
    """The fraction of true values in ``hits`` with its Clopper-Pearson interval."""
    h = [bool(x) for x in hits]
    if not h:
        raise fail("hits", "at least one trial", "none")
    k, n = sum(h), len(h)
    lo, hi = clopper_pearson(k, n, alpha)
    return Rate(k, n, k / n, lo, hi, float(alpha))


def trained_sets(
    recommendation: Mapping[str, Any], systems: pl.DataFrame | None
) -> list[list[str]]:
    """The task sets trained together by the recommendation's chosen systems.

    A system serves some tasks (``recommendation["groups"]``) but may train more: one model
    serving only some tasks was still trained on all of them. With the harness's ``systems``
    table each chosen network contributes the tasks it trained (``tasks``) and each grouped
    system its groups (``groups``); without it, the served groups are returned.
    """
    chosen = [str(c["system"]) for c in recommendation.get("systems", [])]
    if systems is None or not chosen:
        return [list(g) for g in recommendation.get("groups", [])]
    rows = {r["system"]: r for r in systems.iter_rows(named=True)}
    out: list[list[str]] = []
    for sid in chosen:
        row = rows[sid]
        groups = json.loads(row["groups"]) if row.get("groups") else []
        out += [list(g) for g in groups] if groups else [list(json.loads(row["tasks"]))]
    return out


def recommends_planted(
    recommendation: Mapping[str, Any], suite: PlantedSuite, systems: pl.DataFrame | None = None
) -> bool:
    """A hit: a confirmed grouping (verdict ``"grouping"``, 2 or more groups) in which no set of
    tasks trained together mixes the two sides (:func:`trained_sets`; pass the harness result's
    ``systems`` table so that a one model serving one side, but trained on both, counts as
    mixed).

    On a null suite nothing can be a hit (nothing is planted).
    """
    groups = [list(g) for g in recommendation.get("groups", [])]
    return (
        suite.planted
        and recommendation.get("verdict") == "grouping"
        and len(groups) > 1
        and not suite.mixes(trained_sets(recommendation, systems))
    )


@dataclass
class Trial:
    """One instance of the study.

    Attributes
    ----------
    kind : {"planted", "null"}
    strength : float
    instance : int
    verdict : str
        The harness's verdict (``"grouping"``, ``"one model"``, ``"unconfirmed"``).
    groups : list of list of str
        The recommended grouping.
    hit : bool
        Planted: :func:`recommends_planted`; null: the verdict is ``"grouping"`` (a false
        positive).
    effect : list of float
        Planted: the planted grouping's test gain against one model at its budget, per
        exploration seed (:func:`planted_effect`); null: empty.
    seconds : float
        Wall time of the trial.
    detail : dict
        The confirmation's numbers (p-values, per-seed relative losses), when there was one.
    unmixed : bool
        Planted: the candidate chosen on validation has 2 or more groups and mixes no sides
        (whatever the confirmation said).
    """

    kind: str
    strength: float
    instance: int
    verdict: str
    groups: list[list[str]]
    hit: bool
    effect: list[float] = field(default_factory=list)
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    unmixed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def planted_effect(payoff: pl.DataFrame, *, source: str = "planted", k: int = 2) -> list[float]:
    """Per exploration seed, the test ``gain_vs_budget`` of ``source``'s ``k``-group partition.

    ``payoff`` is a harness result's ``payoff`` table; the gain is the mean over tasks of the
    relative loss decrease against one model at the partition's budget (> 0: the planted
    grouping is better at equal parameters). Empty when the source was not trained.
    """
    if payoff.height == 0:
        return []
    rows = payoff.filter(
        (pl.col("split") == "test") & (pl.col("source") == source) & (pl.col("k") == k)
    ).sort("seed")
    return [float(v) for v in rows["gain_vs_budget"].to_list()]


def effect_by_side(
    result: Any, suite: PlantedSuite, *, source: str = "planted", split: str = "test"
) -> pl.DataFrame:
    """The planted grouping's gain against one model at its budget, per seed and side.

    ``result`` is the trial's :class:`~stgmtl.payoff.tables.PayoffResult` (its ``partitions``
    and ``runs`` tables). Per seed and side (``"clean"`` / ``"noisy"``, or the suite's
    :attr:`~stgmtl.payoff.planted.PlantedSuite.side_names`): the mean over that
    side's tasks of the relative loss decrease of the network serving the task in ``source``'s
    partition against one model at that partition's budget (> 0: the grouping helps that side).
    The study's ``effect`` averages both sides; this separates a gain on one side from a loss on
    the other.
    """
    parts = result.partitions
    planted = parts.filter(pl.col("source") == source)
    if planted.height == 0:
        raise fail("source", "a grouping source trained in this result", source)
    budget = float(
        result.systems.filter(pl.col("system").is_in(planted["system"].unique().to_list()))[
            "budget"
        ].max()
    )
    label = "one model" if budget == 1.0 else f"one model ({budget:g}x)"
    ref = parts.filter(pl.col("partition") == label).select("task", pl.col("system").alias("ref"))
    runs = result.runs.filter(pl.col("split") == split).select("system", "seed", "task", "loss")
    serve = planted.select("task", "system").join(ref, on="task")
    mine = serve.join(runs, on=["system", "task"]).rename({"loss": "l_group"})
    base = serve.join(runs.rename({"system": "ref", "loss": "l_ref"}), on=["ref", "task"])
    j = mine.join(base.select("task", "seed", "l_ref"), on=["task", "seed"])
    first, second = suite.side_names
    return (
        j.with_columns(
            ((pl.col("l_ref") - pl.col("l_group")) / pl.col("l_ref")).alias("gain"),
            pl.when(pl.col("task").is_in(list(suite.sides[1])))
            .then(pl.lit(second))
            .otherwise(pl.lit(first))
            .alias("side"),
        )
        .group_by("seed", "side")
        .agg(pl.col("gain").mean())
        .sort("side", "seed")
    )


def _suite(data: Any, kind: str) -> PlantedSuite:
    suite = data() if callable(data) and not isinstance(data, PlantedSuite) else data
    if not isinstance(suite, PlantedSuite) or suite.kind != kind:
        what = "planted_suite" if kind == "planted" else "exact_null_suite"
        raise fail(
            "suite", f"a {kind} PlantedSuite ({what}) or a callable returning one",
            getattr(suite, "kind", type(suite).__name__), error=TypeError,
        )  # fmt: skip
    return suite


def planted_trial(
    suite: PlantedSuite | Callable[[], PlantedSuite],
    factory: Any,
    recipe: TrainConfig,
    out: str | Path,
    *,
    executor: Any = None,
    progress: bool = False,
    log: Any = None,
    **overrides: Any,
) -> Trial:
    """Run the harness on a planted suite with :data:`POWER_STUDY` and score the verdict.

    The grouping sources are the planted split (``"planted"``: the suite's
    :meth:`~stgmtl.payoff.planted.PlantedSuite.oracle_affinity`), the label statistic
    (``"label"``) and the random partitions; ``overrides`` replace :data:`POWER_STUDY` entries
    (e.g. ``signals=`` to add recorded signals). ``suite`` may be a picklable zero-argument
    callable returning the suite (for process pools: workers then load the data themselves).
    """
    from stgmtl.payoff.harness import run_payoff
    from stgmtl.payoff.signal_runs import label_control
    from stgmtl.specialise.data import targets_of

    data = suite
    suite = _suite(data, "planted")
    names = suite.task_names()
    settings = {
        **POWER_STUDY,
        "signals": {
            "planted": suite.oracle_affinity(),
            "label": label_control(targets_of(suite.train), names),
        },
        **overrides,
    }
    t0 = time.perf_counter()
    result = run_payoff(
        data, factory, recipe, out, executor=executor, progress=progress, log=log, **settings
    )
    rec = result.recommendation
    conf = rec.get("confirmation") or {}
    return Trial(
        kind=suite.kind,
        strength=suite.strength,
        instance=suite.instance,
        verdict=str(rec["verdict"]),
        groups=[list(g) for g in rec["groups"]],
        hit=recommends_planted(rec, suite, result.systems)
        if suite.kind == "planted"
        else rec["verdict"] == "grouping",
        effect=planted_effect(result.payoff),
        seconds=time.perf_counter() - t0,
        detail=_detail(conf),
        unmixed=suite.planted
        and len(rec["groups"]) > 1
        and not suite.mixes(trained_sets(rec, result.systems)),
    )


def _detail(conf: Mapping[str, Any]) -> dict[str, Any]:
    if not conf:
        return {}
    return {
        "loss_p": conf["loss"]["p_value"],
        "auc_p": conf["roc_auc"]["p_value"],
        "relative_loss": conf["loss"].get("relative_loss"),
    }


def exact_null_trial(
    suite: PlantedSuite | Callable[[], PlantedSuite],
    factory: Any,
    recipe: TrainConfig,
    cache_dir: str | Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    candidates: int = 2,
    confirm_seeds: int = 5,
    alpha: float = 0.05,
    executor: Any = None,
    threads: int | None = None,
    progress: bool = False,
) -> Trial:
    """One exact-null instance: the candidates are the one model retrained with other seeds.

    The reference is one model for all tasks on each exploration seed ``s``; candidate ``c``
    (``1 .. candidates``) is the same model, recipe and data trained on seed
    ``s + c * NULL_SEED_STRIDE`` (so no candidate is truly better). As the harness does,
    :func:`~stgmtl.payoff.recommendation.choose` picks on validation the candidate with the
    lowest loss relative to the reference (budget 1, each candidate serving every task); if one
    beats the reference on validation, it and the reference are retrained on ``confirm_seeds``
    fresh seeds (after every seed used, shifted by the instance) and the same intersection-union
    test of :func:`~stgmtl.payoff.confirm.confirm` (one-sided paired t on the per-seed mean
    relative loss, and on ROC AUC) gives the verdict. A ``"grouping"`` verdict is a false
    positive.

    Runs go through the harness's run cache at ``cache_dir`` (:func:`~stgmtl.payoff.
    execution.run_all`); instances differ by their seeds (``instance`` shifts them by
    ``1000 * instance``) and share nothing else. ``suite`` may be a picklable zero-argument
    callable returning the suite (for process pools).
    """
    data = suite
    suite = _suite(data, "null")
    check_int("candidates", candidates, low=1)
    check_int("confirm_seeds", confirm_seeds, low=2)
    check_float("alpha", alpha, low=0.0, high=0.5, low_open=True)
    # instance i owns seeds [1000 i, 1000 i + 1000) for its exploration and fresh seeds, and
    # the candidates' copies of them (+ c * NULL_SEED_STRIDE): instances never share a run
    check_int("instance", suite.instance, high=NULL_SEED_STRIDE // 1000 - 1)
    base = 1000 * suite.instance
    explore = [base + check_int("seeds", s, low=0, high=999) for s in seeds]
    if len(set(explore)) < 2:
        raise fail("seeds", "at least 2 distinct seeds below 1000", list(seeds))
    if max(explore) + confirm_seeds >= base + 1000:
        raise fail("seeds", f"seeds leaving room for {confirm_seeds} fresh seeds below 1000",
                   list(seeds))  # fmt: skip
    names = tuple(suite.task_names())
    ctx = RunContext(
        data, factory, recipe, str(cache_dir), data_fingerprint(suite), factory_identity(factory),
        threads,
    )  # fmt: skip
    t0 = time.perf_counter()

    def spec(seed: int, c: int) -> RunSpec:
        return RunSpec("network", names, seed=seed + c * NULL_SEED_STRIDE)

    specs = [spec(s, c) for s in explore for c in range(candidates + 1)]
    look = loss_lookup(runs_table(run_all(specs, ctx, progress=progress, executor=executor,
                                          desc="null"))[0], "loss")  # fmt: skip
    # (C, S, T) validation loss of each candidate relative to the reference, same seed and task
    val = np.array(
        [
            [[look[(_sid(names), s + c * NULL_SEED_STRIDE, "val", t)] / look[(_sid(names), s,
              "val", t)] for t in names] for s in explore]
            for c in range(1, candidates + 1)
        ]
    )  # fmt: skip
    choice = choose(val, np.ones(candidates), 1.0)
    trial = Trial("null", 0.0, suite.instance, "one model", [list(names)], False)
    if choice.chosen and choice.objective < 1.0:
        c = int(choice.chosen[0]) + 1
        fresh = fresh_seeds(explore, confirm_seeds)
        runs = runs_table(
            run_all(
                [spec(f, x) for f in fresh for x in (0, c)],
                ctx,
                progress=progress,
                executor=executor,
                desc="confirm",
            )  # fmt: skip
        )[0]
        loss, auc = loss_lookup(runs, "loss"), loss_lookup(runs, "roc_auc")
        sid = _sid(names)

        def per_seed(table: Mapping[Any, float], x: int) -> np.ndarray:
            return np.array([[table[(sid, f + x * NULL_SEED_STRIDE, "test", t)] for t in names]
                             for f in fresh])  # fmt: skip

        ratio, t_loss, t_auc, ok = confirmation_tests(
            per_seed(loss, c), per_seed(loss, 0), per_seed(auc, c), per_seed(auc, 0), alpha
        )
        trial.verdict = "grouping" if ok else "one model"
        trial.hit = ok
        trial.detail = {
            "candidate": c, "loss_p": t_loss.p_value, "auc_p": t_auc.p_value,
            "relative_loss": ratio.tolist(), "fresh_seeds": fresh,
        }  # fmt: skip
    trial.seconds = time.perf_counter() - t0
    return trial


def _sid(names: tuple[str, ...]) -> str:
    from stgmtl.payoff.tables import system_id

    return system_id(RunSpec("network", names))


def power_by_strength(trials: Sequence[Trial], alpha: float = 0.05) -> pl.DataFrame:
    """Per strength level of the planted trials: power with its interval, and measured effect.

    Columns: ``strength, n, hits, power, lo, hi`` (Clopper-Pearson ``1 - alpha``),
    ``effect`` (mean of the pooled per-seed planted gains against one model at the budget),
    ``effect_sd`` (their sd), ``effect_n`` (how many seeds), ``effect_lo`` / ``effect_hi`` (the
    ``1 - alpha`` t interval over the **instances'** mean effects, df = instances - 1: seeds of
    one instance share its draw of sides, so the instance is the unit), ``confirmed`` (verdicts
    ``"grouping"`` of any grouping, mixed or not), ``unmixed`` (trials whose validation
    candidate was an unmixed grouping) and ``loss_hits`` (of those, the ones whose confirmation
    accepted the loss half of the test at ``alpha``, whatever the ROC AUC half said).
    """
    planted = [t for t in trials if t.kind == "planted"]
    if not planted:
        raise fail("trials", "at least one planted trial", "none")
    rows = []
    for s in sorted({t.strength for t in planted}):
        at = [t for t in planted if t.strength == s]
        r = rate([t.hit for t in at], alpha)
        eff = np.array([e for t in at for e in t.effect], dtype=np.float64)
        per_instance = np.array([np.mean(t.effect) for t in at if t.effect], dtype=np.float64)
        lo = hi = math.nan
        if per_instance.size > 1:
            half = (
                stats.t.ppf(1 - alpha / 2, per_instance.size - 1)
                * per_instance.std(ddof=1)
                / math.sqrt(per_instance.size)
            )
            lo, hi = per_instance.mean() - half, per_instance.mean() + half
        rows.append(
            {
                "strength": s, "n": r.n, "hits": r.k, "power": r.rate, "lo": r.lo, "hi": r.hi,
                "effect": float(eff.mean()) if eff.size else math.nan,
                "effect_sd": float(eff.std(ddof=1)) if eff.size > 1 else math.nan,
                "effect_n": int(eff.size),
                "effect_lo": float(lo), "effect_hi": float(hi),
                "confirmed": sum(t.verdict == "grouping" for t in at),
                "unmixed": sum(t.unmixed for t in at),
                "loss_hits": sum(
                    t.unmixed and t.detail.get("loss_p", 1.0) < alpha for t in at
                ),
            }
        )  # fmt: skip
    return pl.DataFrame(rows)


def false_positive_rate(trials: Sequence[Trial], alpha: float = 0.05) -> Rate:
    """The fraction of null trials whose verdict is ``"grouping"``, with its interval."""
    nulls = [t for t in trials if t.kind == "null"]
    if not nulls:
        raise fail("trials", "at least one null trial", "none")
    return rate([t.verdict == "grouping" for t in nulls], alpha)
