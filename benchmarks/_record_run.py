"""The recording run both end-to-end benchmarks time: a small CNN trained on a CIFAR-100 pairs
suite with two recorders (every row, and probe rows with per-epoch snapshots) updated after each
step, each step and each update timed (``end_to_end_1000.py``, ``recording_end_to_end.py``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from stgmtl.models import SmallCNN
from stgmtl.record import DataMapRecorder


def state_bytes(rec: DataMapRecorder) -> int:
    """Bytes of a recorder's state and snapshots (every tensor of its ``state_dict``)."""
    sd = rec.state_dict()
    states = [sd["state"] or {}, *sd["snapshots"].values()]
    return int(sum(v.numel() * v.element_size() for s in states for v in s.values()
                   if v is not None))  # fmt: skip


def record_run(
    suite: Any, args: argparse.Namespace
) -> tuple[dict[str, DataMapRecorder], list[float], dict[str, list[float]], float]:
    """Train and record; returns the recorders, step times, update times per recorder, and the
    run's wall time. ``args``: ``seed, probe, epochs, batch``."""
    n, t = len(suite), suite.num_tasks
    probe = np.sort(np.random.default_rng(args.seed).choice(n, min(args.probe, n), replace=False))
    recs = {
        "all_rows": DataMapRecorder(t, n, task_names=suite.task_names),
        "probe": DataMapRecorder(t, n, task_names=suite.task_names, probe_indices=probe,
                                 snapshot_epochs=range(1, args.epochs + 1)),
    }  # fmt: skip
    model = SmallCNN(t)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=suite.pos_weight())
    train_s: list[float] = []
    update_s: dict[str, list[float]] = {k: [] for k in recs}
    t_run = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for x, y, idx in suite.loader(args.batch, shuffle=True, seed=args.seed + epoch):
            t0 = time.perf_counter()
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            train_s.append(time.perf_counter() - t0)
            for name, rec in recs.items():
                t0 = time.perf_counter()
                rec.update(logits, y, idx)
                update_s[name].append(time.perf_counter() - t0)
        for rec in recs.values():
            rec.end_epoch()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, {time.perf_counter() - t_run:.0f} s",
              flush=True)  # fmt: skip
    return recs, train_s, update_s, time.perf_counter() - t_run
