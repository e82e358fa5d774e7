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
from stgmtl.specialise.baselines import width_for_budget
from stgmtl.specialise.branched import (
    BranchedModel,
    TrunkBranchFactory,
    branch_width_for_budget,
    branch_widths_for_budget,
    build_branched,
    count_macs,
    groups_from_labels,
)
from stgmtl.specialise.training import fitting_bounds, largest_fitting

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("name", ["cnn", "wide-cnn", "resnet18"])
@pytest.mark.parametrize("width", [1.0, 0.5, 0.3])
@pytest.mark.parametrize("where", ["late", "early"])
def test_trunk_then_branch_is_the_whole_model(name: str, width: float, where: str) -> None:
    f = model_factory(name, where)
    assert isinstance(f, TrunkBranchFactory)
    torch.manual_seed(0)
    whole = f(6, width)
    torch.manual_seed(0)
    split = nn.Sequential(f.trunk(width), f.branch(6, width, width))
    assert count_parameters(whole) == count_parameters(split)
    # the same layers in the same order, built from the same random stream: same weights,
    # same function (so one branch at the model's width is the model itself, at either split)
    wp, sp = list(whole.parameters()), list(split.parameters())
    assert [p.shape for p in wp] == [p.shape for p in sp]
    assert all(torch.equal(a, b) for a, b in zip(wp, sp, strict=True))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(split.eval()(x), whole.eval()(x))


@pytest.mark.parametrize("name", ["cnn", "wide-cnn", "resnet18"])
def test_an_early_split_moves_one_block_into_the_branch(name: str) -> None:
    late, early = model_factory(name), model_factory(name, "early")
    t_late, t_early = count_parameters(late.trunk(0.5)), count_parameters(early.trunk(0.5))
    b_late = count_parameters(late.branch(4, 0.5, 0.5))
    b_early = count_parameters(early.branch(4, 0.5, 0.5))
    assert t_early < t_late and b_early > b_late
    assert t_late - t_early == b_early - b_late  # the moved block
    assert early != late and "split='early'" in early.cache_id
    assert pickle.loads(pickle.dumps(early)) == early and early.with_split("late") == late
    with pytest.raises(ValueError, match="split: expected one of"):
        model_factory(name, "middle")


def test_largest_fitting_agrees_with_a_scan() -> None:
    grid = np.linspace(1e-3, 3.0, 30001)
    for threshold in (0.0123, 0.5, 1.0, 2.7):
        fits = lambda x, th=threshold: x <= th  # noqa: E731
        assert largest_fitting(fits, 0.5) == pytest.approx(threshold, abs=1e-9)
        capped = largest_fitting(fits, 0.5, cap=1.0)
        assert capped == pytest.approx(min(threshold, 1.0), abs=1e-9)
        assert (
            capped == grid[fits(grid) & (grid <= 1.0)].max()
            or abs(capped - grid[fits(grid) & (grid <= 1.0)].max()) < 1e-4
        )


def test_fitting_bounds_at_the_edges() -> None:
    def below(th: float):
        return lambda x: x <= th

    # start fits at the cap: the cap; start above the cap is clamped to it
    assert largest_fitting(below(5.0), 1.0, cap=1.0) == 1.0
    assert fitting_bounds(below(5.0), 3.0, cap=1.0) == (1.0, 1.0)
    # start does not fit, with a cap: the threshold
    assert largest_fitting(below(0.3), 1.0, cap=1.0) == pytest.approx(0.3, abs=1e-9)
    lo, hi = fitting_bounds(below(0.3), 1.0, cap=1.0)
    assert lo <= 0.3 < hi and hi - lo < 1e-9
    # nothing fits: the result does not fit either (callers check), and width_for_budget raises
    assert not below(-1.0)(largest_fitting(below(-1.0), 1.0))
    with pytest.raises(ValueError, match="num_models"):
        width_for_budget(lambda t, w: nn.Linear(1, t), 3, 4)  # only biases scale: never fits


_CASES = [
    (name, where, sizes)
    for name, where in (("cnn", "late"), ("wide-cnn", "late"), ("wide-cnn", "early"))
    for sizes in ([10] * 10, [5] * 20, [30, 30, 20, 10, 5, 5])
] + [("resnet18", "early", [30, 30, 20, 10, 5, 5])]


@pytest.mark.parametrize(("name", "where", "sizes"), _CASES)
def test_per_branch_widths_fill_the_budget_one_step_at_a_time(
    name: str, where: str, sizes: list[int]
) -> None:
    f = model_factory(name, where)
    t = sum(sizes)
    one = count_parameters(f(t, 0.5))
    common = branch_width_for_budget(f, sizes, 0.5)
    widths = branch_widths_for_budget(f, sizes, 0.5)
    trunk = count_parameters(f.trunk(0.5))
    per = [count_parameters(f.branch(n, 0.5, b)) for n, b in zip(sizes, widths, strict=True)]
    base = [count_parameters(f.branch(n, 0.5, common)) for n in sizes]
    assert trunk + sum(per) <= one and trunk + sum(per) >= trunk + sum(base)
    assert min(widths) >= common
    # each branch took at most one step (the next width that adds parameters), and no branch
    # left un-stepped could have taken its step within the budget
    for n, p0, p1 in zip(sizes, base, per, strict=True):
        if p1 == p0:
            step = largest_fitting(
                lambda x, n=n, p0=p0: count_parameters(f.branch(n, 0.5, x)) <= p0, common
            )
            more = count_parameters(f.branch(n, 0.5, step * (1 + 1e-6))) - p0
            assert more > 0 and trunk + sum(per) + more > one
        else:
            assert count_parameters(f.branch(n, 0.5, common)) < p1


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
