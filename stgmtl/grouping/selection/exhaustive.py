"""Exact selection from an affinity for small ``T``: TAG's network selection, best partition.

TAG's network selection (Fifty et al., NeurIPS 2021; official notebook
``google-research/tag/network_selection/TAG_network_selection.ipynb``, read and re-derived,
not copied):

* a candidate network is any subset ``G`` of tasks; the score of task ``j`` in ``G`` (``|G| >=
  2``) is the mean affinity onto ``j`` from the other members, ``mean(values[i, j] for i in G,
  i != j)`` (the notebook's ``(a,b,c) => [acc(a|b) + acc(a|c)] / 2`` normalisation). Its
  affinity dictionary is keyed ``[recipient][source]`` (the Taskonomy code inverts its
  ``transference[source][recipient]`` before saving), so this is the effect *onto* ``j``.
* self-affinity (the diagonal) is never read;
* a one-task network scores ``-1e6`` for its task (:data:`TAG_SINGLETON_SCORE`): it only
  serves a task that no chosen group holds, and such a selection always loses to one where
  every task is in a group of two or more. ``singleton_score=0.0`` instead reads "alone = no
  transfer" (sensible for lookahead affinities, where 0 means no effect);
* a selection is up to ``k`` networks that together hold every task; each task is served by the
  chosen network where it scores best, and the selection's score is the mean of those best
  scores over tasks. The notebook tries every combination of up to ``k`` of the ``2^T - 1``
  subsets (``O(C(2^T, k))``); :func:`tag_select` finds the same optimum in ``O(k 3^T)`` (see
  :mod:`~stgmtl.grouping.selection.subsets` for why they agree; the tests compare both).

Best partition: the tasks split into non-overlapping groups, maximising either TAG's score of the
partition (``objective="tag"``: the mean over tasks of the mean in-group affinity onto the task,
one-task groups scoring ``singleton_score``) or the total within-group affinity
(``objective="total"``: the sum of ``values[i, j]`` over ordered pairs ``i != j`` in the same
group). Enumerating the partitions costs Bell(T) (Bell(10) = 115,975; Bell(14) = 190,899,322);
the dynamic programme costs ``O(n_groups 3^T)`` and reaches ``T = 14`` in seconds. With
``objective="total"`` and no fixed number of groups this is correlation clustering: negative
affinities keep tasks apart, and with all affinities positive one group of everything wins.

Both refuse ``T > max_tasks`` (default 14, hard limit 16) with a message pointing to the
scalable route, ``select(..., method="kmeans")``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np

from stgmtl._checks import check_choice, check_float, check_int
from stgmtl.grouping.selection.inputs import affinity_values
from stgmtl.grouping.selection.result import TaskSelection
from stgmtl.grouping.selection.subsets import (
    DEFAULT_MAX_TASKS,
    PartitionSearch,
    best_superset,
    check_size,
    group_scores,
    mask_tasks,
    member_matrix,
    source_sums,
)

__all__ = [
    "PARTITION_OBJECTIVES",
    "TAG_SINGLETON_SCORE",
    "best_partition",
    "serve",
    "tag_select",
]

#: The score of a one-task network for its task in TAG's network-selection notebook.
TAG_SINGLETON_SCORE = -1e6
#: Objectives of :func:`best_partition`.
PARTITION_OBJECTIVES = ("tag", "total")

_TAG_OBJECTIVE = "mean over tasks of the best in-group affinity onto the task (TAG)"


def serve(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each task's serving network among the rows of ``scores`` (``(k, T)``, ``-inf`` = absent).

    Returns ``(serving, task_scores)``: the first row with the highest score per column, and
    that score. Raises ``ValueError`` when a task is in none of the networks.
    """
    serving = np.argmax(scores, axis=0).astype(np.int64)
    best = scores[serving, np.arange(scores.shape[1])]
    if not np.isfinite(best).all():
        missing = np.flatnonzero(~np.isfinite(best)).tolist()
        raise ValueError(
            f"networks: expected every task in some network, got tasks {missing} in none"
        )
    return serving, best


def _selection(
    masks: list[int],
    scores: np.ndarray,
    names: list[str],
    method: str,
    objective: str,
    score: float | None,
    meta: dict[str, Any],
) -> TaskSelection:
    """Networks as masks -> a TaskSelection (networks ordered by their first task)."""
    t = len(names)
    unique = sorted(set(masks), key=lambda m: ((m & -m).bit_length(), m))
    rows = scores[unique]
    serving, best = serve(rows)
    groups = [[names[j] for j in mask_tasks(m, t)] for m in unique]
    return TaskSelection(
        task_names=names,
        groups=groups,
        serving=serving,
        task_scores=best,
        score=float(best.mean()) if score is None else score,
        cost=float(len(groups)),
        method=method,
        objective=objective,
        meta=meta,
    )


def tag_select(
    affinity: Any,
    n_groups: int,
    *,
    task_names: Any = None,
    singleton_score: float = TAG_SINGLETON_SCORE,
    max_tasks: int = DEFAULT_MAX_TASKS,
) -> TaskSelection:
    """TAG's network selection: the best up to ``n_groups`` (possibly overlapping) networks.

    Maximises the mean over tasks of the best in-group affinity onto that task, each task
    served by its best chosen network (rule and reference in the module docstring). Exact:
    the same optimum as trying every combination of up to ``n_groups`` subsets.

    Parameters
    ----------
    affinity : TaskAffinity or array-like
        ``(T, T)``, ``[i, j]`` = effect of task ``i`` on task ``j``, larger = more helpful;
        off-diagonal NaN is refused (fill unobserved pairs first).
    n_groups : int
        Most networks ``k`` (TAG's ``splits``), ``>= 1``.
    task_names : sequence of str, optional
        Names for an array input.
    singleton_score : float
        Score of a task alone in a one-task network (TAG: ``-1e6``).
    max_tasks : int
        Refuse larger ``T`` (time and memory grow as ``3^T``; hard limit 16).

    Returns
    -------
    TaskSelection
        ``method="tag"``; ``score`` = the objective; ``cost`` = number of networks. Ties
        within ``1e-10`` (relative) go to fewer networks.

    Notes
    -----
    Time ``O(n_groups 3^T)`` numpy work plus ``O(T 3^T)`` for the best network of every task
    set; memory ``O(3^T)``. Measured times are in the README.
    """
    start = time.perf_counter()
    values, names = affinity_values(affinity, task_names)
    t = check_size(len(names), max_tasks, "TAG's exhaustive network selection")
    k = check_int("n_groups", n_groups, low=1)
    s0 = check_float("singleton_score", singleton_score)
    scores = group_scores(values, s0)
    value, network = best_superset(scores)
    search = PartitionSearch.run(value, k)
    m = search.best_count()
    masks = [int(network[s]) for s in search.blocks(m)]
    meta = {"max_groups": k, "singleton_score": s0, "num_tasks": t,
            "search": "exact: best network per task set, then DP over splits, O(k 3^T)",
            "seconds": 0.0}  # fmt: skip
    out = _selection(masks, scores, names, "tag", _TAG_OBJECTIVE, None, meta)
    out.meta["seconds"] = time.perf_counter() - start
    return out


def best_partition(
    affinity: Any,
    n_groups: int | None = None,
    *,
    objective: Literal["tag", "total"] = "tag",
    task_names: Any = None,
    singleton_score: float = TAG_SINGLETON_SCORE,
    max_tasks: int = DEFAULT_MAX_TASKS,
) -> TaskSelection:
    """The best split of the tasks into non-overlapping groups, exhaustively.

    Parameters
    ----------
    affinity : TaskAffinity or array-like
        ``(T, T)``, ``[i, j]`` = effect of task ``i`` on task ``j``, larger = more helpful.
    n_groups : int, optional
        Exactly this many groups; ``None`` (default): any number (the best over all counts,
        ties within ``1e-10`` relative going to fewer groups).
    objective : {"tag", "total"}
        ``"tag"``: the mean over tasks of the mean in-group affinity onto the task, one-task
        groups scoring ``singleton_score`` (TAG's network score restricted to partitions).
        ``"total"``: the sum of ``values[i, j]`` over ordered pairs ``i != j`` in one group.
    task_names : sequence of str, optional
        Names for an array input.
    singleton_score : float
        Score of a one-task group's task for ``objective="tag"`` (TAG: ``-1e6``).
    max_tasks : int
        Refuse larger ``T`` (hard limit 16).

    Returns
    -------
    TaskSelection
        ``method="partition"``; ``task_scores`` = each task's in-group score (``"tag"``) or
        the affinity onto it from its group-mates (``"total"``); ``score`` = their mean
        (``"tag"``) or sum (``"total"``); ``cost`` = number of groups.

    Notes
    -----
    Time ``O(n_groups 3^T)`` (``O(T 3^T)`` without ``n_groups``), memory ``O(3^T)``, against
    Bell(T) partitions for plain enumeration.
    """
    start = time.perf_counter()
    values, names = affinity_values(affinity, task_names)
    t = check_size(len(names), max_tasks, "the exhaustive best partition")
    check_choice("objective", objective, PARTITION_OBJECTIVES)
    k = None if n_groups is None else check_int("n_groups", n_groups, low=1, high=t)
    s0 = check_float("singleton_score", singleton_score)
    member = member_matrix(t)
    if objective == "tag":
        scores = group_scores(values, s0)
    else:
        scores = np.where(member, source_sums(values), -np.inf)
    block = np.where(member, scores, 0.0).sum(axis=1)
    block[0] = -np.inf
    search = PartitionSearch.run(block, t if k is None else k)
    m = search.best_count() if k is None else k
    blocks = search.blocks(m)
    meta = {"n_groups": k, "objective": objective, "singleton_score": s0, "num_tasks": t,
            "search": "exact: DP over splits of task masks, O(k 3^T)", "seconds": 0.0}  # fmt: skip
    described = (_TAG_OBJECTIVE + " in its group" if objective == "tag"
                 else "total within-group affinity (sum over ordered pairs)")  # fmt: skip
    total = None
    if objective == "total":
        total = float(sum(block[b] for b in blocks))
    out = _selection(blocks, scores, names, "partition", described, total, meta)
    out.meta["seconds"] = time.perf_counter() - start
    return out
