"""Does the grouping pay off? The harness that trains the truth, and groupings chosen by it.

:func:`run_payoff` answers, for a user's own task suite, model and recipe:

1. **The truth.** Under identical conditions (one :class:`~stgmtl.specialise.TrainConfig`;
   every run of a seed is paired: batches, dropout stream, initial weights of equal-shape
   networks, head rows seeded by task), it trains one network per task, one per pair of tasks
   (all pairs, or a seeded sample with ``max_pairs``) and one for all tasks; for ``T <= 5`` every
   subset (the exhaustive tier). Pair gains, moderated pair tests and the truth's reliability
   are in :mod:`~stgmtl.payoff.truth`.
2. **The signals.** Each affinity signal is recorded in a run under the same conditions as the
   all-task network of its seed (:mod:`~stgmtl.payoff.signal_runs`) and scored against the test
   truth (:mod:`~stgmtl.payoff.scoring`): rank correlations with bootstrap intervals, the
   Mantel p-value Holm-corrected across signals, top-1 partner accuracy, sign accuracy on
   decided pairs, and whether the truth is reliable enough to rank signals at all. Controls: a
   random matrix, the label statistics and each partner's single-task validation loss
   (``difficulty``, :func:`~stgmtl.payoff.truth.difficulty_control`: scored, not grouped).
3. **The payoff at equal budgets.** For each ``k`` the partition each signal implies under one
   common selector (:func:`~stgmtl.payoff.search.partition_from_affinity`), the partition the
   *validation* truth implies, and fixed size-matched random partitions are trained with each
   architecture of the registry (:mod:`~stgmtl.payoff.architectures`: budgets asserted) and
   scored against the one models at each budget and the single-task networks
   (:mod:`~stgmtl.payoff.tables`).
4. **Choose, then confirm.** :func:`~stgmtl.payoff.recommendation.recommend` chooses on
   validation the budget-matched one model (of any variant trained: with
   ``one_model_variants=("plain", "uncertainty")`` also the loss-balanced one model, Kendall
   et al.'s uncertainty weighting, at every budget) and the candidate set of systems;
   :func:`~stgmtl.payoff.confirm.confirm` retrains both on fresh seeds, and a one-sided paired
   t-test on their test losses gives the verdict.

Every run is independent and cached (:mod:`~stgmtl.payoff.runs`): a rerun, or a rerun with a
new signal, trains only what is new. Before training, the plan and a time estimate (from timed
calibration steps) are printed; a progress bar counts runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from stgmtl._checks import fail
from stgmtl.affinity import TaskAffinity
from stgmtl.payoff.confirm import confirm, confirmation_specs, fresh_seeds
from stgmtl.payoff.execution import estimate_seconds, run_all
from stgmtl.payoff.partitions import build_partitions, grouping_runs
from stgmtl.payoff.plan import calibration_specs, plan_payoff, resolve_truth
from stgmtl.payoff.recommendation import recommend
from stgmtl.payoff.runs import RunContext, RunResult, factory_identity, is_cached
from stgmtl.payoff.scoring import score_signals
from stgmtl.payoff.settings import PayoffSettings
from stgmtl.payoff.signal_runs import (
    RecordResult,
    default_signals,
    execute_recording,
    label_control,
    random_affinity,
    record_signals,
)
from stgmtl.payoff.splits import Splits, data_fingerprint
from stgmtl.payoff.tables import (
    PayoffResult,
    payoff_summary,
    payoff_table,
    runs_table,
    soft_vs_hard,
    system_id,
)
from stgmtl.payoff.truth import GroundTruth, difficulty_control, ground_truth
from stgmtl.specialise.data import targets_of
from stgmtl.specialise.training import TrainConfig

__all__ = ["PayoffSettings", "assemble", "run_payoff"]


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
    settings: PayoffSettings | None = None,
    *,
    executor: Any = None,
    recorder: Callable[..., dict[str, TaskAffinity]] = record_signals,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    **overrides: Any,
) -> PayoffResult:
    """Train the truth, record and score signals, train their groupings, choose, confirm.

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
        Output folder: the result is saved in ``<out>/result`` and the run cache is
        ``<out>/cache`` (unless ``settings.cache_dir`` is given).
    settings : PayoffSettings, optional
        What to train and how to decide (default ``PayoffSettings()``).
    executor : concurrent.futures-style executor, optional
        Runs go through ``executor.submit``; default one by one in this process.
    recorder : callable
        ``recorder(train, factory, recipe, signals) -> {name: TaskAffinity}``.
    progress : bool
    log : callable or None
        Where the plan and progress lines go (default ``print``).
    **overrides
        Fields of :class:`PayoffSettings` to replace (``run_payoff(..., seeds=(0, 1))``).

    Returns
    -------
    PayoffResult
        With ``recommendation`` (the candidate chosen on validation, and the fresh-seed
        confirmation that decides the verdict).
    """
    say = log if log is not None else (lambda _msg: None)
    st = replace(settings or PayoffSettings(), **overrides)
    if getattr(recipe, "loss_weighting", "none") != "none":
        raise fail("recipe", "loss_weighting='none' (the harness trains every system, and records "
                   "the signals, with the plain recipe; the loss-balanced one model is asked for "
                   "with one_model_variants=('plain', 'uncertainty'))",
                   recipe.loss_weighting)  # fmt: skip
    splits = _splits(data)
    names = splits.task_names()
    if max(st.ks) > len(names):
        raise fail("ks", f"numbers of groups <= T = {len(names)}", list(st.ks))
    mode = resolve_truth(st.truth, len(names))
    singles = (mode != "none" or len(names) <= 30) if st.singles is None else bool(st.singles)
    signals = default_signals(recipe) if st.signals is None else st.signals
    precomputed = dict(signals) if isinstance(signals, Mapping) else {}
    if "difficulty" in signals:  # a name or a key of precomputed signals
        raise fail("signals", "names other than 'difficulty' (the harness's single-task-loss "
                   "control, scored whenever there is a truth)", "difficulty")  # fmt: skip
    to_record = [] if precomputed else [str(x) for x in signals if x != "label"]
    signal_seeds = [st.seeds[0]] if st.signal_seeds is None else [int(x) for x in st.signal_seeds]
    cache = (
        Path(st.cache_dir)
        if st.cache_dir
        else (Path(out) / "cache" if out else Path("stgmtl-payoff-cache"))
    )
    ctx = _context(data, splits, factory, recipe, cache, st.factory_id, st.threads)
    controls = _controls(splits, names, mode, signals, bool(precomputed), st.random_state)
    n_sources = len(to_record) + len(set(precomputed) | set(controls)) + (mode == "pairs")
    plan = plan_payoff(
        names, seeds=st.seeds, truth=mode, max_pairs=st.max_pairs, singles=singles,
        signals=to_record, signal_seeds=signal_seeds, record_separately=st.record_separately,
        ks=st.ks, architectures=st.architectures, random_partitions=st.random_partitions,
        n_sources=n_sources, random_state=st.random_state, budgets=st.budgets(),
        group_sizes=st.group_sizes, max_groups=st.max_groups,
        one_model_variants=st.one_model_variants,
    )  # fmt: skip
    workers = _workers(executor)
    estimates = estimate_seconds(calibration_specs(plan), ctx)  # also asserts every budget
    plan.cached = {x for x in plan.truth if is_cached(x, ctx)}
    say(f"{len(names)} tasks, seeds {list(st.seeds)}, truth {mode!r}; cache {cache}")
    say(plan.describe(estimates, workers))
    t0 = time.perf_counter()
    truth_results = run_all(plan.truth, ctx, executor=executor, progress=progress, desc="truth")
    recs = _gather_recordings(plan.recordings, ctx, recorder, executor, progress)
    say(f"truth and signals done ({time.perf_counter() - t0:.0f} s)")
    gt = (
        {x: ground_truth(truth_results, names, split=x, column=st.column) for x in ("val", "test")}
        if mode != "none" and singles
        else {}
    )
    by_seed = _signals_by_seed(recs)
    sig_first = dict(precomputed) or dict(by_seed.get(signal_seeds[0], {}))
    scored = dict(controls)
    if "val" in gt:  # scored only (not a grouping source): the validation single-task losses
        scored["difficulty"] = difficulty_control(gt["val"])
    for name, aff in scored.items():
        sig_first.setdefault(name, aff)
    partitions = build_partitions(
        names, list(st.ks), list(st.seeds), signal_seeds, by_seed, precomputed, controls, gt,
        mode, st.random_partitions, st.random_state,
    )  # fmt: skip
    specs, part_rows = grouping_runs(
        partitions, st.architectures, names, st.target_entropy, singles, st.budgets(),
        st.one_model_variants,
    )  # fmt: skip
    grouped_results = run_all(specs, ctx, executor=executor, progress=progress, desc="groupings")
    say(f"groupings done ({time.perf_counter() - t0:.0f} s)")
    explored = [*truth_results, *grouped_results]
    result = assemble(names, explored, part_rows, gt, sig_first, st)
    result.settings = _settings(st, mode, singles, list(precomputed) or to_record, scored,
                                signal_seeds, recipe, ctx, cache)  # fmt: skip
    rec = recommend(result)
    if rec.has_candidate and st.confirm_seeds:
        fresh = fresh_seeds([*st.seeds, *signal_seeds], st.confirm_seeds)
        say(f"confirming the candidate on fresh seeds {fresh}")
        specs_by = {system_id(r.spec): r.spec for r in explored}
        conf = run_all(
            confirmation_specs(rec, specs_by, fresh), ctx, executor=executor,
            progress=progress, desc="confirm",
        )  # fmt: skip
        confirm(rec, conf, fresh, column=st.column, alpha=st.alpha)
    result.settings["seconds"] = time.perf_counter() - t0
    result.selection = rec.per_budget
    result.recommendation = rec.to_dict()
    say(rec.message)
    if out is not None:
        result.save(Path(out) / "result")
        say(f"saved {Path(out) / 'result'}")
    return result


def _splits(data: Splits | Callable[[], Splits]) -> Splits:
    splits = data if isinstance(data, Splits) else data()
    if not isinstance(splits, Splits):
        raise fail(
            "data", "Splits or a callable returning Splits", type(splits).__name__, error=TypeError
        )
    return splits


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
    st: PayoffSettings,
    mode: str,
    singles: bool,
    signals: list[str],
    controls: Mapping[str, TaskAffinity],
    signal_seeds: list[int],
    recipe: TrainConfig,
    ctx: RunContext,
    cache: Path,
) -> dict[str, Any]:
    """The settings a :class:`PayoffResult` records (what was run, on what)."""
    return {
        **st.to_dict(),
        "truth": mode,
        "singles": singles,
        "signals": signals,
        "controls": list(controls),
        "signal_seeds": signal_seeds,
        "budget": st.resolved_budget(),
        "budgets": st.budgets(),
        "recipe": _recipe_dict(recipe),
        "factory": ctx.factory_id,
        "data": ctx.fingerprint,
        "cache": str(cache),
    }


def _recipe_dict(recipe: TrainConfig) -> dict[str, Any]:
    """The recipe's fields (``loss_weighting`` only when set: default settings read as before)."""
    out = dict(vars(recipe))
    if out.get("loss_weighting") == "none":
        del out["loss_weighting"]
    return out


def _signals_by_seed(recs: list[RecordResult]) -> dict[int, dict[str, TaskAffinity]]:
    by_seed: dict[int, dict[str, TaskAffinity]] = {}
    for r in recs:
        by_seed.setdefault(r.seed, {}).update(r.signals)
    return by_seed


def assemble(
    names: list[str],
    results: list[RunResult],
    part_rows: list[dict[str, Any]],
    gt: dict[str, GroundTruth],
    signals: dict[str, TaskAffinity],
    st: PayoffSettings,
) -> PayoffResult:
    """The result's tables from finished runs (built once; settings and the recommendation are
    added by :func:`run_payoff`)."""
    runs, systems = runs_table(results)
    runs = runs.unique(subset=["key", "split", "task"], keep="first", maintain_order=True)
    systems = systems.unique(subset=["system"], keep="first", maintain_order=True)
    partitions = pl.DataFrame(part_rows).unique(maintain_order=True)
    payoff = _add_val_best(payoff_table(runs, partitions, names, column=st.column))
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
            n_bootstrap=st.n_bootstrap,
            n_permutations=st.n_permutations,
            random_state=st.random_state,
            alpha=st.alpha,
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
    best = (
        val.sort(["gain_vs_one", "partition"], descending=[True, False])
        .group_by("k", maintain_order=True)
        .first()
    )
    chosen = ex.join(best.select("partition"), on="partition").with_columns(
        pl.lit("exhaustive (val-best)").alias("source")
    )
    return pl.concat([payoff, chosen])
