"""A shared trunk with one branch per task group, at the parameters of one model.

The protocol: a :class:`TrunkBranchFactory` is a model factory (``factory(num_tasks, width) ->
nn.Module``, as every grouped-training function takes) that can also build its model in two
parts:

* ``factory.trunk(width)``: the shared lower layers (inputs -> features);
* ``factory.branch(num_tasks, width, branch_width)``: the upper layers and heads, reading the
  output of ``trunk(width)`` and returning ``(B, num_tasks)`` logits; ``branch_width`` scales
  only the branch's own layers;

such that ``trunk(w)`` followed by ``branch(T, w, w)`` is the whole model ``factory(T, w)``
(same layers, same parameter count). :func:`stgmtl.models.model_factory` implements it for the
CIFAR CNNs and ResNet-18; implementing it for your own model takes two small methods.

:class:`BranchedModel` is the grouped architecture: one trunk, and for every group ``c`` a
branch with the logits of that group's tasks. Its forward returns ``(B, T)`` logits in task
order, so it trains through :func:`stgmtl.loop.train_loop` like any model. The budget is
that of one model for all tasks: :func:`branch_width_for_budget` picks the largest branch width
at which trunk + ``k`` branches have at most the parameters of ``factory(T, width)``
(:func:`branch_widths_for_budget` then adds one width step per branch while they fit);
:func:`count_macs` measures the multiply-adds per input of both. With the CNNs' default split
the branches are linear layers, so their parameters and multiply-adds move together and both
match one model's; when a branch holds convolutions (``model_factory(name, split="early")``,
ResNet-18) the budget is in parameters, and the branches cost more multiply-adds than one model
(e.g. 1.4 - 1.9x for the CNNs at k = 5 - 10).

Groups are hard here: every task is in exactly one branch. (Soft, membership-weighted groups
are STG-MTL's ``k`` separate networks, :func:`~stgmtl.specialise.training.train_group_models`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from stgmtl._checks import check_int, fail
from stgmtl.specialise.training import count_parameters, fitting_bounds, largest_fitting

__all__ = [
    "BranchedModel",
    "TrunkBranchFactory",
    "branch_width_for_budget",
    "branch_widths_for_budget",
    "build_branched",
    "count_macs",
    "groups_from_labels",
]


@runtime_checkable
class TrunkBranchFactory(Protocol):
    """A model factory that also builds its model as a shared trunk and a branch.

    See the module docstring for the contract; :class:`stgmtl.models.CNNFactory` is an
    implementation.
    """

    def __call__(self, num_tasks: int, width: float) -> nn.Module:
        """The whole model: ``trunk(width)`` then ``branch(num_tasks, width, width)``."""
        ...

    def trunk(self, width: float) -> nn.Module:
        """The shared lower layers."""
        ...

    def branch(self, num_tasks: int, width: float, branch_width: float) -> nn.Module:
        """Upper layers and ``num_tasks`` logits on the output of ``trunk(width)``."""
        ...


def groups_from_labels(labels: Sequence[int] | np.ndarray) -> list[list[int]]:
    """Task indices per group from hard labels ``(T,)``; empty groups are dropped."""
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0 or lab.dtype.kind not in "iu":
        raise fail("labels", "a non-empty 1-D array of group ids", lab.shape)
    return [np.flatnonzero(lab == g).tolist() for g in np.unique(lab)]


def _check_groups(groups: Sequence[Sequence[int]], num_tasks: int | None = None) -> list[list[int]]:
    out = [[int(t) for t in g] for g in groups]
    flat = sorted(t for g in out for t in g)
    t = len(flat) if num_tasks is None else num_tasks
    if not out or any(len(g) == 0 for g in out) or flat != list(range(t)):
        raise fail("groups", f"non-empty groups that partition the tasks 0..{t - 1}", groups)
    return out


class BranchedModel(nn.Module):
    """One shared trunk and one branch per task group; logits ``(B, T)`` in task order.

    Parameters
    ----------
    trunk : nn.Module
        Shared lower layers.
    branches : sequence of nn.Module
        Branch ``c`` maps the trunk's output to ``(B, len(groups[c]))`` logits.
    groups : sequence of sequence of int
        The task indices of each branch, a partition of ``0 .. T-1``.
    """

    def __init__(
        self, trunk: nn.Module, branches: Sequence[nn.Module], groups: Sequence[Sequence[int]]
    ) -> None:
        super().__init__()
        groups = _check_groups(groups)
        if len(branches) != len(groups):
            raise fail("branches", f"one branch per group ({len(groups)})", len(branches))
        self.trunk = trunk
        self.branches = nn.ModuleList(branches)
        self.groups = groups
        order = torch.tensor([t for g in groups for t in g], dtype=torch.long)
        # logits of the concatenated branches are in `order`; `inverse` puts them in task order
        self.inverse: torch.Tensor
        self.register_buffer("inverse", torch.argsort(order), persistent=False)

    @property
    def num_tasks(self) -> int:
        """Number of tasks ``T``."""
        return int(self.inverse.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, T)`` logits."""
        h = self.trunk(x)
        out = torch.cat([b(h) for b in self.branches], dim=1)
        return out.index_select(1, self.inverse)


def build_branched(
    factory: TrunkBranchFactory,
    groups: Sequence[Sequence[int]],
    width: float,
    branch_width: float | Sequence[float],
) -> BranchedModel:
    """``BranchedModel(factory.trunk(width), [factory.branch(len(g), width, bw_g)])``.

    ``branch_width`` is one width for every branch, or one per group
    (:func:`branch_widths_for_budget`).
    """
    if not isinstance(factory, TrunkBranchFactory):
        raise fail(
            "factory",
            "a TrunkBranchFactory (with trunk() and branch()), e.g. "
            "stgmtl.models.model_factory(name)",
            type(factory).__name__,
            error=TypeError,
        )
    groups = _check_groups(groups)
    widths = _per_branch(branch_width, len(groups))
    trunk = factory.trunk(width)
    branches = [factory.branch(len(g), width, bw) for g, bw in zip(groups, widths, strict=True)]
    return BranchedModel(trunk, branches, groups)


def _per_branch(branch_width: float | Sequence[float], k: int) -> list[float]:
    if isinstance(branch_width, int | float):
        return [float(branch_width)] * k
    widths = [float(b) for b in branch_width]
    if len(widths) != k:
        raise fail("branch_width", f"one width, or one per group ({k})", len(widths))
    return widths


def _budget_and_trunk(
    factory: TrunkBranchFactory, sizes: Sequence[int], width: float
) -> tuple[int, int]:
    return count_parameters(factory(sum(sizes), width)), count_parameters(factory.trunk(width))


def branch_width_for_budget(
    factory: TrunkBranchFactory, group_sizes: Sequence[int], width: float = 1.0
) -> float:
    """Largest common branch width at which trunk + one branch per group fit one model's
    parameters.

    Bisection (:func:`~stgmtl.specialise.training.largest_fitting`) on ``bw <= width`` for
    ``params(trunk(width)) + sum_c params(branch(n_c, width, bw)) <= params(factory(T,
    width))``, ``T = sum(group_sizes)``. With one group this is ``width``.

    Parameters
    ----------
    factory : TrunkBranchFactory
    group_sizes : sequence of int
        Tasks per group.
    width : float
        Width of the one-model baseline (and of the shared trunk).

    Returns
    -------
    float
    """
    sizes = [check_int("group_sizes", n, low=1) for n in group_sizes]
    if not sizes:
        raise fail("group_sizes", "at least one group", group_sizes)
    if len(sizes) == 1:
        return float(width)
    budget, trunk = _budget_and_trunk(factory, sizes, width)

    def total(bw: float) -> int:
        return trunk + sum(count_parameters(factory.branch(n, width, bw)) for n in sizes)

    bw = largest_fitting(lambda b: total(b) <= budget, width, cap=width)
    if total(bw) > budget:
        raise fail(
            "group_sizes",
            f"groups whose branches fit the budget of {budget} parameters",
            f"{len(sizes)} groups needing {total(bw)} at the smallest width",
        )
    return bw


def branch_widths_for_budget(
    factory: TrunkBranchFactory, group_sizes: Sequence[int], width: float = 1.0
) -> list[float]:
    """Per-branch widths that fill one model's parameters more finely than a common width.

    Layer sizes are integers, so the common width of :func:`branch_width_for_budget` can
    leave a share of the budget unused when there are many branches (one more hidden unit in
    each of 10 branches is about 6 % of a small CNN). Starting from that width, branches take
    one more width step each (the smallest width increase that adds parameters to that branch:
    a hidden unit, or a channel where the branch holds convolutions), in turn, larger groups
    first, while the whole stays within the budget. Every branch's width differs from the
    others' by at most one such step.

    Returns
    -------
    list of float
        One branch width per group, in the order of ``group_sizes``.
    """
    bw = branch_width_for_budget(factory, group_sizes, width)
    sizes = [int(n) for n in group_sizes]
    if len(sizes) == 1:
        return [bw]
    budget, trunk = _budget_and_trunk(factory, sizes, width)
    widths = [bw] * len(sizes)
    params = [count_parameters(factory.branch(n, width, bw)) for n in sizes]
    for c in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        n, now = sizes[c], params[c]

        def same(b: float, n: int = n, now: int = now) -> bool:
            return count_parameters(factory.branch(n, width, b)) <= now

        step = fitting_bounds(same, widths[c])[1]
        more = count_parameters(factory.branch(n, width, step))
        if trunk + sum(params) - now + more > budget:
            continue
        widths[c], params[c] = step, more
    return widths


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds per input of ``model``'s convolutions and linear layers.

    Counted with forward hooks on one batch ``example``: a ``Conv2d`` costs ``out_elements *
    in_channels / groups * kernel_h * kernel_w``, a ``Linear`` ``in_features * out_features``
    per row; divided by the batch size. Normalisation, activations and pooling are not counted.
    """
    total = [0]

    def conv_hook(mod: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        kh, kw = mod.kernel_size
        total[0] += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod: nn.Linear, inp: Any, _out: torch.Tensor) -> None:
        rows = inp[0].numel() // mod.in_features
        total[0] += rows * mod.in_features * mod.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(round(total[0] / example.shape[0]))
