"""State memory and update time of recording every row at T = 10,000 tasks x N = 50,000 samples.

One process trains STG-MTL's small CNN (32x32x3 inputs, batch 256, T logits, 2 threads) and
records every batch row into a ``DataMapRecorder`` over all N samples (no ``probe_indices``), in
the compact layout (the default, 8 bytes a cell) unless ``--layout float64`` (21 bytes a cell:
10.5 GB at this size, so not run by default). Reported:

``state_bytes``
    the recorder's allocated state (every tensor of its state dict).
``peak_rss_bytes``
    the process's peak resident set size (``ru_maxrss``) after recording, and
    ``rss_before_bytes``, its resident size before the recorder was made (model, torch).
``median_update_s`` / ``median_step_s``
    medians over the steps: ``1 + update / step`` is the recording overhead with the full state.

Every state page is touched (the state is filled at allocation). Run (under the shared lock)::

    PYTHONPATH=. python benchmarks/recording_memory.py --steps 40

Writes benchmarks/results/recording_memory.json and prints it.
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
from torch import nn

from stgmtl.record import DataMapRecorder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording_overhead import small_cnn  # noqa: E402


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--samples", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--layout", default="compact", choices=["compact", "float64"])
    p.add_argument("--out", default="benchmarks/results/recording_memory.json")
    args = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    gen = np.random.default_rng(0)
    model = small_cnn(args.tasks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 3, 32, 32)
    y = (torch.rand(args.batch, args.tasks) > 0.5).float()
    rss_before = _rss_now()
    rec = DataMapRecorder(args.tasks, args.samples, layout=args.layout)
    steps, updates = [], []
    for _ in range(args.steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        logits = model(x)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        rec.update(logits, y, torch.from_numpy(gen.integers(0, args.samples, args.batch)))
        t2 = time.perf_counter()
        steps.append(t1 - t0)
        updates.append(t2 - t1)
    state = rec.state_dict()["state"] or {}
    state_bytes = int(sum(t.numel() * t.element_size() for t in state.values() if t is not None))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step_s, update_s = statistics.median(steps[2:]), statistics.median(updates[2:])
    result = {
        "benchmark": "recording_memory",
        "command": "PYTHONPATH=. python benchmarks/recording_memory.py " + " ".join(sys.argv[1:]),
        "tasks": args.tasks,
        "samples": args.samples,
        "layout": args.layout,
        "state_bytes": state_bytes,
        "bytes_per_cell": state_bytes / (args.tasks * args.samples),
        "rss_before_bytes": rss_before,
        "peak_rss_bytes": peak,
        "median_step_s": step_s,
        "median_update_s": update_s,
        "one_plus_update_over_step": 1 + update_s / step_s,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
