"""examples/ddp_record.py under torchrun with 2 CPU processes equals a one-process replay."""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.utils.data import DistributedSampler

from stgmtl.datamaps import DataMaps  # noqa: E402
from stgmtl.record import DataMapRecorder, distributed_valid_mask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ddp_record.py"
# 101 samples over 2 processes: each shard has 51, one sample is repeated per epoch as padding
N, FEATURES, TASKS, EPOCHS, BATCH, LR, SEED, WORLD = 101, 6, 4, 3, 8, 0.2, 3, 2
ARGS = [f"--num-samples={N}", f"--num-features={FEATURES}", f"--num-tasks={TASKS}",
        f"--epochs={EPOCHS}", f"--batch-size={BATCH}", f"--lr={LR}", f"--seed={SEED}"]  # fmt: skip


def _example_module():
    spec = importlib.util.spec_from_file_location("ddp_record_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_process_replay() -> DataMaps:
    """Replay the 2-process DDP run in one process: the same shards, batches and updates.

    DDP averages the ranks' gradients of their local mean losses, which is the gradient of the
    mean of the ranks' losses; the shards come from the same DistributedSampler arithmetic.
    """
    ex = _example_module()
    data = ex.make_data(N, FEATURES, TASKS, SEED)
    model = ex.make_model(FEATURES, TASKS, SEED)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    samplers = [DistributedSampler(data, WORLD, r, shuffle=True, seed=SEED) for r in range(WORLD)]
    valid = [distributed_valid_mask(s) for s in samplers]
    recorder = DataMapRecorder(TASKS, N, snapshot_epochs=range(1, EPOCHS + 1))
    x_all, y_all, _ = data.tensors
    for epoch in range(EPOCHS):
        orders = []
        for s in samplers:
            s.set_epoch(epoch)
            orders.append(torch.tensor(list(s)))
        for step in range(math.ceil(len(orders[0]) / BATCH)):
            window = slice(step * BATCH, (step + 1) * BATCH)
            parts = [o[window] for o in orders]
            logits = [model(x_all[idx]) for idx in parts]
            loss = (
                sum(
                    F.binary_cross_entropy_with_logits(z, y_all[idx])
                    for z, idx in zip(logits, parts, strict=True)
                )
                / WORLD
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            for z, idx, ok in zip(logits, parts, valid, strict=True):
                recorder.update(z, y_all[idx], idx, valid=ok[window])
        recorder.end_epoch()
    return recorder.compute()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_replay(tmp_path):
    out = tmp_path / "maps"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}",
           "--nnodes=1", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           str(EXAMPLE), f"--out={out}", *ARGS]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "saved DataMaps" in run.stdout

    ddp = DataMaps.load(out)
    ref = _one_process_replay()
    assert ddp.epochs == EPOCHS and ddp.snapshot_epochs == list(range(1, EPOCHS + 1))
    # every sample seen once per epoch: the padding repeat is not counted twice
    assert (ddp.count == EPOCHS).all()
    np.testing.assert_array_equal(ddp.count, ref.count)
    np.testing.assert_array_equal(ddp.targets, ref.targets)
    for name in ("confidence", "variability", "correctness", "snapshot_confidence",
                 "snapshot_variability", "snapshot_correctness"):  # fmt: skip
        np.testing.assert_allclose(getattr(ddp, name), getattr(ref, name), rtol=0, atol=1e-5)
    # training happened: the maps move between epochs
    assert np.abs(np.diff(ddp.snapshot_confidence, axis=0)).max() > 1e-3
