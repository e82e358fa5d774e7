"""A reliable truth: how reproducible measured pair gains are, and which signal ranks them.

Reads a finished ``stgmtl payoff --truth pairs`` result (its runs table and recorded signals) and
reports, on the test split:

* the truth's reliability as seeds accumulate (the mean seed-to-seed Spearman of the directed
  pair gains over the first ``s`` seeds, the Spearman-Brown reliability of their mean, and the
  seeds that reach 0.7), and its cost (training seconds of the single, pair and all-task runs);
* each signal's and control's rank agreement with the mean gains **pooled** over directed pairs
  (the harness's table: Spearman, Mantel p, Holm across signals, top-1) and **within each
  recipient task** (Spearman over the recipient's partners, averaged over recipients, with the
  within-recipient noise ceiling): pooled scores also reward knowing which recipient gains most.

    STGMTL_DATA=../shared/data stgmtl payoff --suite planted --strength 0 --truth pairs \\
        --seeds 0,1,2,3,4,5,6,7,8,9,10,11 --signal-seeds 100 --ks 1 --random-partitions 0 \\
        --confirm-seeds 0 --signals datamap,confusion,label,colearning,tag,grad-cosine,\\
rep-cosine,grad-tag --workers 2 --out runs/truth10
    PYTHONPATH=. python benchmarks/reliable_truth.py runs/truth10/result

Writes ``benchmarks/results/reliable_truth.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl


def within_recipient(signal: np.ndarray, truth: np.ndarray) -> float:
    """Mean over recipients ``i`` of Spearman's rho between ``signal[:, i]`` and ``truth[:, i]``
    over the partners (NaN-free columns only)."""
    from stgmtl.payoff.truth import spearman

    rhos = []
    for i in range(truth.shape[1]):
        ok = np.isfinite(signal[:, i]) & np.isfinite(truth[:, i])
        ok[i] = False
        if ok.sum() >= 3:
            r = spearman(signal[ok, i], truth[ok, i])
            if np.isfinite(r):
                rhos.append(r)
    return float(np.mean(rhos)) if rhos else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", help="a payoff result folder (OUT/result)")
    p.add_argument("--out", default="benchmarks/results/reliable_truth.json")
    args = p.parse_args()

    from stgmtl.payoff.gains import losses_from_tables
    from stgmtl.payoff.scoring import aligned_values
    from stgmtl.payoff.stats import seed_reliability, seeds_for_reliability, spearman_brown
    from stgmtl.payoff.tables import PayoffResult
    from stgmtl.payoff.truth import truth_from_losses

    result = PayoffResult.load(args.result)
    names = list(result.task_names)
    truth = truth_from_losses(losses_from_tables(result.runs, result.systems), names)
    seeds = truth.seeds
    g = truth.seed_gains()
    curve = []
    for s in range(2, len(seeds) + 1):
        r = seed_reliability(g[:s])["seed_spearman"]
        curve.append({"seeds": s, "seed_spearman": r, "reliability": spearman_brown(r, s)})
    rel = truth.reliability()
    # within-recipient ceiling: per recipient, mean seed-to-seed Spearman over its partners
    per = [seed_reliability(g[:, :, i][:, [j for j in range(len(names)) if j != i], None])
           ["seed_spearman"] for i in range(len(names))]  # fmt: skip
    r_within = float(np.nanmean(per))
    mean = truth.gains()
    scores = result.signal_scores
    rows = []
    for name, aff in result.signals.items():
        if name == "truth":
            continue
        row = scores.filter(pl.col("signal") == name).to_dicts()
        rows.append({
            "signal": name, "within_recipient_spearman": within_recipient(
                aligned_values(aff, names), mean),
            **({k: row[0][k] for k in ("spearman", "spearman_lo", "spearman_hi", "p_value",
                                        "p_holm", "top1", "control")} if row else {}),
        })  # fmt: skip
    # the truth's networks: one per task, per pair and for all tasks (budget 1, plain)
    sizes = dict(zip(result.systems["system"], result.systems["num_tasks"], strict=True))
    truth_runs = result.runs.filter(
        (pl.col("split") == "test")
        & (pl.col("kind") == "network")
        & (pl.col("budget") == 1.0)
        & pl.col("system").replace_strict(sizes, default=0).is_in([1, 2, len(names)])
    ).unique(subset=["key"])
    cost = float(truth_runs["train_seconds"].sum() + truth_runs["eval_seconds"].sum())
    out = {
        "tasks": len(names), "seeds": len(seeds), "reliability": rel, "curve": curve,
        "within_recipient": {"seed_spearman": r_within,
                             "reliability": spearman_brown(r_within, len(seeds)),
                             "seeds_for_0.7": seeds_for_reliability(r_within, 0.7)},
        "runs": truth_runs.height, "run_seconds": cost, "signals": rows,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=3, tbl_width_chars=200):
        print(pl.DataFrame(curve))
        print(f"reliability {rel}; within recipient {out['within_recipient']}")
        print(f"{truth_runs.height} runs, {cost / 60:.1f} min of training and evaluation")
        print(pl.DataFrame(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
