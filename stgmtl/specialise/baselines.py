"""Baselines in the grouped-training API: one model for all tasks, and random groups.

The budget (the same for every method) is defined as:

- the same :class:`~stgmtl.specialise.training.TrainConfig` (epochs, batch size, optimiser,
  data, seed) for every model; and
- ``budget="params"`` (default): ``k`` group models each get the width at which together they
  have about the parameters of the one-model baseline (:func:`group_width`); for the small
  CNN and ResNet this also keeps the multiply-adds per image about equal; or
- ``budget="width"``: every group model has the baseline's width (``k`` times the parameters
  and compute of the baseline).

Random groups have exactly the sizes of the real grouping's hard groups, so comparing them with
the grouping separates the value of *which* tasks are together from that of having ``k`` models.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import numpy as np

from stgmtl._checks import check_choice, check_int, fail, seed_from
from stgmtl.specialise.data import targets_of
from stgmtl.specialise.training import (
    GroupedModels,
    ModelFactory,
    TrainConfig,
    check_membership,
    count_parameters,
    largest_fitting,
    train_group_models,
)

__all__ = [
    "Budget",
    "group_width",
    "random_groups",
    "train_one_model",
    "train_random_groups",
    "width_for_budget",
]

Budget = Literal["params", "width"]


def width_for_budget(
    factory: ModelFactory, num_tasks: int, num_models: int, base_width: float = 1.0
) -> float:
    """Width at which ``num_models`` models together have about the parameters of one model.

    Bisection (:func:`~stgmtl.specialise.training.largest_fitting`) for the largest ``w`` with
    ``num_models * params(factory(T, w)) <= params(factory(T, base_width))``.

    Parameters
    ----------
    factory : callable
        ``factory(num_tasks, width) -> nn.Module``.
    num_tasks : int
        Output logits of every model.
    num_models : int
        Number of models that share the budget (``k`` group models).
    base_width : float, default 1.0
        Width of the single reference model.

    Returns
    -------
    float
        The width (``base_width`` when ``num_models == 1``).
    """
    check_int("num_models", num_models, low=1)
    if num_models == 1:
        return float(base_width)
    budget = count_parameters(factory(num_tasks, base_width))

    def fits(w: float) -> bool:
        return num_models * count_parameters(factory(num_tasks, w)) <= budget

    width = largest_fitting(fits, base_width, cap=base_width)
    if not fits(width):
        raise fail(
            "num_models",
            f"models that fit {budget} parameters together at some width",
            f"{num_models} models needing more at the smallest width",
        )
    return width


def group_width(
    factory: ModelFactory, config: TrainConfig, num_tasks: int, k: int, budget: Budget = "params"
) -> float:
    """Width of each of ``k`` group models under ``budget`` (see the module docstring)."""
    check_choice("budget", budget, ("params", "width"))
    if budget == "width":
        return float(config.width)
    return width_for_budget(factory, num_tasks, k, base_width=config.width)


def random_groups(membership: np.ndarray, random_state: Any = 0) -> np.ndarray:
    """One-hot memberships of random groups with the sizes of ``membership``'s hard groups.

    Parameters
    ----------
    membership : np.ndarray
        ``(T, k)``; hard groups are the row-wise argmax.
    random_state : None, int, numpy Generator or RandomState

    Returns
    -------
    np.ndarray
        float64 ``(T, k)`` one-hot rows: the hard labels randomly permuted over the tasks.
    """
    w = np.asarray(membership, dtype=np.float64)
    if w.ndim != 2:
        raise fail("membership", "a (T, k) array", w.shape)
    labels = w.argmax(1)
    perm = np.random.default_rng(seed_from("random_state", random_state)).permutation(labels)
    return np.eye(w.shape[1])[perm]


def train_one_model(
    factory: ModelFactory, data: Any, config: TrainConfig, *, progress: bool = True
) -> GroupedModels:
    """The one-model baseline: one model on all tasks, every task loss weight 1 (``k = 1``)."""
    t = int(targets_of(data).shape[1])
    return train_group_models(factory, data, np.ones((t, 1)), config, progress=progress)


def train_random_groups(
    factory: ModelFactory,
    data: Any,
    membership: np.ndarray,
    config: TrainConfig,
    *,
    budget: Budget = "params",
    random_state: Any = 0,
    progress: bool = True,
) -> GroupedModels:
    """``k`` models on random groups with the sizes of ``membership``'s hard groups.

    ``config.width`` is the baseline width; the group models get :func:`group_width`.
    """
    t = int(targets_of(data).shape[1])
    w = check_membership(membership, t)
    rand = random_groups(w, random_state)
    cfg = replace(config, width=group_width(factory, config, t, w.shape[1], budget))
    return train_group_models(factory, data, rand, cfg, progress=progress)
