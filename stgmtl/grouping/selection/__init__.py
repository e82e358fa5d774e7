"""Selecting task groups from an affinity: TAG, Standley, best partition, and k-means beyond.

Every back-end takes any affinity (a :class:`~stgmtl.affinity.TaskAffinity` or a ``(T, T)``
array with names; ``[i, j]`` = effect of task ``i`` on task ``j``, larger = more helpful) and
returns one :class:`TaskSelection`: networks (possibly overlapping), the network serving each
task, the score and the cost.

=============  ==========================================  =====================================
method         rule                                        cost of the search
=============  ==========================================  =====================================
``tag``        TAG (Fifty et al. 2021): up to ``k``        exact, ``O(k 3^T)``; ``T <= 14`` by
               overlapping networks, each task served by   default (``3^14`` = 4.8 M pairs;
               its best, mean in-group affinity onto it    hard limit 16)
``standley``   Standley et al. 2020: networks within a     exact DFS, worst case
               cost budget (full 1, half-size single       ``O(C^(budget / 0.5))`` over ``C``
               0.5), each task served by its best;         candidates; ``C <= 63`` by default
               trained results or an affinity; HOA
``partition``  best split into non-overlapping groups      exact, ``O(k 3^T)`` (vs Bell(T)
               (TAG's score, or total within-group         partitions); ``T <= 14`` by default
               affinity)
``ptg``        Principled Task Grouping (Wang et al.       exact MILP over the ``2^T - 1``
               2024): exactly ``n`` distinct, possibly     groups (scipy's HiGHS); ``T <= 12``
               overlapping groups, sum of (1/|G|) x        by default
               in-group gains, diagonal included
``kmeans``     spectral embedding of the affinity ->       ``O(T^2 d)`` + k-means; any ``T``
               k-means -> one group per task               (the scalable route)
=============  ==========================================  =====================================

:func:`select` dispatches by name; the back-ends are also public (:func:`tag_select`,
:func:`standley_select`, :func:`best_partition`, :func:`ptg_select`, :func:`kmeans_select`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stgmtl._checks import check_choice, check_float, check_int, fail
from stgmtl.affinity import TaskAffinity
from stgmtl.grouping.grouper import group
from stgmtl.grouping.groups import TaskGroups
from stgmtl.grouping.selection.exhaustive import (
    PARTITION_OBJECTIVES,
    TAG_SINGLETON_SCORE,
    best_partition,
    serve,
    tag_select,
)
from stgmtl.grouping.selection.inputs import affinity_values
from stgmtl.grouping.selection.ptg import ptg_select
from stgmtl.grouping.selection.result import TaskSelection
from stgmtl.grouping.selection.standley import (
    SearchResult,
    network_candidates,
    standley_cost,
    standley_search,
    standley_select,
)
from stgmtl.grouping.selection.subsets import DEFAULT_MAX_TASKS, MAX_TASKS, group_scores

__all__ = [
    "DEFAULT_MAX_TASKS",
    "MAX_TASKS",
    "PARTITION_OBJECTIVES",
    "SELECT_METHODS",
    "SearchResult",
    "TAG_SINGLETON_SCORE",
    "TaskSelection",
    "best_partition",
    "kmeans_select",
    "network_candidates",
    "ptg_select",
    "score_groups",
    "select",
    "standley_cost",
    "standley_search",
    "standley_select",
    "tag_select",
]

#: Names accepted by :func:`select`.
SELECT_METHODS = ("tag", "standley", "partition", "ptg", "kmeans")


def score_groups(
    affinity: Any,
    groups: Any,
    *,
    task_names: Any = None,
    singleton_score: float = TAG_SINGLETON_SCORE,
    method: str = "given",
) -> TaskSelection:
    """Score given networks with TAG's rule (each task served by its best network).

    Parameters
    ----------
    affinity : TaskAffinity or array-like
        ``(T, T)`` affinity; at most 20 tasks (all subsets are scored).
    groups : TaskGroups or list of lists of task names
        The networks; a ``TaskGroups`` gives its hard groups (argmax memberships).
    task_names : sequence of str, optional
        Names for an array input.
    singleton_score : float
        Score of a one-task network's task.
    method : str
        Recorded as ``TaskSelection.method``.
    """
    values, names = affinity_values(affinity, task_names)
    s0 = check_float("singleton_score", singleton_score)
    index = {n: i for i, n in enumerate(names)}
    if isinstance(groups, TaskGroups):
        if list(groups.task_names) != names:
            raise fail("groups", f"groups of the affinity's tasks {names[:3]}...",
                       groups.task_names[:3])  # fmt: skip
        lists = [g for g in groups.groups if g]
    else:
        lists = [list(g) for g in groups]
    masks = []
    for g in lists:
        unknown = [n for n in g if n not in index]
        if unknown or not g:
            raise fail("groups", "non-empty lists of the affinity's task names", g)
        masks.append(sum(1 << index[n] for n in set(g)))
    t = len(names)
    if t > 20:
        rows = np.full((len(masks), t), -np.inf)
        for r, m in enumerate(masks):
            members = [j for j in range(t) if (m >> j) & 1]
            for j in members:
                others = [i for i in members if i != j]
                rows[r, j] = values[others, j].mean() if others else s0
    else:
        rows = group_scores(values, s0)[masks]
    serving, best = serve(rows)
    return TaskSelection(
        task_names=names,
        groups=[[names[j] for j in range(t) if (m >> j) & 1] for m in masks],
        serving=serving,
        task_scores=best,
        score=float(best.mean()),
        cost=float(len(masks)),
        method=method,
        objective="mean over tasks of the best in-group affinity onto the task (TAG)",
        meta={"singleton_score": s0},
    )


def kmeans_select(
    affinity: Any,
    n_groups: int,
    *,
    task_names: Any = None,
    singleton_score: float = TAG_SINGLETON_SCORE,
    feature_kwargs: dict[str, Any] | None = None,
    random_state: Any = 0,
    **grouper_kwargs: Any,
) -> TaskSelection:
    """The scalable route: ``stgmtl.group(affinity, n_groups)`` (spectral embedding of the
    affinity, k-means, fuzzy memberships), its hard groups scored with TAG's rule.

    For the soft memberships themselves call :func:`stgmtl.group` directly. Any ``T``: the
    embedding costs one ``T x T`` eigenproblem, k-means ``O(T k d)`` per iteration.
    """
    if isinstance(affinity, TaskAffinity):
        if task_names is not None and list(task_names) != affinity.task_names:
            raise fail("task_names", "None or the affinity's own task names", task_names)
        aff = affinity
    else:
        values, names = affinity_values(affinity, task_names)
        aff = TaskAffinity(task_names=names, values=values, signal="given")
    k = check_int("n_groups", n_groups, low=1, high=aff.num_tasks)
    grouper_kwargs.setdefault("progress", False)
    groups = group(aff, k, feature_kwargs=feature_kwargs, random_state=random_state,
                   **grouper_kwargs)  # fmt: skip
    out = score_groups(aff, groups, singleton_score=singleton_score, method="kmeans")
    out.meta.update({"n_groups": k, "features": "affinity", "feature_kwargs":
                     dict(feature_kwargs or {}), "random_state": random_state
                     if isinstance(random_state, int) else None})  # fmt: skip
    return out


def select(
    affinity: Any,
    method: str = "tag",
    *,
    n_groups: int | None = None,
    budget: float | None = None,
    **kwargs: Any,
) -> TaskSelection:
    """Select task groups from an affinity with one of :data:`SELECT_METHODS`.

    Parameters
    ----------
    affinity : TaskAffinity, array-like, or (``"standley"``) a mapping network -> scores
        ``[i, j]`` = effect of task ``i`` on task ``j``, larger = more helpful.
    method : {"tag", "standley", "partition", "ptg", "kmeans"}
        See the table in :mod:`stgmtl.grouping.selection`.
    n_groups : int, optional
        ``"tag"``: most networks (required); ``"partition"``: exact number of groups (None:
        any); ``"ptg"``, ``"kmeans"``: number of groups (required).
    budget : float, optional
        ``"standley"``: the cost budget (required).
    **kwargs
        Options of the back-end (:func:`tag_select`, :func:`standley_select`,
        :func:`best_partition`, :func:`ptg_select`, :func:`kmeans_select`).

    Returns
    -------
    TaskSelection
    """
    check_choice("method", method, SELECT_METHODS)
    if method == "standley":
        if budget is None:
            raise fail("budget", "a cost budget for method='standley'", None)
        if n_groups is not None:
            raise fail("n_groups", "None for method='standley' (it takes a budget)", n_groups)
        return standley_select(affinity, budget, **kwargs)
    if budget is not None:
        raise fail("budget", f"None for method={method!r} (only 'standley' takes one)", budget)
    if method == "partition":
        return best_partition(affinity, n_groups, **kwargs)
    if n_groups is None:
        raise fail("n_groups", f"a number of groups for method={method!r}", None)
    if method == "tag":
        return tag_select(affinity, n_groups, **kwargs)
    if method == "ptg":
        return ptg_select(affinity, n_groups, **kwargs)
    return kmeans_select(affinity, n_groups, **kwargs)
