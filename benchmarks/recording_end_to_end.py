"""End to end at 10,000 real tasks: record every row of 50,000 CIFAR-100 images in one run.

Suite: :func:`stgmtl.datasets.cifar100_pairs_suite` on the 50,000 ``train`` images: 50 disjoint
class pairs x 200 annotators = 10,000 binary tasks "is one of {a, b}", each annotator missing
20% of the positives (the ground-truth groups are the pairs), as
``benchmarks/end_to_end_1000.py`` builds 1,000 tasks. One training run of STG-MTL's small CNN
(10,000 logits), batch 256, with two recorders (the default compact layout) updated after every
step:

- ``all_rows``: every batch row recorded into the full ``(50,000, 10,000)`` state: 4.0 GB
  (10.5 GB in the float64 layout);
- ``probe``: ``probe_indices`` = 5,000 samples (seeded) with a snapshot after every epoch: the
  data maps that are grouped (``stgmtl.group(dm, 50)``; NMI / ARI against the pairs).

Reported: step time (median), each recorder's update time and ``1 + update / step``, state
bytes, the process's peak RSS (everything: images, the (50,000, 10,000) float32 targets of the
suite, model, both recorders), grouping time and agreement. The full data maps of ``all_rows``
are not computed (as ``DataMaps`` they would be 10 GB of float32 / int32 arrays); a check
decodes its statistics for the first ``--check-tasks`` tasks and compares them with ``probe``'s
on the probe samples (the same observations: equal to the last bit).

Run (under the shared lock; about 10 minutes on 2 cores)::

    STGMTL_DATA=/path/to/data PYTHONPATH=. python benchmarks/recording_end_to_end.py

Writes benchmarks/results/recording_end_to_end.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from stgmtl import group
from stgmtl.datasets import cifar100_pairs_suite
from stgmtl.record import DataMapRecorder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record_run import record_run, state_bytes  # noqa: E402

from stgmtl.record.compact import packed_statistics


def _check(full: DataMapRecorder, probe: DataMapRecorder, tasks: int) -> float:
    """Largest |difference| of the all-rows and probe statistics on the probe samples."""
    assert full._state is not None and probe.probe_indices is not None
    rows = torch.from_numpy(probe.probe_indices)
    state = full._state
    missing = state.get("missing")
    part = {"packed": state["packed"][rows, :tasks], "seen": state["seen"][rows],  # type: ignore[index]
            "missing": None if missing is None else missing[rows, :tasks]}  # fmt: skip
    mine = packed_statistics(part, full.ddof, np.float64)
    dm = probe.compute()
    theirs = (dm.confidence[:tasks], dm.variability[:tasks], dm.correctness[:tasks])
    return max(float(np.nanmax(np.abs(a - b))) for a, b in zip(mine, theirs, strict=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--groups", type=int, default=50)
    p.add_argument("--tasks-per-group", type=int, default=200)
    p.add_argument("--miss-rate", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--probe", type=int, default=5000)
    p.add_argument("--split", default="train")
    p.add_argument("--limit", type=int, default=None, help="images (default: the whole split)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-tasks", type=int, default=100)
    p.add_argument("--out", default="benchmarks/results/recording_end_to_end.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    suite = cifar100_pairs_suite(args.split, n_groups=args.groups,
                                 tasks_per_group=args.tasks_per_group, miss_rate=args.miss_rate,
                                 seed=args.seed, limit=args.limit)  # fmt: skip
    recs, train_s, update_s, run_s = record_run(suite, args)
    n, t = len(suite), suite.num_tasks
    peak_recording = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step = statistics.median(train_s)
    check = _check(recs["all_rows"], recs["probe"], args.check_tasks)
    dm = recs["probe"].compute(dtype=np.float32)
    t0 = time.perf_counter()
    groups = group(dm, args.groups, progress=False)
    group_s = time.perf_counter() - t0
    truth = suite.task_group  # type: ignore[attr-defined]
    result = {
        "benchmark": "recording_end_to_end",
        "command": "PYTHONPATH=. python benchmarks/recording_end_to_end.py "
        + " ".join(sys.argv[1:]),
        "suite": {
            "tasks": t,
            "groups": args.groups,
            "tasks_per_group": args.tasks_per_group,
            "miss_rate": args.miss_rate,
            "images": n,
            "split": args.split,
        },  # fmt: skip
        "epochs": args.epochs,
        "batch": args.batch,
        "threads": args.threads,
        "training_run_s": run_s,
        "median_train_step_s": step,
        "recorders": {
            name: {
                "rows": "all" if name == "all_rows" else f"probe {min(args.probe, n)}",
                "layout": rec.layout,
                "snapshots": len(rec.snapshot_epochs),
                "state_bytes": state_bytes(rec),
                "median_update_s": statistics.median(update_s[name]),
                "overhead_from_update_time": 1 + statistics.median(update_s[name]) / step,
            }
            for name, rec in recs.items()
        },
        "all_rows_vs_probe_max_abs_diff": check,
        "grouping": {
            "time_s": group_s,
            "nmi": float(normalized_mutual_info_score(truth, groups.labels)),
            "ari": float(adjusted_rand_score(truth, groups.labels)),
        },
        "peak_rss_bytes_recording": peak_recording,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
