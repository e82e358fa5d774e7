"""Two processes on gloo (CPU): probes synced over ranks equal one process that saw every batch."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from stgmtl.loop import task_losses
from stgmtl.record import (
    GradCosineProbe,
    IndexedDataset,
    RepCosineProbe,
    TAGProbe,
    record_affinity,
)

T, B, BATCHES = 3, 8, 6


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh())
        self.head = nn.Linear(8, T)

    def forward(self, x):
        return self.head(self.trunk(x))


def _setup():
    torch.manual_seed(0)
    model = Net().double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(BATCHES, B, 5, generator=g, dtype=torch.float64)
    ys = (torch.rand(BATCHES, B, T, generator=g) > 0.5).double()
    loss = task_losses(model(xs[0]), ys[0]).sum()  # one step: momentum buffers exist
    loss.backward()
    opt.step()
    opt.zero_grad()
    probes = {
        "tag": TAGProbe(every=1, max_sources=None, task_names=list("abc")),
        "grad-cosine": GradCosineProbe(every=1, sketch_dim=32, task_names=list("abc")),
        "rep-cosine": RepCosineProbe(heads=model.head, task_names=list("abc")),
    }
    return model, opt, xs, ys, probes


def _feed(which):
    model, opt, xs, ys, probes = _setup()
    for b in which:
        for p in probes.values():
            p.update(model, opt, xs[b], ys[b])
    for p in probes.values():
        p.end_epoch()
    return probes


def _worker(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        probes = _feed(range(rank, BATCHES, 2))
        arrays = {}
        for name, p in probes.items():
            local = p.compute(sync=False)
            merged = p.compute()  # a collective on a copy
            again = p.compute(sync=False)
            p.sync()
            synced = p.compute()
            try:
                p.update(nn.Linear(5, T), None, torch.zeros(2, 5), torch.zeros(2, T))
                raised = False
            except RuntimeError:
                raised = True
            arrays[f"{name}_merged"] = merged.values
            arrays[f"{name}_merged_counts"] = merged.counts
            arrays[f"{name}_synced"] = synced.values
            arrays[f"{name}_synced_snap"] = synced.snapshots
            arrays[f"{name}_local_same"] = np.array_equal(
                local.values, again.values, equal_nan=True
            )
            arrays[f"{name}_raised"] = raised
            arrays[f"{name}_steps"] = synced.meta["steps_probed"]
        # record_affinity under DDP with a DistributedSampler: both ranks return the merged values
        g = torch.Generator().manual_seed(2)
        x = torch.randn(30, 5, generator=g)
        ds = IndexedDataset(TensorDataset(x, (x[:, :T] > 0).float()))
        loader = DataLoader(ds, batch_size=B, sampler=DistributedSampler(ds, 2, rank, seed=1))
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(Net())
        got = record_affinity(loader, model, signals=["tag", "rep-cosine", "label"], epochs=1,
                              progress=False, settings={"tag": {"every": 1}})  # fmt: skip
        for name, aff in got.items():
            arrays[f"ddp_{name}"] = aff.values
        np.savez(f"{out}.rank{rank}.npz", **arrays)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
@pytest.mark.slow
def test_two_process_probe_sync_equals_single_process(tmp_path):
    out = str(tmp_path / "res")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    ranks = [np.load(f"{out}.rank{r}.npz") for r in range(2)]
    ref = {name: p.compute() for name, p in _feed(range(BATCHES)).items()}
    for name, want in ref.items():
        for got in ranks:
            for kind in ("merged", "synced"):
                np.testing.assert_allclose(got[f"{name}_{kind}"], want.values, rtol=0,
                                           atol=1e-12)  # fmt: skip
            np.testing.assert_array_equal(got[f"{name}_merged_counts"], want.counts)
            np.testing.assert_allclose(got[f"{name}_synced_snap"], want.snapshots, atol=1e-12)
            assert bool(got[f"{name}_local_same"]) and bool(got[f"{name}_raised"])
            assert int(got[f"{name}_steps"]) == BATCHES
    for name in ("tag", "rep-cosine", "label"):
        np.testing.assert_array_equal(ranks[0][f"ddp_{name}"], ranks[1][f"ddp_{name}"])
