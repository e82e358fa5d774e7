"""The payoff verdict's false-positive rate on null loss tables at the harness's real shapes.

The CIFAR-10 15-task verdict's shape: 15 single-task networks (cost 1, one task each) and the
grouped systems of ``n_grouped`` partitions (cost ``k``, every task), budget 3, 3 exploration
seeds, 5 fresh confirmation seeds. Writes ``benchmarks/results/null_rate.json``.

    PYTHONPATH=. python benchmarks/null_rate.py --n-sim 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from stgmtl.payoff.null import simulate_null


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-sim", type=int, default=2000)
    p.add_argument("--tasks", type=int, default=15)
    p.add_argument("--n-grouped", type=int, default=30, help="grouped systems (half k=2, half k=3)")
    p.add_argument("--out", default="benchmarks/results/null_rate.json")
    args = p.parse_args()
    t = args.tasks
    serving = np.vstack([np.eye(t, dtype=bool), np.ones((args.n_grouped, t), dtype=bool)])
    costs = np.r_[np.ones(t), np.where(np.arange(args.n_grouped) % 2 == 0, 2.0, 3.0)]
    rows = []
    for noise in (0.01, 0.03, 0.1):
        t0 = time.perf_counter()
        r = simulate_null(
            systems=serving.shape[0], tasks=t, seeds=3, confirm_seeds=5, budget=3.0, costs=costs,
            n_sim=args.n_sim, noise_sd=noise, serving=serving, random_state=0,
        )  # fmt: skip
        rows.append({**r.to_dict(), "seconds": time.perf_counter() - t0})
        print(f"noise {noise}: {r.describe()} ({time.perf_counter() - t0:.1f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
