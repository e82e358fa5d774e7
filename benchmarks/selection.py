"""Benchmark the exact selection back-ends at their limits: time and peak memory.

Each configuration runs in a fresh subprocess (one BLAS thread) and reports its wall time and
peak resident memory (``ru_maxrss``, which covers numpy's allocations). Affinities are random
``N(0, 1)`` matrices (seed 0; no planted structure, so nothing helps the search):

- ``tag``: :func:`stgmtl.tag_select` with ``k = 3`` networks, at ``T = 10 .. 16``;
- ``partition``: :func:`stgmtl.best_partition`, TAG objective with exactly 3 groups, and total
  within-group affinity with any number of groups (all ``T`` levels of the DP), same ``T``;
- ``standley``: :func:`stgmtl.standley_select` on every network of ``T = 5`` and ``6`` tasks (31
  and 63 candidates, the default cap) at every budget from 1 to ``T`` in steps of 0.5; the
  slowest budget is reported, with the nodes visited.

Results go to ``benchmarks/results/selection.json`` and a table is printed::

    PYTHONPATH=. python benchmarks/selection.py
    PYTHONPATH=. python benchmarks/selection.py --tasks 10 12   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _one(kind: str, t: int, budget: float | None) -> dict[str, Any]:
    from stgmtl.grouping.selection import best_partition, standley_select, tag_select

    v = np.random.default_rng(0).normal(size=(t, t))
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if kind == "tag":
        sel = tag_select(v, 3, max_tasks=16)
    elif kind == "partition-tag-k3":
        sel = best_partition(v, 3, objective="tag", max_tasks=16)
    elif kind == "partition-total-any":
        sel = best_partition(v, None, objective="total", max_tasks=16)
    else:
        assert budget is not None
        sel = standley_select(v, budget)
        extra = {"budget": budget, "nodes": sel.meta["nodes"], "candidates": sel.meta["candidates"]}
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "tasks": t, "seconds": seconds, "peak_mb": peak_mb,
            "n_groups": sel.n_groups, "score": sel.score, **extra}  # fmt: skip


def _subprocess(kind: str, t: int, budget: float | None) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}  # fmt: skip
    args = [sys.executable, __file__, "--one", kind, str(t), str(budget)]
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, nargs="+", default=[10, 12, 13, 14, 15, 16])
    p.add_argument("--standley-tasks", type=int, nargs="+", default=[5, 6])
    p.add_argument("--one", nargs=3, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        kind, t, budget = args.one
        print(json.dumps(_one(kind, int(t), None if budget == "None" else float(budget))))
        return 0
    rows = []
    for t in args.tasks:
        for kind in ("tag", "partition-tag-k3", "partition-total-any"):
            rows.append(_subprocess(kind, t, None))
            print(json.dumps(rows[-1]), flush=True)
    for t in args.standley_tasks:
        runs = [_subprocess("standley", t, float(b)) for b in np.arange(1.0, t + 0.01, 0.5)]
        worst = max(runs, key=lambda r: r["seconds"])
        every = [(r["budget"], r["seconds"], r["nodes"]) for r in runs]
        rows.append({**worst, "kind": "standley-worst-budget", "all_budgets": every})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(__file__).resolve().parent / "results" / "selection.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "python": sys.version.split()[0]}, indent=2))
    print(f"\n{'kind':<24}{'T':>4}{'seconds':>10}{'peak MB':>10}")
    for r in rows:
        print(f"{r['kind']:<24}{r['tasks']:>4}{r['seconds']:>10.2f}{r['peak_mb']:>10.0f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
