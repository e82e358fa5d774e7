"""How a partition of tasks is trained, and at what budget: the architecture registry.

An :class:`Architecture` is one registry entry (:data:`ARCHITECTURES`): its name, the run kind
that trains it, whether its memberships are soft, and its **budget rule** (parameters of the
``k`` groups together, in units of one model for all tasks at the recipe's width):

``network``
    Standley / TAG style: one network per group, each carrying only its own tasks' heads, at the
    common width at which the ``k`` networks together hold ``k`` models' parameters (budget
    ``k``). Its reference is one model at ``k`` times the parameters.
``separate``
    STG-MTL with hard groups: one network per group, own heads only, at the common width at
    which the ``k`` together hold one model's parameters (budget 1).
``separate-soft``
    STG-MTL with soft memberships: every group network carries all ``T`` heads, trained with
    membership-weighted losses and predicted by the membership-weighted logit sum (budget 1).
``branched`` / ``branched-early``
    One shared trunk and one branch per group (:mod:`stgmtl.specialise.branched`), the branch
    widths chosen so that the whole model holds one model's parameters (budget 1): a common
    branch width, then one more width step per branch in turn, larger groups first,
    while the budget allows (:func:`~stgmtl.specialise.branch_widths_for_budget`: the finer
    knob that keeps many branches within the band). ``branched`` splits where the factory's
    ``trunk()`` ends (the shipped CNNs: before the MLP head); ``branched-early`` one block
    earlier (``factory.with_split("early")``: the last conv block
    joins each branch, so the same budget leaves the branches wider relative to their inputs).
    **The split point is a hyperparameter chosen on validation**: list both, and the
    recommendation (:func:`~stgmtl.payoff.recommendation.recommend`) chooses among them on
    validation like any other system; the fresh-seed confirmation then tests that choice (the
    per-architecture test tables show both side by side: choosing between them there would be
    choosing on test). The budget is in parameters: the early split's branches convolve the
    trunk's feature map, so they cost more multiply-adds than one model (the tables show both).

:func:`build_members` turns a run into the networks it trains (:class:`Member`): one code path
for the worker's training, the time estimate and the budget check. Budgets are **asserted**:
the networks of a run with budget ``b`` hold between 95 % and 100 % of ``b`` times the
reference parameters, or :func:`build_members` raises :class:`BudgetError` before any training.
Groups of unequal size share one width (a group's cost differs only by its heads).

**The fine width knob.** Channel counts are integers, so a width alone moves parameters in
steps that can exceed 5 % for small networks. When the factory is also a
:class:`~stgmtl.specialise.branched.TrunkBranchFactory` (the shipped CNNs are), each network is
built as ``trunk(w)`` plus ``branch(n, w, bw)`` (exactly ``factory(n, w)`` when ``bw = w``): ``w``
is the largest width within the budget, then the branch width ``bw >= w`` (the hidden units of
the CNNs' MLP head) fills the rest. Other factories get the width alone, and a budget that it
cannot meet within the band fails with :class:`BudgetError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from stgmtl._checks import fail
from stgmtl.specialise.branched import (
    TrunkBranchFactory,
    branch_widths_for_budget,
    build_branched,
)
from stgmtl.specialise.training import ModelFactory, count_parameters, largest_fitting

__all__ = [
    "ARCHITECTURES",
    "BUDGET_BAND",
    "Architecture",
    "BudgetError",
    "Member",
    "architecture",
    "build_members",
    "reference_parameters",
    "split_factory",
    "width_for_parameters",
]

#: A budgeted system holds between ``BUDGET_BAND[0]`` and ``BUDGET_BAND[1]`` of its budget.
BUDGET_BAND = (0.95, 1.0)


class BudgetError(ValueError):
    """A run's networks fall outside their parameter budget band (:data:`BUDGET_BAND`)."""


@dataclass(frozen=True)
class Architecture:
    """One way to train a partition (see the module docstring).

    Attributes
    ----------
    name : str
        Its id in tables and on the command line.
    kind : str
        The run kind that trains it (:data:`stgmtl.payoff.runs.RUN_KINDS`).
    soft : bool
        Trained with soft memberships (needs a grouping with distances).
    per_group_budget : bool
        Budget ``k`` (one model's parameters per group) instead of 1.
    split : str
        ``"branched"`` kind: the factory's split point (``factory.with_split(split)``); empty
        for the factory's own.
    """

    name: str
    kind: str
    soft: bool = False
    per_group_budget: bool = False
    split: str = ""

    def budget(self, k: int) -> float:
        """Parameters of a ``k``-group system, in units of one model for all tasks."""
        return float(k) if self.per_group_budget else 1.0


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("network", "separate", per_group_budget=True),
        Architecture("separate", "separate"),
        Architecture("separate-soft", "separate", soft=True),
        Architecture("branched", "branched"),
        Architecture("branched-early", "branched", split="early"),
    )
}


def architecture(name: str) -> Architecture:
    """The registry entry ``name``, or a ValueError listing the registered names."""
    if name not in ARCHITECTURES:
        raise fail("architectures", f"one of {sorted(ARCHITECTURES)}", name)
    return ARCHITECTURES[name]


@dataclass(frozen=True)
class Member:
    """One network a run trains.

    Attributes
    ----------
    build : callable
        ``build(num_outputs, width) -> nn.Module`` (the user's factory, or trunk + branch at a
        fixed branch width).
    columns : tuple of int
        Which of the run's tasks its outputs are, in output order.
    weights : np.ndarray
        Loss weight of each output.
    width : float
    """

    build: ModelFactory
    columns: tuple[int, ...]
    weights: np.ndarray
    width: float

    def model(self) -> nn.Module:
        """A freshly built (untrained) network."""
        return self.build(len(self.columns), self.width)


def split_factory(factory: Any, split: str) -> Any:
    """``factory`` split into trunk and branch at ``split`` (empty: as it is)."""
    if not split:
        return factory
    with_split = getattr(factory, "with_split", None)
    if not callable(with_split):
        raise fail(
            "architectures",
            f"a factory with with_split() for the split point {split!r} (e.g. "
            "stgmtl.models.model_factory(name)); or train 'branched' only",
            type(factory).__name__,
            error=TypeError,
        )
    return with_split(split)


def _is_trunk_branch(factory: Any) -> bool:
    return isinstance(factory, TrunkBranchFactory)


def _net(factory: Any, n: int, width: float, bw: float | None) -> nn.Module:
    if bw is None:
        return factory(n, width)
    return build_branched(factory, [list(range(n))], width, bw)


def _params(factory: Any, sizes: Sequence[int], width: float, bw: float | None = None) -> int:
    return sum(count_parameters(_net(factory, n, width, bw)) for n in sizes)


def reference_parameters(factory: ModelFactory, num_tasks: int, width: float) -> int:
    """Parameters of one model for all ``num_tasks`` tasks at ``width`` (budget unit 1)."""
    return count_parameters(factory(num_tasks, width))


def width_for_parameters(
    factory: Any, sizes: Sequence[int], target: float, start: float
) -> tuple[float, float | None]:
    """Common ``(width, branch_width)`` at which networks with ``sizes`` outputs hold at most
    ``target`` parameters, as close to it as the knobs allow (see the module docstring).

    Returns
    -------
    width : float
    branch_width : float or None
        None when the factory has no trunk / branch split (the width alone is used).
    """
    width = largest_fitting(lambda w: _params(factory, sizes, w) <= target, start)
    if not _is_trunk_branch(factory):
        return width, None
    bw = largest_fitting(lambda b: _params(factory, sizes, width, max(b, width)) <= target, width)
    return width, max(bw, width)


def _check_band(spec: Any, total: int, target: float) -> None:
    lo, hi = BUDGET_BAND
    if not (lo * target - 0.5 <= total <= hi * target + 0.5):
        raise BudgetError(
            f"{spec.describe()}: its networks hold {total} parameters, outside "
            f"[{lo:.0%}, {hi:.0%}] of the budget {spec.budget:g} x {target / spec.budget:.0f} = "
            f"{target:.0f}: the model's width cannot be set finely enough at this size (give the "
            "factory a finer width knob, or use a larger model)"
        )


def build_members(
    spec: Any, factory: Any, base_width: float
) -> tuple[list[Member], np.ndarray, dict[str, Any]]:
    """The networks ``spec`` trains, how their logits combine, and facts for the run's record.

    Parameters
    ----------
    spec : RunSpec
    factory : callable
        The user's ``factory(num_tasks, width)`` (a ``TrunkBranchFactory`` for ``"branched"``).
    base_width : float
        The recipe's width: one model for all of ``spec.tasks`` at this width is budget 1.

    Returns
    -------
    members : list of Member
    combine : np.ndarray
        ``(T, len(members))``: task ``t``'s prediction is ``sum_m combine[t, m] * logit_m(t)``
        (a member without task ``t``'s output has weight 0 there).
    meta : dict
        ``width``, ``budget``, ``reference_parameters`` (and ``branch_width``).

    Raises
    ------
    BudgetError
        When a budgeted run's networks fall outside :data:`BUDGET_BAND`.
    """
    t = len(spec.tasks)
    ref = reference_parameters(factory, t, base_width)
    target = spec.budget * ref
    meta: dict[str, Any] = {"budget": float(spec.budget), "reference_parameters": ref}
    if spec.kind == "network":
        if spec.budget == 1.0:
            meta["width"] = float(base_width)
            return [Member(factory, tuple(range(t)), np.ones(t), base_width)], np.ones((t, 1)), meta
        return _fill(
            [tuple(range(t))],
            [np.ones(t)],
            np.ones((t, 1)),
            spec,
            factory,
            target,
            base_width,
            meta,
        )
    pos = {name: i for i, name in enumerate(spec.tasks)}
    groups = [[pos[n] for n in g] for g in spec.groups]
    if spec.kind == "branched":
        factory = split_factory(factory, spec.split)
        bws = branch_widths_for_budget(factory, [len(g) for g in groups], base_width)
        build = _branched(factory, groups, bws)
        total = count_parameters(build(t, base_width))
        _check_band(spec, total, target)
        meta.update(width=float(base_width), branch_width=min(bws), branch_width_max=max(bws))
        return [Member(build, tuple(range(t)), np.ones(t), base_width)], np.ones((t, 1)), meta
    w = spec.membership_matrix()
    if spec.membership:  # soft: every network carries every head, loss-weighted
        return _fill(
            [tuple(range(t))] * spec.k,
            [w[:, c] for c in range(spec.k)],
            w,
            spec,
            factory,
            target,
            base_width,
            meta,
        )
    return _fill(
        [tuple(g) for g in groups],
        [np.ones(len(g)) for g in groups],
        w,
        spec,
        factory,
        target,
        base_width,
        meta,
    )


def _fill(
    cols: list[tuple[int, ...]],
    weights: list[np.ndarray],
    combine: np.ndarray,
    spec: Any,
    factory: Any,
    target: float,
    base_width: float,
    meta: dict[str, Any],
) -> tuple[list[Member], np.ndarray, dict[str, Any]]:
    """Members of a budgeted run at the common width (and branch width) that fills it; member
    ``m`` outputs the tasks ``cols[m]``."""
    sizes = [len(c) for c in cols]
    width, bw = width_for_parameters(factory, sizes, target, base_width)
    _check_band(spec, _params(factory, sizes, width, bw), target)
    build = factory if bw is None else _fixed_branch(factory, bw)
    meta.update(width=width, branch_width=bw)
    members = [Member(build, c, wt, width) for c, wt in zip(cols, weights, strict=True)]
    return members, combine, meta


def _fixed_branch(factory: Any, bw: float) -> Callable[[int, float], nn.Module]:
    def build(num_tasks: int, width: float) -> nn.Module:
        return _net(factory, num_tasks, width, bw)

    return build


def _branched(
    factory: Any, groups: list[list[int]], bw: list[float]
) -> Callable[[int, float], nn.Module]:
    def build(num_tasks: int, width: float) -> nn.Module:
        return build_branched(factory, groups, width, bw)

    return build
