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
from typing import Literal

import numpy as np

from stgmtl.datasets.suites import TaskSuite
from stgmtl.models import width_for_parameter_budget
from stgmtl.specialise.training import (
    GroupedModels,
    TrainConfig,
    check_membership,
    train_group_models,
)

__all__ = ["Budget", "group_width", "random_groups", "train_one_model", "train_random_groups"]

Budget = Literal["params", "width"]


def group_width(config: TrainConfig, num_tasks: int, k: int, budget: Budget = "params") -> float:
    """Width of each of ``k`` group models under ``budget`` (see the module docstring)."""
    if budget == "width":
        return float(config.width)
    if budget == "params":
        return width_for_parameter_budget(config.model, num_tasks, k, base_width=config.width)
    raise ValueError(f"budget must be 'params' or 'width', got {budget!r}")


def random_groups(membership: np.ndarray, random_state: int = 0) -> np.ndarray:
    """One-hot memberships of random groups with the sizes of ``membership``'s hard groups.

    Parameters
    ----------
    membership : np.ndarray
        ``(T, k)``; hard groups are the row-wise argmax.
    random_state : int, default 0

    Returns
    -------
    np.ndarray
        float64 ``(T, k)`` one-hot rows: the hard labels randomly permuted over the tasks.
    """
    w = np.asarray(membership, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"membership must be a (T, k) array, got shape {w.shape}")
    labels = w.argmax(1)
    perm = np.random.default_rng(random_state).permutation(labels)
    return np.eye(w.shape[1])[perm]


def train_one_model(
    suite: TaskSuite, config: TrainConfig, *, progress: bool = True
) -> GroupedModels:
    """The one-model baseline: one model on all tasks, every task loss weight 1 (``k = 1``)."""
    return train_group_models(suite, np.ones((suite.num_tasks, 1)), config, progress=progress)


def train_random_groups(
    suite: TaskSuite,
    membership: np.ndarray,
    config: TrainConfig,
    *,
    budget: Budget = "params",
    random_state: int = 0,
    progress: bool = True,
) -> GroupedModels:
    """``k`` models on random groups with the sizes of ``membership``'s hard groups.

    ``config.width`` is the baseline width; the group models get :func:`group_width`.
    """
    w = check_membership(membership, suite.num_tasks)
    rand = random_groups(w, random_state)
    cfg = replace(config, width=group_width(config, suite.num_tasks, w.shape[1], budget))
    return train_group_models(suite, rand, cfg, progress=progress)
