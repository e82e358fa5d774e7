"""Evaluate grouped models against the baselines under one budget, on one seed (deprecated).

:func:`compare_methods` is round 1's study: one seed, random groups drawn per seed, and systems
that were never paired or budget-checked together. The payoff harness
(:func:`stgmtl.payoff.run_payoff`, ``stgmtl payoff``) replaces it: asserted equal budgets, paired
seeds, fixed random partitions trained on every seed, a choice on validation confirmed on fresh
seeds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import fail
from stgmtl.specialise.baselines import Budget, group_width, train_one_model, train_random_groups
from stgmtl.specialise.data import targets_of, task_names_of
from stgmtl.specialise.metrics import task_metrics
from stgmtl.specialise.training import (
    GroupedModels,
    ModelFactory,
    TrainConfig,
    check_membership,
    train_group_models,
)

__all__ = ["METHODS", "compare_methods"]

#: Methods of :func:`compare_methods`: grouped models predicted by the membership-weighted
#: logit sum, grouped models predicted by each task's own group model, one model for all
#: tasks, and random groups of the same sizes (membership-weighted = own for one-hot groups).
METHODS = ("grouped", "grouped_own", "one_model", "random_groups")


def _rows(
    gm: GroupedModels, test: Any, targets: np.ndarray, method: str, mode: str, seed: int
) -> pl.DataFrame:
    logits = gm.predict(test, mode=mode)  # type: ignore[arg-type]
    table = task_metrics(logits, targets, gm.task_names, method=method, seed=seed)
    return table.with_columns(
        pl.lit(sum(m is not None for m in gm.models)).alias("num_models"),
        pl.lit(gm.num_parameters).alias("parameters"),
        pl.lit(gm.config.width).alias("width"),
        pl.lit(gm.train_seconds).alias("train_seconds"),
    )


def compare_methods(
    factory: ModelFactory,
    train: Any,
    test: Any,
    membership: np.ndarray,
    config: TrainConfig,
    *,
    budget: Budget = "params",
    methods: Sequence[str] = METHODS,
    progress: bool = True,
) -> pl.DataFrame:
    """Train and evaluate grouped models and the baselines; one table of per-task metrics.

    .. deprecated:: 0.3
        Use :func:`stgmtl.payoff.run_payoff` (``stgmtl payoff``); see the module docstring.

    Parameters
    ----------
    factory : callable
        ``factory(num_tasks, width) -> nn.Module`` for every model.
    train, test : Dataset or object with ``loader()``
        Training data and the (official test) evaluation data, with the same tasks (see
        :mod:`stgmtl.specialise.data`).
    membership : np.ndarray
        ``(T, k)`` task-group memberships (e.g. ``TaskGroups.membership``).
    config : TrainConfig
        Training of every model; ``config.width`` is the one-model baseline's width and
        ``config.seed`` the seed of every method (random groups are drawn with it as well).
    budget : {"params", "width"}, default "params"
        How group models are sized (see :mod:`stgmtl.specialise.baselines`).
    methods : sequence of str
        A subset of :data:`METHODS`.
    progress : bool, default True

    Returns
    -------
    polars.DataFrame
        :func:`~stgmtl.specialise.metrics.task_metrics` rows for every method, plus
        ``num_models, parameters, width, train_seconds`` per method.
    """
    warnings.warn(
        "compare_methods is deprecated since stgmtl 0.3 and will be removed: use "
        "stgmtl.payoff.run_payoff (stgmtl payoff), which compares systems at equal, asserted "
        "budgets on paired seeds and confirms its choice on fresh seeds (see CHANGELOG.md)",
        DeprecationWarning,
        stacklevel=2,
    )
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise fail("methods", f"a subset of {METHODS}", unknown)
    y_train, y_test = targets_of(train), targets_of(test).numpy()
    t = int(y_train.shape[1])
    if task_names_of(train, t) != task_names_of(test, y_test.shape[1]):
        raise fail("test", "the same tasks as train", task_names_of(test, y_test.shape[1])[:3])
    w = check_membership(membership, t)
    seed = config.seed
    tables = []
    if {"grouped", "grouped_own"} & set(methods):
        cfg = replace(config, width=group_width(factory, config, t, w.shape[1], budget))
        gm = train_group_models(factory, train, w, cfg, progress=progress)
        for method, mode in (("grouped", "weighted"), ("grouped_own", "own")):
            if method in methods:
                tables.append(_rows(gm, test, y_test, method, mode, seed))
    if "one_model" in methods:
        one = train_one_model(factory, train, config, progress=progress)
        tables.append(_rows(one, test, y_test, "one_model", "weighted", seed))
    if "random_groups" in methods:
        rg = train_random_groups(factory, train, w, config, budget=budget, random_state=seed,
                                 progress=progress)  # fmt: skip
        tables.append(_rows(rg, test, y_test, "random_groups", "weighted", seed))
    return pl.concat(tables)
