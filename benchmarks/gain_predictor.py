"""Does a calibrated predictor (ETAP-style) predict the gain of training tasks together?

Trains, with the payoff harness, the truth of a CIFAR-10 task suite (single-task networks, every
pair or a sample, a seeded sample of larger groups, one model for all tasks) on several seeds and
records every signal, then evaluates :mod:`stgmtl.payoff.predictor` on held-out task sets:
R^2 and Spearman with bootstrap intervals over tasks, the noise ceiling, the baselines (each raw
signal, membership only, Standley's higher-order estimate, the random control) and a learning
curve over the number of trained groups. Writes ``<results>/gain_predictor.json`` and prints the
tables. Only the training goes under the shared heavy lock; ``--analyse-only`` reads a saved
harness result (``<out>/result``).

    STGMTL_DATA=/work/shared/data PYTHONPATH=. python benchmarks/gain_predictor.py \\
        --epochs 8 --seeds 0,1,2 --group-sizes 3 --max-groups 60 --workers 2 \\
        --out runs/gain-c10

``--suite cifar100`` takes the tasks of ``--superclasses`` (default four superclasses, 20 tasks)
with the ``stgmtl payoff --suite cifar100`` preset's recipe and data (wide-cnn 0.5, 6 epochs,
10,000 training images). ``--confirm-k K`` then sends the grouping chosen from predicted gains
through the harness's choose-then-confirm path: the cross-fitted predictions of a predictor fitted
on *validation* gains (so test never chooses) become a ``predicted-gain`` affinity; its
``K``-group partition (and that of the raw signal ranking the validation gains best, and random
partitions) are trained as one
network per group (budget ``K``) on the exploration seeds, the recommendation chooses on
validation against one model at ``1x`` and ``K x`` parameters, and the choice is retrained on
fresh seeds (``stgmtl.payoff.run_payoff``; result in ``<out>-confirm``).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl.payoff.gains import group_gains, losses_from_tables, sample_groups
from stgmtl.payoff.group_features import SIGNAL_STATS, group_features
from stgmtl.payoff.predictor import (
    cross_fitted_gains,
    evaluate_predictor,
    learning_curve,
    training_table,
    within_task_scores,
)
from stgmtl.payoff.scoring import CONTROLS as SCORING_CONTROLS

#: control signals (the payoff harness's, :data:`stgmtl.payoff.scoring.CONTROLS`), never "the
#: best raw signal"
CONTROLS = tuple(f"raw:{c}" for c in SCORING_CONTROLS)
#: the learning curve refits many times: a smaller inner grid than the evaluation's default
CURVE_GRID: dict[str, list[Any]] = {
    "n_knots": [4],
    "stats": [("in_mean",), SIGNAL_STATS],
    "alpha_map": [1.0, 10.0],
    "alpha_residual": [10.0, 100.0],
}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


#: ``--suite cifar100``'s default superclasses: 20 tasks, two animal, one plant, one vehicle
CIFAR100_SUPERCLASSES = "aquatic_mammals,flowers,people,vehicles_1"


def suite(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(data factory, model factory, recipe)`` of ``--suite``: the payoff command's preset
    (:data:`stgmtl.payoff_command.PAYOFF_PRESETS`), ``--epochs`` overriding its length."""
    from stgmtl.datasets import cifar10_15_splits, cifar100_splits
    from stgmtl.models import model_factory
    from stgmtl.payoff_command import PAYOFF_PRESETS
    from stgmtl.specialise import TrainConfig

    pre = PAYOFF_PRESETS[args.suite]
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    if args.suite == "cifar10-15":
        data: Any = functools.partial(cifar10_15_splits, tasks=tasks, val_size=pre["val_size"],
                                      test_limit=pre["test_limit"])  # fmt: skip
    else:
        supers = None if tasks else [c.strip() for c in args.superclasses.split(",")]
        data = functools.partial(
            cifar100_splits, tasks=tasks, superclasses=supers, train_limit=pre["train_limit"],
            val_size=pre["val_size"], test_limit=pre["test_limit"],
        )  # fmt: skip
    epochs = args.epochs if args.epochs is not None else pre["epochs"]
    recipe = TrainConfig(width=pre["width"], epochs=epochs, batch_size=pre["batch_size"],
                         lr=pre["lr"], scheduler=pre["scheduler"])  # fmt: skip
    return data, model_factory(pre["model"]), recipe


def _pool(workers: int) -> Any:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None


def train(args: argparse.Namespace) -> Any:
    """The harness's truth and signals (``ks=(1,)``: no grouping beyond the all-task model;
    no confirmation)."""
    from stgmtl.payoff import run_payoff

    data, factory, recipe = suite(args)
    pool = _pool(args.workers)
    try:
        return run_payoff(
            data, factory, recipe, args.out, seeds=_ints(args.seeds),
            truth="pairs", max_pairs=args.max_pairs, group_sizes=_ints(args.group_sizes),
            max_groups=args.max_groups, ks=(1,), architectures=("network",),
            random_partitions=0, confirm_seeds=0, executor=pool,
            threads=1 if pool is not None else None, n_bootstrap=200, n_permutations=200,
        )  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()


def _gain_table(
    gains: pl.DataFrame, signals: dict[str, Any], names: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The gains of the trained groups (the all-task model is not a group) and their training
    table (features from ``signals``)."""
    gains = gains.filter(pl.col("size") < len(names))
    groups = [tuple(g.split("+")) for g in gains["group"].unique(maintain_order=True)]
    return gains, training_table(gains, group_features(signals, groups, names))


def _val_table(result: Any, signals: dict[str, Any]) -> pl.DataFrame:
    """The training table of the **validation** gains of the trained groups."""
    names = list(result.task_names)
    gains = group_gains(losses_from_tables(result.runs, result.systems, "val"), names)
    return _gain_table(gains, signals, names)[1]


def predicted_affinity(
    result: Any, signals: dict[str, Any], n_outer: int, random_state: int = 0
) -> Any:
    """The cross-fitted predicted pair gains, from a predictor fitted on the **validation**
    gains of the trained groups, as a ``predicted-gain`` affinity for the partition search."""
    from stgmtl.payoff.gains import pair_affinity

    names = list(result.task_names)
    cands = group_features(signals, sample_groups(names, (2,)), names)
    pred = cross_fitted_gains(_val_table(result, signals), cands, n_outer=n_outer,
                              random_state=random_state)  # fmt: skip
    return pair_affinity(pred, names)


def best_raw_on_validation(result: Any, signals: dict[str, Any]) -> str | None:
    """The recorded signal (controls excluded) whose ``in_mean`` ranks the **validation** gains
    of the trained groups best (Spearman): the raw signal the confirmation stage trains, chosen
    without the test split."""
    from stgmtl.payoff.truth import spearman

    table = _val_table(result, signals)
    y = table["gain"].to_numpy()
    rho = {
        name: spearman(table[f"{name}:in_mean"].to_numpy(), y)
        for name in signals
        if f"raw:{name}" not in CONTROLS and f"{name}:in_mean" in table.columns
    }
    rho = {k: v for k, v in rho.items() if v == v}
    return max(rho, key=lambda k: (rho[k], k)) if rho else None


def confirm_choice(
    args: argparse.Namespace, result: Any, signals: dict[str, Any]
) -> dict[str, Any]:
    """Train the ``--confirm-k`` partitions of the predicted gains and of the raw signal that
    ranks the validation gains best (one network per group, budget ``K``), choose on
    validation, confirm on fresh seeds: the test split chooses nothing."""
    from stgmtl.payoff import run_payoff

    data, factory, recipe = suite(args)
    names = data().task_names()
    if names != list(result.task_names):
        raise SystemExit(
            f"--confirm-k: the suite's tasks {names[:3]}... are not those of {args.out} "
            f"({list(result.task_names)[:3]}...): give the same --suite / --tasks"
        )
    t0 = time.perf_counter()
    chosen = {"predicted-gain": predicted_affinity(result, signals, args.outer)}
    raw = best_raw_on_validation(result, signals)
    if raw is not None:
        chosen[raw] = signals[raw]
    pool = _pool(args.workers)
    try:
        conf = run_payoff(
            data, factory, recipe, f"{args.out}-confirm", seeds=_ints(args.seeds),
            signals=chosen, truth="none", singles=False, ks=(args.confirm_k,),
            architectures=("network",), random_partitions=args.random_partitions,
            confirm_seeds=args.confirm_seeds, cache_dir=str(Path(args.out) / "cache"),
            executor=pool, threads=1 if pool is not None else None,
        )  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
    summary = conf.summary.filter(pl.col("split") == "test")
    return {
        "k": args.confirm_k,
        "signals": list(chosen),
        "recommendation": conf.recommendation,
        "summary_test": summary.to_dicts(),
        "seconds": time.perf_counter() - t0,
    }


def planted(
    task_names: list[str], noise: float, seeds: int, max_groups: int, random_state: int = 0
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A planted stand-in for the trained truth, of the real design's shape (every pair and
    ``max_groups`` triples of the tasks, ``seeds`` seeds): the gain of ``(G, i)`` is
    ``0.5 * in_mean(A)^2 - 0.15`` of a planted signal ``A`` (uniform in [-1, 1]; U-shaped, so a
    linear map of the signal cannot follow it) plus seed noise of sd ``noise``; a random
    control signal beside it. For the power of the evaluation at a given noise, not a result."""
    from stgmtl.affinity import TaskAffinity

    rng = np.random.default_rng([random_state, 23])
    t = len(task_names)
    sig = {
        "planted": TaskAffinity(task_names, rng.uniform(-1, 1, size=(t, t)), "planted"),
        "random": TaskAffinity(task_names, rng.normal(size=(t, t)), "random"),
    }
    groups = sample_groups(task_names, (2,)) + sample_groups(
        task_names, (3,), max_per_size=max_groups, random_state=random_state
    )
    feats = group_features(sig, groups, task_names)
    clean = 0.5 * feats["planted:in_mean"].to_numpy() ** 2 - 0.15
    rows = [
        feats.select("group", "size", "task").with_columns(
            pl.lit(s, dtype=pl.Int64).alias("seed"),
            pl.Series("gain", clean + noise * rng.normal(size=clean.size)),
            pl.lit("single").alias("reference"),
            pl.lit("measured").alias("origin"),
        )
        for s in range(seeds)
    ]
    return pl.concat(rows), sig


def analyse(
    runs: pl.DataFrame | None,
    systems: pl.DataFrame | None,
    signals: dict[str, Any],
    task_names: list[str],
    *,
    gains: pl.DataFrame | None = None,
    curve: list[int],
    repeats: int,
    n_outer: int,
    n_bootstrap: int,
    select_budget: float | None,
    random_state: int = 0,
) -> dict[str, Any]:
    """Evaluation, learning curve and (optionally) a selection from predicted gains, from the
    harness's tables (or from ``gains`` given directly)."""
    t0 = time.perf_counter()
    if gains is None:
        assert runs is not None and systems is not None
        gains = group_gains(losses_from_tables(runs, systems, "test"), task_names)
    gains, table = _gain_table(gains, signals, task_names)
    ev = evaluate_predictor(table, seed_gains=gains, n_outer=n_outer, n_bootstrap=n_bootstrap,
                            random_state=random_state)  # fmt: skip
    within, within_ceiling = within_task_scores(ev, gains, n_bootstrap=n_bootstrap,
                                                random_state=random_state)  # fmt: skip
    raw = [m.removeprefix("raw:") for m in ev.scores["method"].to_list() if m.startswith("raw:")]
    raw_scores = ev.scores.filter(
        pl.col("method").str.starts_with("raw:") & ~pl.col("method").is_in(list(CONTROLS))
    ).sort("spearman", descending=True, nulls_last=True)
    best_raw = raw_scores["method"][0].removeprefix("raw:") if raw_scores.height else None
    lc = learning_curve(
        table,
        [n for n in curve if n < table["group"].n_unique()],
        repeats=repeats,
        n_outer=n_outer,
        grid=CURVE_GRID,
        raw=[best_raw] if best_raw else [],
        random_state=random_state,
    )
    out: dict[str, Any] = {
        "tasks": task_names,
        "groups_by_size": {
            str(k): int(v)
            for k, v in gains.group_by("size").agg(pl.col("group").n_unique()).iter_rows()
        },  # fmt: skip
        "seeds": sorted(set(gains["seed"].to_list())),
        "rows": table.height,
        "scores": ev.scores.to_dicts(),
        "ceiling": ev.ceiling,
        "within_task": within.to_dicts(),
        "within_task_ceiling": within_ceiling,
        "chosen": [
            {k: list(v) if isinstance(v, tuple) else v for k, v in c.items()} for c in ev.chosen
        ],  # fmt: skip
        "best_raw_signal": best_raw,
        "raw_signals": raw,
        "learning_curve": lc.to_dicts(),
    }
    if select_budget is not None:
        from stgmtl.payoff.gains import select_from_gains

        cands = sample_groups(task_names, (2, 3), random_state=random_state)
        pred = cross_fitted_gains(table, group_features(signals, cands, task_names),
                                  n_outer=n_outer, random_state=random_state)  # fmt: skip
        sel = select_from_gains(pred, task_names, select_budget, max_network_size=3)
        meas = select_from_gains(gains, task_names, select_budget, max_network_size=3)
        out["selection"] = {
            "budget": select_budget,
            "predicted": {"groups": sel.groups, "score": sel.score, "exact": sel.exact},
            "measured": {"groups": meas.groups, "score": meas.score, "exact": meas.exact},
        }
    out["analysis_seconds"] = time.perf_counter() - t0
    return out


def costs(runs: pl.DataFrame, systems: pl.DataFrame, cache: Path) -> dict[str, float]:
    """For the equal-wall-time reading of the learning curve: seconds of all recording runs
    in the cache, and the mean seconds of one trained group (all its seeds' runs)."""
    rec = 0.0
    for m in (cache / "signals").glob("*/manifest.json"):
        rec += float(json.loads(m.read_text()).get("seconds", 0.0))
    size = dict(systems.select("system", "num_tasks").iter_rows())
    per_run = runs.unique(subset=["key"]).filter(
        pl.col("system").map_elements(lambda s: 2 <= size.get(s, 0) <= 3, return_dtype=pl.Boolean)
    )
    seeds = per_run["seed"].n_unique() if per_run.height else 0
    run_s = float(per_run["train_seconds"].mean()) if per_run.height else float("nan")
    group_s = run_s * seeds
    return {
        "recording_seconds": rec,
        "group_run_seconds": run_s,
        "group_seconds_all_seeds": group_s,
        "groups_per_recording_time": rec / group_s if group_s > 0 else float("nan"),
    }


def equal_time(curve: list[dict[str, Any]], extra_groups: float) -> list[dict[str, Any]]:
    """The learning curve read at equal wall time: the calibrated predictor on ``n`` trained
    groups (plus the recordings, worth ``extra_groups`` trained groups) against each
    signal-free baseline on ``n + extra_groups`` groups (R^2 and Spearman interpolated linearly
    in ``n`` along its curve; NaN beyond the largest ``n`` measured)."""
    lc = pl.DataFrame(curve)
    out = []
    if lc.height == 0 or not extra_groups == extra_groups:  # empty, or NaN
        return out
    cal = lc.filter(pl.col("method") == "calibrated").sort("n_groups")
    for base in ("membership", "standley"):
        b = lc.filter(pl.col("method") == base).sort("n_groups")
        if b.height == 0:
            continue
        ns = b["n_groups"].to_numpy().astype(float)
        for n, r2, rho in cal.select("n_groups", "r2", "spearman").iter_rows():
            m = n + extra_groups
            inside = m <= ns.max()
            out.append({
                "n_groups": n, "calibrated_r2": r2, "calibrated_spearman": rho,
                "baseline": base, "baseline_n": m,
                "baseline_r2": float(np.interp(m, ns, b["r2"].to_numpy())) if inside else None,
                "baseline_spearman": float(np.interp(m, ns, b["spearman"].to_numpy()))
                if inside else None,
            })  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/gain-c10", help="harness output (result + cache)")
    ap.add_argument("--results", default="benchmarks/results", help="folder of the JSON")
    ap.add_argument("--suite", choices=("cifar10-15", "cifar100"), default="cifar10-15")
    ap.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    ap.add_argument("--superclasses", default=CIFAR100_SUPERCLASSES,
                    help="cifar100: the superclasses whose fine classes are the tasks")  # fmt: skip
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=None, help="default: the suite's preset")
    ap.add_argument("--max-pairs", type=int, default=None, help="default: every pair")
    ap.add_argument("--group-sizes", default="3")
    ap.add_argument("--max-groups", type=int, default=60, help="groups sampled per size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--curve", default="10,20,40,80", help="numbers of trained groups")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--outer", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--select-budget", type=float, default=None)
    ap.add_argument("--confirm-k", type=int, default=None,
                    help="train the predicted gains' K-group partition and confirm it on fresh "
                    "seeds (result in <out>-confirm)")  # fmt: skip
    ap.add_argument("--confirm-seeds", type=int, default=5)
    ap.add_argument("--random-partitions", type=int, default=2,
                    help="with --confirm-k: random partitions of the same sizes")  # fmt: skip
    ap.add_argument("--analyse-only", action="store_true", help="read <out>/result, train none")
    ap.add_argument("--planted", type=float, default=None, metavar="NOISE",
                    help="no training: a planted truth of the design's shape with seed noise "
                    "NOISE (the evaluation's power), written to planted_<NOISE>.json")  # fmt: skip
    args = ap.parse_args()
    if args.planted is not None:
        from stgmtl.datasets import CIFAR10_15_TASKS

        names = [t.strip() for t in args.tasks.split(",")] if args.tasks else list(CIFAR10_15_TASKS)
        t0 = time.perf_counter()
        gains, sig = planted(names, args.planted, len(_ints(args.seeds)), args.max_groups)
        out = analyse(
            None, None, sig, names, gains=gains, curve=_ints(args.curve), repeats=args.repeats,
            n_outer=args.outer, n_bootstrap=args.bootstrap, select_budget=None,
        )  # fmt: skip
        out["command"] = vars(args)
        out["seconds"] = time.perf_counter() - t0
        _write(out, Path(args.results) / f"planted_{args.planted:g}.json")
        return

    from stgmtl.payoff import PayoffResult

    t0 = time.perf_counter()
    result = PayoffResult.load(Path(args.out) / "result") if args.analyse_only else train(args)
    train_s = time.perf_counter() - t0
    signals = {k: v for k, v in result.signals.items() if k != "truth"}
    out = analyse(
        result.runs, result.systems, signals, list(result.task_names),
        curve=_ints(args.curve), repeats=args.repeats, n_outer=args.outer,
        n_bootstrap=args.bootstrap, select_budget=args.select_budget,
    )  # fmt: skip
    if args.confirm_k is not None:
        out["confirmation"] = confirm_choice(args, result, signals)
    out["costs"] = costs(result.runs, result.systems, Path(args.out) / "cache")
    out["equal_time"] = equal_time(out["learning_curve"], out["costs"]["groups_per_recording_time"])
    out["train_seconds"] = None if args.analyse_only else train_s
    out["harness_seconds"] = result.settings.get("seconds")
    out["command"] = vars(args)
    name = "gain_predictor" if args.suite == "cifar10-15" else f"gain_predictor_{args.suite}"
    _write(out, Path(args.results) / f"{name}.json")


def _write(out: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str))
    with pl.Config(tbl_rows=60, tbl_cols=12, tbl_width_chars=160, float_precision=3):
        print(pl.DataFrame(out["scores"]))
        print("noise ceiling:", out["ceiling"])
        print("within each recipient task (the shared reference cancels):")
        print(pl.DataFrame(out["within_task"]))
        print("within-task noise ceiling:", out["within_task_ceiling"])
        print("costs:", out.get("costs"))
        print(pl.DataFrame(out["learning_curve"]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
