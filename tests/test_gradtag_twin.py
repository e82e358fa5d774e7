"""Grad-TAG on a planted suite with an identical twin task: the twins must come out as each
other's strongest partner (the check asked for against the official code; see the module
docstring of :mod:`stgmtl.record.gradtag` for the step-by-step comparison)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from stgmtl.record.gradtag import grad_tag_affinity


def _suite(seed: int, n: int = 480) -> tuple[torch.Tensor, torch.Tensor]:
    """Tasks: 0 and 1 identical, 2 a different direction, 3 an XOR, 4 random labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    a = x[:, 0] + 0.5 * x[:, 1] > 0
    noise = torch.rand(n, generator=g) > 0.5
    y = torch.stack([a, a, x[:, 2] > 0, x[:, 3] * x[:, 4] > 0, noise], 1)
    return x, y.float()


def _trained(seed: int, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                          nn.Linear(16, y.shape[1]))  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        for i in range(0, len(x), 48):
            opt.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[i : i + 48]),
                                                                  y[i : i + 48])  # fmt: skip
            loss.backward()
            opt.step()
    return model


@pytest.mark.parametrize("seed", [0, 1])
def test_identical_twins_are_each_others_strongest_partner(seed):
    x, y = _suite(seed)
    model = _trained(seed, x, y)
    aff = grad_tag_affinity(model, [(x[:240], y[:240])], projection_dim=16, random_state=seed)
    assert aff.meta["offsets"] is False
    partners = aff.best_partners()
    assert partners[0] == "task_1" and partners[1] == "task_0", np.round(aff.values, 4)
    # and the twin is far from the unrelated sources, not a near-tie within noise
    v = aff.off_diagonal()
    assert v[1, 0] - np.nanmax(v[2:4, 0]) > 0.05 and v[0, 1] - np.nanmax(v[2:4, 1]) > 0.05
