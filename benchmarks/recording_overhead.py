"""Recording overhead of DataMapRecorder on a small-CNN training step.

STG-MTL's small CNN (3 conv layers + 2 linear, one logit per task) on 32x32x3 inputs,
batch 256, T = 100, 1,000 and 10,000 tasks, N = 50,000 samples, 2 threads. Steps without
recording and with ``recorder.update`` after every step are interleaved (rotating which comes
first in each round). Three estimates of the ratio "step with recording / step without":

``ratio_of_medians``
    median step time with recording / median without.
``paired_ratio``
    median over rounds of (step with / step without) within the same round: the steps of a
    round run back to back, so slow drifts of a shared machine's load cancel.
``ratio_from_update_time``
    1 + median(update) / median(step without): the steadiest, but blind to any effect of the
    update on the next step (e.g. caches).

Recorders measured: ``kernel="native"`` (the fused C++ update, the default where it builds) and
``kernel="torch"`` (the pure-torch update), with the default ``cpu_threads=1`` (and other
recorder thread counts with ``--recorder-threads 1 2``: results ``native/2t``, ...), in each
state layout of ``--layouts``: ``compact`` (the default, 8 bytes a cell; results ``native``,
``torch``) and ``float64`` (21 bytes a cell; results ``native/float64``, ...).

At T = 10,000 a full float64 state for N = 50,000 samples needs 21 B x 5e8 = 10.5 GB; that row
is measured twice instead: ``all rows``: every batch row is recorded (same per-step work as the
full state) into a state of 5,000 samples, and ``probe``: ``probe_indices`` = 5,000 of the
50,000 samples (about 10% of the rows recorded). The compact state of all 50,000 samples (4 GB)
is measured by ``benchmarks/recording_memory.py``.

Run (under the shared lock on a shared machine)::

    PYTHONPATH=. python benchmarks/recording_overhead.py           # T = 100, 1,000, 10,000
    PYTHONPATH=. python benchmarks/recording_overhead.py --tasks 100 10000 --repeats 60

Writes benchmarks/results/recording_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stgmtl.record import DataMapRecorder
from stgmtl.record.native import native_status


def small_cnn(num_tasks: int) -> nn.Module:
    """STG-MTL's small CNN: 3 conv (BN, ReLU, pooling) + 2 linear layers, one logit per task."""
    return nn.Sequential(
        nn.Conv2d(3, 32, kernel_size=5),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Conv2d(64, 64, kernel_size=3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(3136, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, num_tasks),
    )


def _state_bytes(rec: DataMapRecorder) -> int:
    tensors = [t for t in (rec.state_dict()["state"] or {}).values() if t is not None]
    return int(sum(t.numel() * t.element_size() for t in tensors))


def _mode(kernel: str, threads: int, layout: str = "compact") -> str:
    """Result key: the kernel, with the layout unless compact, the thread count unless 1."""
    key = kernel if layout == "compact" else f"{kernel}/{layout}"
    return key if threads == 1 else f"{key}/{threads}t"


def measure(
    num_tasks: int, state_samples: int, probe: int | None, args: argparse.Namespace
) -> dict:
    """Interleaved step times without recording and with it, for both thread settings."""
    torch.manual_seed(0)
    gen = np.random.default_rng(0)
    model = small_cnn(num_tasks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 3, 32, 32)
    y = (torch.rand(args.batch, num_tasks) > 0.5).float()
    probe_ids = None if probe is None else np.sort(gen.choice(args.samples, probe, replace=False))
    num = state_samples if probe is None else args.samples
    recs = {  # each update kernel and layout, with each recorder thread count (cpu_threads)
        _mode(kernel, n, layout): DataMapRecorder(
            num_tasks, num, probe_indices=probe_ids, kernel=kernel, cpu_threads=n, layout=layout
        )
        for kernel in args.kernels
        for n in args.recorder_threads
        for layout in args.layouts
    }

    def step(mode: str) -> tuple[float, float]:
        idx = torch.from_numpy(gen.integers(0, num, size=args.batch))
        t0 = time.perf_counter()
        logits = model(x)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if mode != "base":
            recs[mode].update(logits, y, idx)
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1

    modes = ["base", *recs]
    for _ in range(args.warmup):
        for mode in modes:
            step(mode)
    times: dict[str, list[float]] = {m: [] for m in modes}
    upd: dict[str, list[float]] = {m: [] for m in recs}
    for r in range(args.repeats):
        order = modes[r % len(modes) :] + modes[: r % len(modes)]  # rotate who goes first
        for mode in order:
            total, update = step(mode)
            times[mode].append(total)
            if mode != "base":
                upd[mode].append(update)
    base = statistics.median(times["base"])
    row: dict = {
        "num_tasks": num_tasks,
        "num_samples": args.samples,
        "state_samples": len(probe_ids) if probe_ids is not None else state_samples,
        "recorded_rows": "probe" if probe is not None else "all",
        "state_bytes": {mode: _state_bytes(rec) for mode, rec in recs.items()},
        "median_step_s_without": base,
        "repeats": args.repeats,
    }
    for mode in recs:
        med = statistics.median(times[mode])
        paired = [w / b for w, b in zip(times[mode], times["base"], strict=True)]
        row[mode] = {
            "median_step_s_with": med,
            "median_update_s": statistics.median(upd[mode]),
            "ratio_of_medians": med / base,
            "paired_ratio": statistics.median(paired),
            "ratio_from_update_time": 1.0 + statistics.median(upd[mode]) / base,
        }
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--samples", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--kernels", nargs="+", default=["native", "torch"],
                   choices=["native", "torch"], help="update kernels to measure")  # fmt: skip
    p.add_argument("--recorder-threads", type=int, nargs="+", default=[1],
                   help="DataMapRecorder(cpu_threads=...) values (default 1)")  # fmt: skip
    p.add_argument("--layouts", nargs="+", default=["compact", "float64"],
                   choices=["compact", "float64"], help="state layouts to measure")  # fmt: skip
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--big-state-samples", type=int, default=5_000,
                   help="state size (and probe size) used at T >= 10,000")  # fmt: skip
    p.add_argument("--out", default="benchmarks/results/recording_overhead.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    for t in args.tasks:
        if t * args.samples * 21 <= 2e9:  # full state fits comfortably
            configs = [(args.samples, None)]
        else:
            configs = [(args.big_state_samples, None), (args.samples, args.big_state_samples)]
        for state_samples, probe in configs:
            row = measure(t, state_samples, probe, args)
            rows.append(row)
            modes = [_mode(k, n, lay) for k in args.kernels for n in args.recorder_threads
                     for lay in args.layouts]  # fmt: skip
            for mode in modes:
                m = row[mode]
                print(
                    f"T={t:>6} rows={row['recorded_rows']:<5} state={row['state_samples']:>6} "
                    f"({row['state_bytes'][mode] / 1e9:.2f} GB) {mode:<14}: step "
                    f"{row['median_step_s_without'] * 1e3:.0f} -> "
                    f"{m['median_step_s_with'] * 1e3:.0f} ms, update "
                    f"{m['median_update_s'] * 1e3:.2f} ms; ratio {m['ratio_of_medians']:.4f}, "
                    f"paired {m['paired_ratio']:.4f}, from update time "
                    f"{m['ratio_from_update_time']:.4f}",
                    flush=True,
                )
    result = {
        "benchmark": "recording_overhead",
        "model": "STG-MTL small CNN (3 conv + 2 linear), 32x32x3, BCE-with-logits, Adam",
        "batch": args.batch,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15_before": load_before,
        "loadavg_1_5_15_after": os.getloadavg(),
        "native_kernel": native_status(),
        "command": "PYTHONPATH=. python benchmarks/recording_overhead.py " + " ".join(sys.argv[1:]),
        "note": "shared machine: ratio_of_medians is noisy; paired_ratio (median of per-round "
        "ratios) and ratio_from_update_time = 1 + median(update) / median(step without "
        "recording) are the steadier estimates",
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
