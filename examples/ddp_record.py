"""Record data maps in a multi-process (DistributedDataParallel) training run.

Every process trains on its shard of the data (``DistributedSampler``) and records the
predictions it makes; ``recorder.sync()`` then merges the processes' records, and rank 0 saves
the data maps. Launch with torchrun (gloo on CPU, NCCL when there are GPUs)::

    torchrun --nproc_per_node=2 examples/ddp_record.py --out datamaps_ddp
    stgmtl group datamaps_ddp --k 3 -o groups_ddp

The model and data are a small synthetic stand-in: swap in your own network and dataset, keeping
the three things that matter here: the dataset yields ``(x, targets, index)``, the loader uses a
``DistributedSampler`` (with ``set_epoch`` every epoch), and each ``update`` gets
``valid=`` so the samples the sampler repeats to even out the shards are counted once.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from stgmtl.record import DataMapRecorder, distributed_valid_mask


def make_data(num_samples: int, num_features: int, num_tasks: int, seed: int = 0) -> TensorDataset:
    """Synthetic multi-task data ``(x, targets (N, T) in {0, 1}, index)``, noisier task by task."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, num_features, generator=g)
    w = torch.randn(num_features, num_tasks, generator=g)
    noise = torch.linspace(0.1, 2.0, num_tasks) * torch.randn(num_samples, num_tasks, generator=g)
    y = ((x @ w + noise) > 0).float()
    return TensorDataset(x, y, torch.arange(num_samples))


def make_model(num_features: int, num_tasks: int, seed: int = 0) -> nn.Module:
    """A small shared trunk with one logit per task."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(num_features, 32), nn.ReLU(), nn.Linear(32, num_tasks))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="datamaps_ddp", help="where rank 0 saves the data maps")
    p.add_argument("--num-samples", type=int, default=2_000)
    p.add_argument("--num-features", type=int, default=16)
    p.add_argument("--num-tasks", type=int, default=8)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    data = make_data(args.num_samples, args.num_features, args.num_tasks, args.seed)
    sampler = DistributedSampler(data, shuffle=True, seed=args.seed)  # pads to equal shards
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler)
    model = make_model(args.num_features, args.num_tasks, args.seed).to(device)
    model = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

    recorder = DataMapRecorder(
        args.num_tasks, args.num_samples, snapshot_epochs=range(1, args.epochs + 1)
    )
    valid = distributed_valid_mask(sampler).to(device)  # False where the sampler repeats samples

    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for step, (x, y, idx) in enumerate(loader):
            x, y, idx = x.to(device), y.to(device), idx.to(device)
            logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            start = step * args.batch_size
            recorder.update(logits, y, idx, valid=valid[start : start + len(idx)])
        recorder.end_epoch()

    recorder.sync()  # a collective: afterwards every rank holds all processes' records
    if rank == 0:
        maps = recorder.compute()
        maps.save(args.out)
        print(f"saved {maps} to {args.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
