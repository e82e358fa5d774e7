import torch
from torch import nn
from torch.utils.data import TensorDataset

import stgmtl

# A small stand-in for your data: 2,000 samples, 12 binary tasks in 3 planted families of 4
g = torch.Generator().manual_seed(0)
x = torch.randn(2000, 20, generator=g)
rules = [x[:, :4].sum(1), x[:, 4] * x[:, 5], x[:, 6:12].abs().sum(1) - 4.8]
y = torch.stack([r + 0.3 * torch.randn(2000, generator=g) > 0 for r in rules for _ in range(4)], 1)
y = y.float()  # (N, T) 0/1 targets, one column per task
names = [f"family{f}_task{t}" for f in range(3) for t in range(4)]
train_set = TensorDataset(x, y)  # any map-style dataset of (inputs, targets)


def make_model(num_tasks: int = 12, width: float = 1.0) -> nn.Module:
    """Your network: one logit per task."""
    hidden = max(4, int(64 * width))
    return nn.Sequential(nn.Linear(20, hidden), nn.ReLU(), nn.Linear(hidden, num_tasks))
