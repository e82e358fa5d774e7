"""Record data maps in your own training loop, then group the tasks and draw the result.

Three lines go into a loop you already have: create a ``DataMapRecorder``, call
``recorder.update(logits, targets, indices)`` after each forward pass, ``recorder.end_epoch()``
after each epoch. Here the loop trains a small multi-task network on synthetic data with three
planted families of tasks, and the grouping recovers them::

    python examples/own_training_loop.py --out own_loop_output
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from stgmtl import DataMapRecorder, group
from stgmtl.plots import datamap_figure, memberships_figure, save_figure

FAMILIES, TASKS_PER_FAMILY = 3, 4


def make_data(num_samples: int = 3_000, seed: int = 0) -> tuple[TensorDataset, list[str]]:
    """Inputs, 12 binary tasks (3 families of 4 noisy copies of one rule), and sample indices."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, 20, generator=g)
    rules = [x[:, :4].sum(1), x[:, 4] * x[:, 5], x[:, 6:12].abs().sum(1) - 4.8]
    ys, names = [], []
    for f, rule in enumerate(rules):
        for t in range(TASKS_PER_FAMILY):
            ys.append(rule + 0.3 * torch.randn(num_samples, generator=g) > 0)
            names.append(f"family{f}_task{t}")
    y = torch.stack(ys, dim=1).float()
    return TensorDataset(x, y, torch.arange(num_samples)), names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("own_loop_output"))
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    data, task_names = make_data()
    loader = DataLoader(data, batch_size=128, shuffle=True)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, len(task_names)))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    # 1. a recorder sized for the tasks and samples; snapshots at every epoch for the features
    recorder = DataMapRecorder(
        len(task_names), len(data), task_names=task_names,
        snapshot_epochs=range(1, args.epochs + 1),
    )  # fmt: skip
    for _ in range(args.epochs):
        for x, y, idx in loader:
            logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            recorder.update(logits, y, idx)  # 2. after each forward pass
        recorder.end_epoch()  # 3. after each epoch

    maps = recorder.compute()
    maps.save(args.out / "datamaps")

    # group the tasks from their data maps, and look at the result
    groups = group(maps, k=FAMILIES, random_state=0)
    for j, members in enumerate(groups.groups):
        print(f"group {j}: {', '.join(members)}")
    groups.save(args.out / "groups")
    shown = [f"family{f}_task0" for f in range(FAMILIES)]
    save_figure(datamap_figure(maps, tasks=shown), args.out / "datamaps.png")
    save_figure(memberships_figure(groups), args.out / "memberships.png", bbox_inches="tight")
    print(f"data maps, groups and figures are in {args.out}/")


if __name__ == "__main__":
    main()
