"""Does the grouping pay off? The harness that trains the truth, and groupings chosen by it.

:func:`run_payoff` answers, for a user's own task suite, model and recipe:

1. **The truth.** Under identical conditions (one :class:`~stgmtl.specialise.TrainConfig`; each
   seed pairs the initialisation and the data order of every run), it trains one network per
   task, one per pair of tasks (all pairs, or a seeded sample with ``max_pairs``) and one for all
   tasks; for ``T <= 5`` every subset of tasks (the exhaustive tier). The gain of partner ``j``
   for task ``i`` is the relative decrease of ``i``'s test loss against its single-task network;
   the seed spread of single-task losses is the noise floor (:mod:`~stgmtl.specialise.truth`).
2. **The signals.** Each affinity signal is recorded in a run under the same conditions as the
   all-task network of its seed (:mod:`~stgmtl.specialise.recording`; one run per signal, so each
   has a measured recording cost), and scored against the test truth: rank correlations with
   bootstrap intervals and a permutation test, top-1 partner accuracy, sign accuracy on decided
   pairs (:mod:`~stgmtl.specialise.scoring`). Controls: a random matrix and the label statistics.
3. **The payoff.** For each ``k`` the partition that each signal implies under the one common
   selector (:func:`~stgmtl.specialise.selection.partition_from_affinity`), the partition the
   *validation* truth implies, and random partitions are trained with each architecture and
   scored against single-task networks and one model for all tasks
   (:mod:`~stgmtl.specialise.payoff_tables`); in the exhaustive tier every partition is scored,
   so the best partition and the regret are exact.
4. **The choice.** :func:`stgmtl.specialise.recommend.recommend` picks, on validation and
   within a budget, the networks to train (Standley's budgeted selection over every trained
   system) and reports them on test, or says that one model is best.

Every run is independent and cached (:mod:`~stgmtl.specialise.runs`): a rerun, or a rerun with a
new signal, trains only what is new. Before training, the plan and a time estimate (from timed
calibration steps) are printed; a progress bar counts runs.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import check_choice, check_float, check_int, fail
from stgmtl.affinity import TaskAffinity
from stgmtl.grouping import TaskGroups
from stgmtl.specialise.data import targets_of
from stgmtl.specialise.payoff_tables import (
    PayoffResult,
    payoff_summary,
    payoff_table,
    runs_table,
    soft_vs_hard,
    system_id,
)
from stgmtl.specialise.recommend import recommend
from stgmtl.specialise.recording import (
    FREE_SIGNALS,
    RecordResult,
    execute_recording,
    label_affinity,
    random_affinity,
    record_signals,
)
from stgmtl.specialise.runs import (
    RunContext,
    RunResult,
    RunSpec,
    Splits,
    data_fingerprint,
    estimate_seconds,
    factory_identity,
    is_cached,
    run_all,
)
from stgmtl.specialise.scoring import score_signals
from stgmtl.specialise.selection import partition_from_affinity, random_partition, set_partitions
from stgmtl.specialise.softness import soft_memberships
from stgmtl.specialise.training import TrainConfig
from stgmtl.specialise.truth import GroundTruth, ground_truth

__all__ = ["ARCHITECTURES", "TRUTH_MODES", "PayoffPlan", "plan_payoff", "run_payoff"]

#: How a partition is trained (see :mod:`stgmtl.specialise.payoff_tables`).
ARCHITECTURES = ("network", "separate", "separate-soft", "branched")
#: What ground truth is trained: every subset (exhaustive tier), pairs, or none; ``"auto"`` is
#: ``"subsets"`` for ``T <= 5``, ``"pairs"`` for ``T <= 30``, else ``"none"``.
TRUTH_MODES = ("auto", "subsets", "pairs", "none")


# --------------------------------------------------------------------------------------------
# the plan


def _network(tasks: Sequence[str], order: Mapping[str, int], seed: int) -> RunSpec:
    return RunSpec("network", tuple(sorted(tasks, key=order.__getitem__)), seed=seed)


class PayoffPlan:
    """The runs of one harness call before the signals are known (see :func:`plan_payoff`).

    Attributes
    ----------
    truth : list of RunSpec
        Single-task, pair / subset and all-task networks, per seed.
    recordings : list of (tuple of str, int)
        ``(signals, seed)`` per recording run.
    grouped_counts : dict
        ``architecture -> number of runs`` planned for the partitions (an upper bound: runs
        that coincide are trained once).
    examples : list of RunSpec
        One grouped run per (architecture, k), for the time estimate.
    """

    def __init__(self) -> None:
        self.truth: list[RunSpec] = []
        self.recordings: list[tuple[tuple[str, ...], int]] = []
        self.grouped_counts: dict[str, int] = {}
        self.examples: list[RunSpec] = []
        self.cached: set[RunSpec] = set()

    def describe(self, estimates: Mapping[RunSpec, float] | None = None, workers: int = 1) -> str:
        """Text of the plan, with the estimate when given."""
        sizes: dict[int, int] = {}
        for s in self.truth:
            sizes[len(s.tasks)] = sizes.get(len(s.tasks), 0) + 1
        lines = ["plan:"]
        for n in sorted(sizes):
            lines.append(f"  truth: {sizes[n]} network runs on {n} task(s)")
        if self.cached:
            lines.append(f"  ({len(self.cached)} truth runs already in the cache)")
        lines.append(f"  signals: {len(self.recordings)} recording runs")
        for arch, c in self.grouped_counts.items():
            lines.append(f"  groupings: up to {c} {arch} runs")
        if estimates is not None:
            total = self.estimate(estimates, workers)
            lines.append(
                f"  estimated time: {total / 60:.1f} min on {workers} worker(s) "
                "(from timed calibration steps; an upper bound when groupings coincide "
                "or are cached)"
            )
        return "\n".join(lines)

    def estimate(self, estimates: Mapping[RunSpec, float], workers: int = 1) -> float:
        """Seconds of the whole plan (cached runs excluded by the caller), over ``workers``."""
        by_sig = {(s.kind, len(s.tasks), s.k): v for s, v in estimates.items()}
        total = sum(
            by_sig.get((s.kind, len(s.tasks), s.k), 0.0) for s in self.truth if s not in self.cached
        )
        n_all = max((len(s.tasks) for s in self.truth), default=0)
        rec = by_sig.get(("network", n_all, 1), 0.0) * 1.3  # probes: about 1.3x a plain run
        total += rec * len(self.recordings)
        for arch, c in self.grouped_counts.items():
            ex = [v for s, v in estimates.items() if s in self.examples and _arch(s) == arch]
            total += c * (float(np.mean(ex)) if ex else 0.0)
        return total / max(workers, 1)


def _arch(spec: RunSpec) -> str:
    if spec.kind == "separate" and spec.membership:
        return "separate-soft"
    return spec.kind if spec.kind != "network" else "network"


def _balanced(names: Sequence[str], k: int) -> list[list[str]]:
    return [list(names[i::k]) for i in range(k)]


def plan_payoff(
    task_names: Sequence[str],
    *,
    seeds: Sequence[int],
    truth: str,
    max_pairs: int | None,
    singles: bool,
    signals: Sequence[str],
    signal_seeds: Sequence[int],
    record_separately: bool,
    ks: Sequence[int],
    architectures: Sequence[str],
    random_partitions: int,
    n_sources: int,
    random_state: int = 0,
) -> PayoffPlan:
    """The runs :func:`run_payoff` will train, before the signals are recorded."""
    names = list(task_names)
    order = {t: i for i, t in enumerate(names)}
    t = len(names)
    plan = PayoffPlan()
    pairs = [list(p) for p in itertools.combinations(names, 2)]
    if truth == "pairs" and max_pairs is not None and max_pairs < len(pairs):
        rng = np.random.default_rng([random_state, 7])
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
    for seed in seeds:
        sets: list[list[str]] = [[n] for n in names] if singles else []
        if truth == "pairs":
            sets += pairs
        elif truth == "subsets":
            sets += [list(c) for r in range(2, t) for c in itertools.combinations(names, r)]
        sets.append(names)
        seen = set()
        for s in sets:
            spec = _network(s, order, seed)
            if spec not in seen:
                seen.add(spec)
                plan.truth.append(spec)
    if signals:
        sig_sets = [(s,) for s in signals] if record_separately else [tuple(signals)]
        plan.recordings = [(ss, seed) for seed in signal_seeds for ss in sig_sets]
    per_k = n_sources + random_partitions
    for arch in architectures:
        runs = 0
        for k in ks:
            runs += per_k * (k if arch == "network" else 1) * len(seeds)
            if arch == "network":
                plan.examples.append(_network(names[: max(1, t // k)], order, seeds[0]))
            else:
                groups = tuple(tuple(g) for g in _balanced(names, k))
                memb: tuple[tuple[float, ...], ...] = ()
                if arch == "separate-soft":
                    w = np.full((t, k), 0.1 / max(k - 1, 1))
                    for c, g in enumerate(groups):
                        w[[order[x] for x in g], c] = 0.9 if k > 1 else 1.0
                    memb = tuple(tuple(r) for r in w)
                kind = "separate" if arch.startswith("separate") else arch
                plan.examples.append(RunSpec(kind, tuple(names), groups, memb, seeds[0]))
        plan.grouped_counts[arch] = runs
    return plan


# --------------------------------------------------------------------------------------------
# helpers


def _resolve_truth(truth: str, t: int) -> str:
    check_choice("truth", truth, TRUTH_MODES)
    if truth != "auto":
        return truth
    return "subsets" if t <= 5 else "pairs" if t <= 30 else "none"


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


def _partition_rows(
    pid: str, source: str, k: int, arch: str, labels: np.ndarray, names: list[str], sids: list[str]
) -> list[dict[str, Any]]:
    return [
        {
            "partition": pid,
            "source": source,
            "k": int(k),
            "architecture": arch,
            "task": t,
            "group": int(labels[i]),
            "system": sids[i],
        }
        for i, t in enumerate(names)
    ]


class _Partition:
    def __init__(
        self,
        pid: str,
        source: str,
        k: int,
        labels: np.ndarray,
        seeds: list[int],
        groups: TaskGroups | None = None,
    ) -> None:
        self.pid, self.source, self.k, self.labels = pid, source, k, np.asarray(labels)
        self.seeds, self.groups = seeds, groups


def _specs_for(
    part: _Partition, arch: str, names: list[str], order: dict[str, int], target_entropy: float
) -> tuple[list[RunSpec], list[str]] | None:
    """Runs that train ``part`` with ``arch`` on each of its seeds, and each task's system id."""
    groups = [[names[i] for i in np.flatnonzero(part.labels == g)] for g in np.unique(part.labels)]
    if arch == "network":
        specs = [_network(g, order, s) for s in part.seeds for g in groups]
        by_task = {t: system_id(_network(g, order, 0)) for g in groups for t in g}
        return specs, [by_task[t] for t in names]
    memb: tuple[tuple[float, ...], ...] = ()
    if arch == "separate-soft":
        if part.groups is None or part.groups.method == "hard":
            return None  # random, exhaustive or structureless partitions have no distances
        w, _ = soft_memberships(part.groups, target_entropy)
        # columns in the order of `groups` (labels sorted), rows in task order
        w = w[:, np.unique(part.labels)]
        w = w / w.sum(1, keepdims=True)
        memb = tuple(tuple(float(v) for v in row) for row in w)
    kind = "separate" if arch.startswith("separate") else arch
    gt = tuple(tuple(g) for g in groups)
    specs = [RunSpec(kind, tuple(names), gt, memb, s) for s in part.seeds]
    sid = system_id(specs[0])
    return specs, [sid] * len(names)


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
    signals: Sequence[str] | Mapping[str, TaskAffinity] = FREE_SIGNALS,
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
        Output folder: the :class:`~stgmtl.specialise.payoff_tables.PayoffResult` is saved in
        ``<out>/result`` and the run cache is ``<out>/cache`` (unless ``cache_dir`` is given).
    seeds : sequence of int
        Training seeds (at least 2 for a noise floor).
    truth : {"auto", "subsets", "pairs", "none"}
        Ground-truth runs (see :data:`TRUTH_MODES`).
    max_pairs : int, optional
        With ``truth="pairs"``: train a seeded sample of this many pairs.
    singles : bool, optional
        Train single-task networks (default: whenever there is a truth, or ``T <= 30``).
    signals : sequence of str or mapping
        Signal names to record with ``recorder``, or precomputed ``{name: TaskAffinity}``.
    signal_seeds : sequence of int, optional
        Seeds of the recording runs (default: the first seed). A grouping trained on seed ``s``
        uses the signals recorded on ``s`` when there are some, else those of the first
        signal seed.
    recorder : callable
        ``recorder(train, factory, recipe, signals) -> {name: TaskAffinity}``
        (default :func:`~stgmtl.specialise.recording.record_signals`).
    record_separately : bool
        One recording run per signal (each gets its own recording cost) instead of one run.
    ks : sequence of int
        Numbers of groups.
    architectures : sequence of str
        How partitions are trained: any of :data:`ARCHITECTURES`.
    random_partitions : int
        Random partitions per ``k`` (and per seed).
    target_entropy : float
        Mean normalised membership entropy of ``"separate-soft"`` (see
        :mod:`~stgmtl.specialise.softness`).
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
        :func:`~stgmtl.specialise.runs.factory_identity`).
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
    names = splits.task_names()
    t = len(names)
    if max(ks) > t:
        raise fail("ks", f"numbers of groups <= T = {t}", ks)
    mode = _resolve_truth(truth, t)
    singles = (mode != "none" or t <= 30) if singles is None else bool(singles)
    precomputed = dict(signals) if isinstance(signals, Mapping) else {}
    to_record = [] if precomputed else [str(s) for s in signals]
    signal_seeds = [seeds[0]] if signal_seeds is None else [int(s) for s in signal_seeds]
    cache = (
        Path(cache_dir)
        if cache_dir is not None
        else (Path(out) / "cache" if out is not None else Path("stgmtl-payoff-cache"))
    )
    ctx = RunContext(
        data if not isinstance(data, Splits) else splits,
        factory,
        recipe,
        str(cache),
        data_fingerprint(splits),
        factory_id or factory_identity(factory),
        threads,
    )
    n_sources = len(to_record) + len(precomputed) + (3 if mode != "none" else 0)
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
    estimates = estimate_seconds(_calibration(plan), ctx)
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
    # controls for scoring signals against the truth (at the group level, without a truth,
    # random partitions are the control)
    controls = (
        {
            "label": label_affinity(targets_of(splits.train), names),
            "random": random_affinity(names, random_state),
        }
        if mode != "none"
        else {}
    )
    first = signal_seeds[0]
    sig_first = dict(precomputed) or dict(by_seed.get(first, {}))
    for name, aff in controls.items():
        sig_first.setdefault(name, aff)
    partitions = _partitions(
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
    specs, part_rows = [], []
    order = {n: i for i, n in enumerate(names)}
    for part in partitions:
        for arch in architectures:
            if part.source.startswith("exhaustive") and arch != "network":
                continue
            made = _specs_for(part, arch, names, order, target_entropy)
            if made is None:
                continue
            specs += made[0]
            part_rows += _partition_rows(
                part.pid, part.source, part.k, arch, part.labels, names, made[1]
            )
    one_sid = system_id(_network(names, order, 0))
    sing = [system_id(_network([n], order, 0)) for n in names]
    part_rows += _partition_rows(
        "one model", "one model", 1, "network", np.zeros(t, int), names, [one_sid] * t
    )
    if singles:
        part_rows += _partition_rows(
            "single-task", "single-task", t, "network", np.arange(t), names, sing
        )
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
    result.settings = {
        "seeds": seeds,
        "truth": mode,
        "max_pairs": max_pairs,
        "singles": singles,
        "signals": list(precomputed) or to_record,
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
        "seconds": time.perf_counter() - t0,
        "cache": str(cache),
    }
    rec = recommend(result)
    result.selection = rec.per_budget
    result.recommendation = rec.to_dict()
    say(rec.message)
    if out is not None:
        result.save(Path(out) / "result")
        say(f"saved {Path(out) / 'result'}")
    return result


def _calibration(plan: PayoffPlan) -> list[RunSpec]:
    seen: dict[tuple[Any, ...], RunSpec] = {}
    for s in [*plan.truth, *plan.examples]:
        seen.setdefault((s.kind, len(s.tasks), s.k, bool(s.membership)), s)
    return list(seen.values())


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


def _partitions(
    names: list[str],
    ks: list[int],
    seeds: list[int],
    signal_seeds: list[int],
    by_seed: dict[int, dict[str, TaskAffinity]],
    precomputed: dict[str, TaskAffinity],
    controls: dict[str, TaskAffinity],
    gt: dict[str, GroundTruth],
    mode: str,
    random_partitions: int,
    random_state: int,
) -> list[_Partition]:
    t = len(names)
    parts: list[_Partition] = []
    sources: dict[str, dict[int, TaskAffinity]] = {}
    for name, aff in precomputed.items():
        sources[name] = {s: aff for s in seeds}
    first = signal_seeds[0]
    for seed in seeds:
        recorded = by_seed.get(seed, by_seed.get(first, {}))
        for name, aff in recorded.items():
            sources.setdefault(name, {})[seed] = aff
    for name, aff in controls.items():
        if name not in sources:
            sources[name] = {s: aff for s in seeds}
    if "val" in gt and mode == "pairs":
        val_truth = gt["val"].affinity()
        sources["truth (val)"] = {s: val_truth for s in seeds}
    for k in ks:
        for name, per_seed in sources.items():
            # one partition per distinct affinity object; trained on the seeds that use it
            by_obj: dict[int, list[int]] = {}
            objs: dict[int, TaskAffinity] = {}
            for s, aff in per_seed.items():
                by_obj.setdefault(id(aff), []).append(s)
                objs[id(aff)] = aff
            for j, (oid, ss) in enumerate(by_obj.items()):
                groups = partition_from_affinity(objs[oid], k, random_state=random_state)
                pid = f"{name}:k{k}" + (f":{j}" if len(by_obj) > 1 else "")
                parts.append(_Partition(pid, name, k, groups.labels, sorted(ss), groups))
        for r in range(random_partitions):
            lab = random_partition(t, k, random_state=np.random.default_rng([random_state, k, r]))
            parts.append(_Partition(f"random:k{k}:{r}", "random partition", k, lab, seeds))
        if mode == "subsets" and k > 1:
            for j, lab in enumerate(set_partitions(t, k)):
                parts.append(_Partition(f"exhaustive:k{k}:{j}", "exhaustive", k, lab, seeds))
    return parts


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
        scores = scores.with_columns(
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
