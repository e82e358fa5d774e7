"""Recording overhead of DataMapRecorder on a small-CNN training step.

STG-MTL's small CNN (3 conv layers + 2 linear, one logit per task) on 32x32x3 inputs,
batch 256, T = 100, 1,000 and 10,000 tasks, N = 50,000 samples. Steps with and without
``recorder.update`` are interleaved (rotating which comes first) and the ratio of the median
step times is reported, together with the median time of ``update`` alone (as a second,
less noisy estimate: 1 + median update / median step). Recording is measured with the
default ``cpu_threads=1`` and with torch's own thread count (``cpu_threads=None``).

At T = 10,000 a full state for N = 50,000 samples needs 21 B x 5e8 = 10.5 GB, more than a
shared 23 GB machine should give one process; that row is measured twice instead:
``all rows``: every batch row is recorded (same per-step work as the full state) into a state
of 5,000 samples, and ``probe``: ``probe_indices`` = 5,000 of the 50,000 samples (about 10%
of the rows recorded), the documented way to cut memory.

Run: ``PYTHONPATH=. python benchmarks/recording_overhead.py`` (``--help`` for options).
Writes benchmarks/results/recording_overhead.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stgmtl.record import DataMapRecorder


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
    sd = rec.state_dict()
    tensors = [t for t in (sd["state"] or {}).values() if t is not None] + [sd["targets"]]
    return int(sum(t.numel() * t.element_size() for t in tensors if t is not None))


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
    recs = {  # cpu_threads=1 is the default; None keeps torch's thread count
        "threads_1": DataMapRecorder(num_tasks, num, probe_indices=probe_ids, cpu_threads=1),
        "threads_torch": DataMapRecorder(num_tasks, num, probe_indices=probe_ids, cpu_threads=None),
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
        "state_bytes": _state_bytes(recs["threads_1"]),
        "median_step_s_without": base,
        "repeats": args.repeats,
    }
    for mode in recs:
        med = statistics.median(times[mode])
        row[mode] = {
            "median_step_s_with": med,
            "median_update_s": statistics.median(upd[mode]),
            "ratio_of_medians": med / base,
            "ratio_from_update_time": 1.0 + statistics.median(upd[mode]) / base,
        }
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--samples", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
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
            for mode in ("threads_1", "threads_torch"):
                m = row[mode]
                print(
                    f"T={t:>6} rows={row['recorded_rows']:<5} state={row['state_samples']:>6} "
                    f"({row['state_bytes'] / 1e9:.2f} GB) {mode:<13}: step "
                    f"{row['median_step_s_without'] * 1e3:.0f} -> "
                    f"{m['median_step_s_with'] * 1e3:.0f} ms, update "
                    f"{m['median_update_s'] * 1e3:.1f} ms; ratio {m['ratio_of_medians']:.3f} "
                    f"(from update time {m['ratio_from_update_time']:.3f})",
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
        "note": "shared machine: ratio_of_medians is noisy; ratio_from_update_time = 1 + "
        "median(update) / median(step without recording) is the steadier estimate",
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
