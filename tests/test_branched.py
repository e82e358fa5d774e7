"""Shared trunk with one branch per group: the factory protocol, order of logits, budget, MACs."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from stgmtl.models import CNNFactory, model_factory
from stgmtl.specialise import count_parameters
from stgmtl.specialise.branched import (
    BranchedModel,
    TrunkBranchFactory,
    branch_width_for_budget,
    build_branched,
    count_macs,
    groups_from_labels,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("name", ["cnn", "wide-cnn", "resnet18"])
@pytest.mark.parametrize("width", [1.0, 0.5, 0.3])
def test_trunk_then_branch_is_the_whole_model(name: str, width: float) -> None:
    f = model_factory(name)
    assert isinstance(f, TrunkBranchFactory)
    whole = f(6, width)
    split = nn.Sequential(f.trunk(width), f.branch(6, width, width))
    assert count_parameters(whole) == count_parameters(split)
    shapes = sorted(tuple(p.shape) for p in whole.parameters())
    assert shapes == sorted(tuple(p.shape) for p in split.parameters())
    x = torch.randn(2, 3, 32, 32)
    assert split.eval()(x).shape == (2, 6)


def test_factory_pickles_and_compares_by_name() -> None:
    f = model_factory("wide-cnn")
    g = pickle.loads(pickle.dumps(f))
    assert g == f and hash(g) == hash(f) and f != model_factory("cnn")
    assert f.cache_id == "stgmtl.models.model_factory('wide-cnn')"
    assert isinstance(f, CNNFactory)


def test_branched_logits_come_back_in_task_order() -> None:
    torch.manual_seed(0)
    f = model_factory("cnn")
    groups = [[3, 0], [1], [4, 2]]
    m = build_branched(f, groups, 0.25, 0.2).eval()
    x = torch.randn(5, 3, 32, 32)
    out = m(x)
    h = m.trunk(x)
    ref = torch.empty(5, 5)
    for branch, g in zip(m.branches, groups, strict=True):
        ref[:, g] = branch(h)  # branch c's j-th logit is task g[j]
    torch.testing.assert_close(out, ref)
    assert m.num_tasks == 5


def test_branched_model_rejects_bad_groups() -> None:
    f = model_factory("cnn")
    with pytest.raises(ValueError, match="groups: expected"):
        build_branched(f, [[0, 1], [1, 2]], 0.25, 0.25)
    with pytest.raises(ValueError, match="groups: expected"):
        build_branched(f, [[0], [2]], 0.25, 0.25)
    with pytest.raises(ValueError, match="branches: expected"):
        BranchedModel(f.trunk(0.25), [f.branch(1, 0.25, 0.25)], [[0], [1]])
    with pytest.raises(TypeError, match="factory: expected a TrunkBranchFactory"):
        build_branched(lambda t, w: nn.Linear(3, t), [[0]], 1.0, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["cnn", "wide-cnn"])
@pytest.mark.parametrize("sizes", [[5, 5, 10], [1] * 20, [7, 13]])
def test_branch_budget_matches_one_models_parameters_and_macs(name: str, sizes: list[int]) -> None:
    f = model_factory(name)
    t = sum(sizes)
    one = f(t, 0.5)
    bw = branch_width_for_budget(f, sizes, 0.5)
    bounds = np.cumsum([0, *sizes])
    groups = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    m = build_branched(f, groups, 0.5, bw)
    p_one, p_br = count_parameters(one), count_parameters(m)
    assert p_br <= p_one and p_br > 0.9 * p_one
    x = torch.randn(2, 3, 32, 32)
    # the branches are linear layers, so their multiply-adds follow their parameters
    assert count_macs(m, x) == pytest.approx(count_macs(one, x), rel=0.03)
    assert branch_width_for_budget(f, [t], 0.5) == 0.5


def test_count_macs_against_a_hand_count() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, groups=2),
        nn.Flatten(),
        nn.Linear(8 * 15 * 15, 5),
    )
    x = torch.randn(3, 3, 32, 32)
    hand = 32 * 32 * 4 * 3 * 9 + 15 * 15 * 8 * 2 * 9 + 8 * 15 * 15 * 5
    assert count_macs(model, x) == hand
    before = copy.deepcopy(model.state_dict())
    model.train()
    count_macs(model, x)
    assert model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_groups_from_labels() -> None:
    assert groups_from_labels(np.array([2, 0, 2, 5])) == [[1], [0, 2], [3]]
    with pytest.raises(ValueError, match="labels: expected"):
        groups_from_labels(np.array([0.5, 1.0]))
