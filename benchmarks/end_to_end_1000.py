"""End to end at 1,000 real tasks: record and group a CIFAR-100 pairs suite in one training run.

Suite: :func:`stgmtl.datasets.cifar100_pairs_suite` (50 disjoint class pairs x 20 annotators =
1,000 binary tasks "is one of {a, b}", each annotator missing 20% of the positives; the ground
truth groups are the pairs). One training run of STG-MTL's small CNN (1,000 logits) on the
45,000 train45k images, batch 256, with two recorders updated after every step:

- ``all rows``: every batch row recorded into a full ``(45,000, 1,000)`` state (final statistics,
  no snapshots): the recording cost of the largest state;
- ``probe``: ``probe_indices`` = 5,000 samples (seeded) with a snapshot after every epoch: the
  data maps that are grouped (STG-MTL's features: confidence and variability per snapshot).

Reported: step time without recording (median of the training part), the update time of each
recorder (median; the overhead estimate ``1 + update / step``, as measured inside one run),
state memory, grouping time (``stgmtl.group(dm, 50)``) and NMI / ARI against the pairs.

Run (about 10 minutes on 2 cores; under the shared lock)::

    STGMTL_DATA=/path/to/data PYTHONPATH=. python benchmarks/end_to_end_1000.py

Writes benchmarks/results/end_to_end_1000.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from stgmtl import group
from stgmtl.datasets import cifar100_pairs_suite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record_run import record_run, state_bytes  # noqa: E402

from stgmtl.record.native import native_status


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--groups", type=int, default=50)
    p.add_argument("--tasks-per-group", type=int, default=20)
    p.add_argument("--miss-rate", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--probe", type=int, default=5000)
    p.add_argument("--limit", type=int, default=None, help="images (default: all 45,000)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/end_to_end_1000.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    suite = cifar100_pairs_suite("train45k", n_groups=args.groups,
                                 tasks_per_group=args.tasks_per_group, miss_rate=args.miss_rate,
                                 seed=args.seed, limit=args.limit)  # fmt: skip
    recs, train_s, update_s, run_s = record_run(suite, args)
    n, t = len(suite), suite.num_tasks
    step = statistics.median(train_s)
    dm = recs["probe"].compute()
    t0 = time.perf_counter()
    groups = group(dm, args.groups, progress=False)
    group_s = time.perf_counter() - t0
    truth = suite.task_group
    result = {
        "benchmark": "end_to_end_1000",
        "command": "PYTHONPATH=. python benchmarks/end_to_end_1000.py " + " ".join(sys.argv[1:]),
        "suite": {
            "tasks": t,
            "groups": args.groups,
            "tasks_per_group": args.tasks_per_group,
            "miss_rate": args.miss_rate,
            "images": n,
        },  # fmt: skip
        "model": "SmallCNN (STG-MTL's small CNN), Adam 1e-3, BCE with pos_weight",
        "epochs": args.epochs,
        "batch": args.batch,
        "threads": args.threads,
        "training_run_s": run_s,
        "median_train_step_s": step,
        "recorders": {
            name: {
                "rows": "all" if name == "all_rows" else f"probe {min(args.probe, n)}",
                "snapshots": len(rec.snapshot_epochs),
                "state_bytes": state_bytes(rec),
                "median_update_s": statistics.median(update_s[name]),
                "overhead_from_update_time": 1 + statistics.median(update_s[name]) / step,
                "total_update_s": float(sum(update_s[name])),
            }
            for name, rec in recs.items()
        },
        "grouping": {
            "features": "datamap (confidence, variability per snapshot)",
            "feature_dim": int(2 * min(args.probe, n) * len(dm.snapshot_epochs)),
            "time_s": group_s,
            "reduction": groups.reduction,
            "nmi": float(normalized_mutual_info_score(truth, groups.labels)),
            "ari": float(adjusted_rand_score(truth, groups.labels)),
        },
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "native_kernel": native_status(),
        "torch": torch.__version__,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
