"""Does the grouping pay off? The harness that trains the truth, and groupings chosen by it.

:func:`run_payoff` answers, for a user's own task suite, model and recipe:

1. **The truth.** Under identical conditions (one :class:`~stgmtl.specialise.TrainConfig`; each
   seed pairs the initialisation and the data order of every run), it trains one network per
   task, one per pair of tasks (all pairs, or a seeded sample with ``max_pairs``) and one for all
   tasks; for ``T <= 5`` every subset of tasks (the exhaustive tier). The gain of partner ``j``
   for task ``i`` is the relative decrease of ``i``'s test loss against its single-task network;
   the seed spread of single-task losses is the noise floor (:mod:`~stgmtl.payoff.truth`).
2. **The signals.** Each affinity signal is recorded in a run under the same conditions as the
   all-task network of its seed (:mod:`~stgmtl.payoff.recording`; one run per signal, so each
   has a measured recording cost), and scored against the test truth: rank correlations with
   bootstrap intervals and a permutation test, top-1 partner accuracy, sign accuracy on decided
   pairs (:mod:`~stgmtl.payoff.scoring`). Controls: a random matrix and the label statistics.
3. **The payoff.** For each ``k`` the partition that each signal implies under the one common
   selector (:func:`~stgmtl.payoff.search.partition_from_affinity`), the partition the
   *validation* truth implies, and random partitions are trained with each architecture and
   scored against single-task networks and one model for all tasks
   (:mod:`~stgmtl.payoff.tables`); in the exhaustive tier every partition is scored,
   so the best partition and the regret are exact.
4. **The choice.** :func:`stgmtl.payoff.recommendation.recommend` picks, on validation and
   within a budget, the networks to train (Standley's budgeted selection over every trained
   system) and reports them on test, or says that one model is best.

Every run is independent and cached (:mod:`~stgmtl.payoff.runs`): a rerun, or a rerun with a
new signal, trains only what is new. Before training, the plan and a time estimate (from timed
calibration steps) are printed; a progress bar counts runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from stgmtl._checks import check_choice, check_float, check_int, fail
from stgmtl.affinity import TaskAffinity
from stgmtl.payoff.execution import estimate_seconds, run_all
from stgmtl.payoff.partitions import build_partitions, grouping_runs
from stgmtl.payoff.plan import (
    ARCHITECTURES,
    calibration_specs,
    plan_payoff,
    resolve_truth,
)
from stgmtl.payoff.recommendation import recommend
from stgmtl.payoff.recording import (
    RecordResult,
    default_signals,
    execute_recording,
    label_control,
    random_affinity,
    record_signals,
)
from stgmtl.payoff.runs import RunContext, RunResult, factory_identity, is_cached
from stgmtl.payoff.scoring import score_signals
from stgmtl.payoff.splits import Splits, data_fingerprint
from stgmtl.payoff.tables import (
    PayoffResult,
    payoff_summary,
    payoff_table,
    runs_table,
    soft_vs_hard,
)
from stgmtl.payoff.truth import GroundTruth, ground_truth
from stgmtl.specialise.data import targets_of
from stgmtl.specialise.training import TrainConfig

__all__ = ["run_payoff"]


def _workers(executor: Any) -> int:
    if executor is None:
        return 1
    n = getattr(executor, "_max_workers", None)
    return int(n) if isinstance(n, int) and n > 0 else 1


def _gather_recordings(
    jobs: list[tuple[tuple[str, ...], int]],
    ctx: RunContext,
    recorder: Callable[..., dict[str, TaskAffinity]],
    executor: Any,
    progress: bool,
) -> list[RecordResult]:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(jobs),
        disable=not progress or not jobs,
        desc="signals",
        unit="run",
        dynamic_ncols=True,
    )
    try:
        if executor is None:
            out = []
            for sigs, seed in jobs:
                out.append(execute_recording(sigs, seed, ctx, recorder))
                bar.update(1)
            return out
        futures = [
            executor.submit(execute_recording, sigs, seed, ctx, recorder) for sigs, seed in jobs
        ]
        results = []
        for f in futures:
            results.append(f.result())
            bar.update(1)
        return results
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------
# the harness


def run_payoff(
    data: Splits | Callable[[], Splits],
    factory: Any,
    recipe: TrainConfig,
    out: str | Path | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    truth: str = "auto",
    max_pairs: int | None = None,
    singles: bool | None = None,
    signals: Sequence[str] | Mapping[str, TaskAffinity] | None = None,
    signal_seeds: Sequence[int] | None = None,
    recorder: Callable[..., dict[str, TaskAffinity]] = record_signals,
    record_separately: bool = True,
    ks: Sequence[int] = (2, 3),
    architectures: Sequence[str] = ("network",),
    random_partitions: int = 3,
    target_entropy: float = 0.3,
    budget: float | None = None,
    executor: Any = None,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    factory_id: str | None = None,
    n_bootstrap: int = 1000,
    n_permutations: int = 1000,
    column: str = "loss",
    progress: bool = True,
    random_state: int = 0,
    log: Callable[[str], None] | None = print,
) -> PayoffResult:
    """Train the truth, record and score signals, train their groupings, recommend one.

    Parameters
    ----------
    data : Splits or callable
        Train / validation / test splits of one suite, or a zero-argument callable returning
        them (picklable, for remote executors: workers then load the data themselves).
    factory : callable
        ``factory(num_tasks, width) -> nn.Module``; a
        :class:`~stgmtl.specialise.branched.TrunkBranchFactory` for ``"branched"``.
    recipe : TrainConfig
        Training of every run (its seed is replaced by each run's).
    out : path, optional
        Output folder: the :class:`~stgmtl.payoff.tables.PayoffResult` is saved in
        ``<out>/result`` and the run cache is ``<out>/cache`` (unless ``cache_dir`` is given).
    seeds : sequence of int
        Training seeds (at least 2 for a noise floor).
    truth : {"auto", "subsets", "pairs", "none"}
        Ground-truth runs (see :data:`TRUTH_MODES`).
    max_pairs : int, optional
        With ``truth="pairs"``: train a seeded sample of this many pairs.
    singles : bool, optional
        Train single-task networks (default: whenever there is a truth, or ``T <= 30``).
    signals : sequence of str or mapping, optional
        Signal names to record with ``recorder``, or precomputed ``{name: TaskAffinity}``.
        Default: every signal of :func:`stgmtl.record_affinity` the recipe can record
        (:func:`~stgmtl.payoff.recording.default_signals`). ``"label"`` needs no training:
        it is computed from the training labels (:func:`~stgmtl.payoff.recording.label_control`)
        and always present as a control, with ``"random"``.
    signal_seeds : sequence of int, optional
        Seeds of the recording runs (default: the first seed). A grouping trained on seed ``s``
        uses the signals recorded on ``s`` when there are some, else those of the first
        signal seed.
    recorder : callable
        ``recorder(train, factory, recipe, signals) -> {name: TaskAffinity}``
        (default :func:`~stgmtl.payoff.recording.record_signals`).
    record_separately : bool
        One recording run per probe signal (each gets its own recording cost) and one for the
        free signals read from data maps together, instead of one run for all.
    ks : sequence of int
        Numbers of groups.
    architectures : sequence of str
        How partitions are trained: any of :data:`ARCHITECTURES`.
    random_partitions : int
        Random partitions per ``k`` (and per seed).
    target_entropy : float
        Mean normalised membership entropy of ``"separate-soft"`` (see
        :mod:`~stgmtl.payoff.softness`).
    budget : float, optional
        Inference budget of the recommendation, in parameters of one model for all tasks
        (default ``max(ks)`` with ``"network"`` partitions, else 1).
    executor : concurrent.futures-style executor, optional
        Runs go through ``executor.submit``; default one by one in this process.
    threads : int, optional
        torch threads inside each run (1 for process pools on a few cores).
    cache_dir : path, optional
        Run cache (default ``<out>/cache``, or ``stgmtl-payoff-cache`` without ``out``).
    factory_id : str, optional
        Stable identity of ``factory`` for the cache (default
        :func:`~stgmtl.payoff.runs.factory_identity`).
    n_bootstrap, n_permutations : int
        Resamples of the signal scores.
    column : str
        The per-task loss (``"loss"``: the training objective; ``"bce"``: plain BCE).
    progress : bool
    random_state : int
        Seeds pair sampling, random partitions, the random control and the bootstrap.
    log : callable or None
        Where the plan and progress lines go (default ``print``).

    Returns
    -------
    PayoffResult
    """
    say = log if log is not None else (lambda _msg: None)
    seeds, ks, splits = _checked_arguments(
        data, seeds, ks, architectures, random_partitions, target_entropy
    )
    names = splits.task_names()
    t = len(names)
    mode = resolve_truth(truth, t)
    singles = (mode != "none" or t <= 30) if singles is None else bool(singles)
    if signals is None:
        signals = default_signals(recipe)
    precomputed = dict(signals) if isinstance(signals, Mapping) else {}
    # the label statistic needs no training run: it is a control computed from the labels
    to_record = [] if precomputed else [str(s) for s in signals if s != "label"]
    signal_seeds = [seeds[0]] if signal_seeds is None else [int(s) for s in signal_seeds]
    cache = (
        Path(cache_dir)
        if cache_dir is not None
        else (Path(out) / "cache" if out is not None else Path("stgmtl-payoff-cache"))
    )
    ctx = _context(data, splits, factory, recipe, cache, factory_id, threads)
    controls = _controls(splits, names, mode, signals, bool(precomputed), random_state)
    n_sources = (
        len(to_record) + len(set(precomputed) | set(controls)) + (1 if mode == "pairs" else 0)
    )
    plan = plan_payoff(
        names,
        seeds=seeds,
        truth=mode,
        max_pairs=max_pairs,
        singles=singles,
        signals=to_record,
        signal_seeds=signal_seeds,
        record_separately=record_separately,
        ks=ks,
        architectures=architectures,
        random_partitions=random_partitions,
        n_sources=n_sources,
        random_state=random_state,
    )
    workers = _workers(executor)
    estimates = estimate_seconds(calibration_specs(plan), ctx)
    plan.cached = {s for s in plan.truth if is_cached(s, ctx)}
    say(f"{t} tasks, seeds {seeds}, truth {mode!r}; cache {cache}")
    say(plan.describe(estimates, workers))
    t0 = time.perf_counter()
    truth_results = run_all(plan.truth, ctx, executor=executor, progress=progress, desc="truth")
    recs = _gather_recordings(plan.recordings, ctx, recorder, executor, progress)
    say(f"truth and signals done ({time.perf_counter() - t0:.0f} s)")

    gt = (
        {s: ground_truth(truth_results, names, split=s, column=column) for s in ("val", "test")}
        if mode != "none" and singles
        else {}
    )
    by_seed, costs = _signals_by_seed(recs, truth_results, names)
    first = signal_seeds[0]
    sig_first = dict(precomputed) or dict(by_seed.get(first, {}))
    for name, aff in controls.items():
        sig_first.setdefault(name, aff)
    partitions = build_partitions(
        names,
        ks,
        seeds,
        signal_seeds,
        by_seed,
        precomputed,
        controls,
        gt,
        mode,
        random_partitions,
        random_state,
    )
    specs, part_rows = grouping_runs(partitions, architectures, names, target_entropy, singles)
    grouped_results = run_all(specs, ctx, executor=executor, progress=progress, desc="groupings")
    say(f"groupings done ({time.perf_counter() - t0:.0f} s)")
    result = _assemble(
        names,
        truth_results,
        grouped_results,
        part_rows,
        gt,
        sig_first,
        costs,
        column,
        n_bootstrap,
        n_permutations,
        random_state,
    )
    result.settings = _settings(
        seeds=seeds,
        mode=mode,
        max_pairs=max_pairs,
        singles=singles,
        signals=list(precomputed) or to_record,
        controls=list(controls),
        signal_seeds=signal_seeds,
        ks=ks,
        architectures=architectures,
        random_partitions=random_partitions,
        target_entropy=target_entropy,
        recipe=recipe,
        ctx=ctx,
        column=column,
        budget=budget,
        seconds=time.perf_counter() - t0,
        cache=cache,
    )
    rec = recommend(result)
    result.selection = rec.per_budget
    result.recommendation = rec.to_dict()
    say(rec.message)
    if out is not None:
        result.save(Path(out) / "result")
        say(f"saved {Path(out) / 'result'}")
    return result


def _checked_arguments(
    data: Splits | Callable[[], Splits],
    seeds: Sequence[int],
    ks: Sequence[int],
    architectures: Sequence[str],
    random_partitions: int,
    target_entropy: float,
) -> tuple[list[int], list[int], Splits]:
    """Check :func:`run_payoff`'s arguments before any work; return seeds, ks and the splits."""
    seeds = [check_int("seeds", s, low=0) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise fail("seeds", "distinct seeds", seeds)
    ks = sorted({check_int("ks", k, low=1) for k in ks})
    for a in architectures:
        check_choice("architectures", a, ARCHITECTURES)
    check_int("random_partitions", random_partitions, low=0)
    check_float("target_entropy", target_entropy, low=0.0, high=0.999, low_open=True)
    splits = data if isinstance(data, Splits) else data()
    if not isinstance(splits, Splits):
        raise fail(
            "data", "Splits or a callable returning Splits", type(splits).__name__, error=TypeError
        )
    t = len(splits.task_names())
    if max(ks) > t:
        raise fail("ks", f"numbers of groups <= T = {t}", ks)
    return seeds, ks, splits


def _context(
    data: Splits | Callable[[], Splits],
    splits: Splits,
    factory: Any,
    recipe: TrainConfig,
    cache: Path,
    factory_id: str | None,
    threads: int | None,
) -> RunContext:
    """What every run needs: the data (the callable itself, so workers load it), the factory and
    recipe, the cache, and the fingerprints that key the cache."""
    return RunContext(
        data if not isinstance(data, Splits) else splits,
        factory,
        recipe,
        str(cache),
        data_fingerprint(splits),
        factory_id or factory_identity(factory),
        threads,
    )


def _controls(
    splits: Splits,
    names: list[str],
    mode: str,
    signals: Any,
    precomputed: bool,
    random_state: Any,
) -> dict[str, TaskAffinity]:
    """The controls for scoring signals against the truth.

    The label statistic needs no training (also a grouping source when asked for at the group
    level); a random matrix only where there is a truth (without one, random partitions are the
    control).
    """
    controls: dict[str, TaskAffinity] = {}
    if mode != "none" or (not precomputed and "label" in signals):
        controls["label"] = label_control(targets_of(splits.train), names)
    if mode != "none":
        controls["random"] = random_affinity(names, random_state)
    return controls


def _settings(
    *,
    seeds: list[int],
    mode: str,
    max_pairs: int | None,
    singles: bool,
    signals: list[str],
    controls: list[str],
    signal_seeds: list[int],
    ks: list[int],
    architectures: Sequence[str],
    random_partitions: int,
    target_entropy: float,
    recipe: TrainConfig,
    ctx: RunContext,
    column: str,
    budget: float | None,
    seconds: float,
    cache: Path,
) -> dict[str, Any]:
    """The settings a :class:`PayoffResult` records (what was run, on what, how long)."""
    return {
        "seeds": seeds,
        "truth": mode,
        "max_pairs": max_pairs,
        "singles": singles,
        "signals": signals,
        "controls": controls,
        "signal_seeds": signal_seeds,
        "ks": ks,
        "architectures": list(architectures),
        "random_partitions": random_partitions,
        "target_entropy": target_entropy,
        "recipe": {k: v for k, v in vars(recipe).items()},
        "factory": ctx.factory_id,
        "data": ctx.fingerprint,
        "column": column,
        "budget": budget
        if budget is not None
        else (float(max(ks)) if "network" in architectures else 1.0),
        "seconds": seconds,
        "cache": str(cache),
    }


def _signals_by_seed(
    recs: list[RecordResult], truth_results: list[RunResult], names: list[str]
) -> tuple[dict[int, dict[str, TaskAffinity]], dict[str, dict[str, float]]]:
    plain = {
        r.spec.seed: r.train_seconds
        for r in truth_results
        if r.spec.kind == "network" and len(r.spec.tasks) == len(names)
    }
    by_seed: dict[int, dict[str, TaskAffinity]] = {}
    costs: dict[str, dict[str, float]] = {}
    for r in recs:
        by_seed.setdefault(r.seed, {}).update(r.signals)
        for name in r.signals:
            c = costs.setdefault(
                name,
                {
                    "seconds": 0.0,
                    "plain_seconds": 0.0,
                    "runs": 0.0,
                    "together": float(len(r.signals) > 1),
                },
            )
            c["seconds"] += r.seconds
            c["plain_seconds"] += plain.get(r.seed, float("nan"))
            c["runs"] += 1
    return by_seed, costs


def _assemble(
    names: list[str],
    truth_results: list[RunResult],
    grouped_results: list[RunResult],
    part_rows: list[dict[str, Any]],
    gt: dict[str, GroundTruth],
    signals: dict[str, TaskAffinity],
    costs: dict[str, dict[str, float]],
    column: str,
    n_bootstrap: int,
    n_permutations: int,
    random_state: int,
) -> PayoffResult:
    runs, systems = runs_table([*truth_results, *grouped_results])
    runs = runs.unique(subset=["key", "split", "task"], keep="first", maintain_order=True)
    systems = systems.unique(subset=["system"], keep="first", maintain_order=True)
    partitions = pl.DataFrame(part_rows).unique(maintain_order=True)
    payoff = payoff_table(runs, partitions, names, column=column)
    payoff = _add_val_best(payoff)
    summary = payoff_summary(payoff)
    truth_tab = (
        pl.concat([g.to_frame().with_columns(pl.lit(s).alias("split")) for s, g in gt.items()])
        if gt
        else pl.DataFrame()
    )
    scores = pl.DataFrame()
    if "test" in gt and signals:
        scores = score_signals(
            signals,
            gt["test"],
            n_bootstrap=n_bootstrap,
            n_permutations=n_permutations,
            random_state=random_state,
        )
        ceiling = gt["test"].reliability()
        scores = scores.with_columns(
            pl.lit(ceiling["seed_spearman"]).alias("truth_seed_spearman"),
            pl.lit(ceiling["ceiling"]).alias("truth_ceiling"),
            pl.col("signal").is_in(["random", "label"]).alias("control"),
            pl.col("signal")
            .map_elements(lambda s: _cost(costs, s), return_dtype=pl.Float64)
            .alias("recording_cost"),
        )
    return PayoffResult(
        task_names=names,
        settings={},
        runs=runs,
        systems=systems,
        partitions=partitions,
        payoff=payoff,
        summary=summary,
        truth=truth_tab,
        signal_scores=scores,
        soft_vs_hard=soft_vs_hard(summary),
        signals=signals,
    )


def _cost(costs: dict[str, dict[str, float]], name: str) -> float:
    c = costs.get(name)
    if not c or not c["runs"] or not math.isfinite(c["plain_seconds"]) or c["plain_seconds"] <= 0:
        return 0.0 if name in ("label", "random") else float("nan")
    return c["seconds"] / c["plain_seconds"]


def _add_val_best(payoff: pl.DataFrame) -> pl.DataFrame:
    """Copy the exhaustive tier's best partition on validation as source 'exhaustive (val-best)'."""
    if payoff.height == 0 or "exhaustive" not in payoff["source"].to_list():
        return payoff
    ex = payoff.filter(pl.col("source") == "exhaustive")
    val = (
        ex.filter(pl.col("split") == "val")
        .group_by("partition", "k")
        .agg(pl.col("gain_vs_one").mean())
    )
    best = val.sort("gain_vs_one", descending=True).group_by("k").first()
    chosen = ex.join(best.select("partition"), on="partition").with_columns(
        pl.lit("exhaustive (val-best)").alias("source")
    )
    return pl.concat([payoff, chosen])
