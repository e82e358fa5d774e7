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
)

#: the learning curve refits many times: a smaller inner grid than the evaluation's default
CURVE_GRID: dict[str, list[Any]] = {
    "n_knots": [4],
    "stats": [("in_mean",), SIGNAL_STATS],
    "alpha_map": [1.0, 10.0],
    "alpha_residual": [10.0, 100.0],
}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def train(args: argparse.Namespace) -> Any:
    """The harness's truth and signals (``ks=(1,)``: no grouping beyond the all-task model;
    no confirmation)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from stgmtl.datasets import cifar10_15_splits
    from stgmtl.models import model_factory
    from stgmtl.payoff import run_payoff
    from stgmtl.specialise import TrainConfig

    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    data = functools.partial(cifar10_15_splits, tasks=tasks, val_size=800, test_limit=None)
    recipe = TrainConfig(width=0.5, epochs=args.epochs, batch_size=256, lr=1e-3,
                         scheduler="constant")  # fmt: skip
    pool = (
        ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
        if args.workers > 1
        else None
    )
    try:
        return run_payoff(
            data, model_factory("cnn"), recipe, args.out, seeds=_ints(args.seeds),
            truth="pairs", max_pairs=args.max_pairs, group_sizes=_ints(args.group_sizes),
            max_groups=args.max_groups, ks=(1,), architectures=("network",),
            random_partitions=0, confirm_seeds=0, executor=pool,
            threads=1 if pool is not None else None, n_bootstrap=200, n_permutations=200,
        )  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()


def analyse(
    runs: pl.DataFrame,
    systems: pl.DataFrame,
    signals: dict[str, Any],
    task_names: list[str],
    *,
    curve: list[int],
    repeats: int,
    n_outer: int,
    n_bootstrap: int,
    select_budget: float | None,
    random_state: int = 0,
) -> dict[str, Any]:
    """Evaluation, learning curve and (optionally) a selection from predicted gains."""
    t0 = time.perf_counter()
    gains = group_gains(losses_from_tables(runs, systems, "test"), task_names)
    gains = gains.filter(pl.col("size") < len(task_names))  # the all-task model is not a group
    groups = [tuple(g.split("+")) for g in gains["group"].unique(maintain_order=True)]
    feats = group_features(signals, groups, task_names)
    table = training_table(gains, feats)
    ev = evaluate_predictor(table, seed_gains=gains, n_outer=n_outer, n_bootstrap=n_bootstrap,
                            random_state=random_state)  # fmt: skip
    raw = [m.removeprefix("raw:") for m in ev.scores["method"].to_list() if m.startswith("raw:")]
    raw_scores = ev.scores.filter(pl.col("method").str.starts_with("raw:")).sort(
        "spearman", descending=True, nulls_last=True
    )
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
            "predicted": {"groups": sel.groups, "score": float(sel.score)},
            "measured": {"groups": meas.groups, "score": float(meas.score)},
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
    ap.add_argument("--tasks", default=None, help="comma-separated subset of the 15 tasks")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--max-pairs", type=int, default=None, help="default: every pair")
    ap.add_argument("--group-sizes", default="3")
    ap.add_argument("--max-groups", type=int, default=60, help="groups sampled per size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--curve", default="10,20,40,80", help="numbers of trained groups")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--outer", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--select-budget", type=float, default=None)
    ap.add_argument("--analyse-only", action="store_true", help="read <out>/result, train none")
    args = ap.parse_args()

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
    out["costs"] = costs(result.runs, result.systems, Path(args.out) / "cache")
    out["equal_time"] = equal_time(out["learning_curve"], out["costs"]["groups_per_recording_time"])
    out["train_seconds"] = None if args.analyse_only else train_s
    out["harness_seconds"] = result.settings.get("seconds")
    out["command"] = vars(args)
    folder = Path(args.results)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gain_predictor.json").write_text(json.dumps(out, indent=2, default=str))
    with pl.Config(tbl_rows=60, tbl_cols=12, tbl_width_chars=160):
        print(pl.DataFrame(out["scores"]))
        print("noise ceiling:", out["ceiling"])
        print("costs:", out["costs"])
        print(pl.DataFrame(out["learning_curve"]))
    print(f"wrote {folder / 'gain_predictor.json'}")


if __name__ == "__main__":
    main()
