"""Choosing what to train: partitions from a signal, every partition, budgeted network selection.

* :func:`partition_from_affinity` is the harness's **one common selector**: every signal's
  ``(T, T)`` affinity becomes ``k`` groups the same way, so that differences between the
  groupings are differences between the signals. It is :func:`stgmtl.group` on the affinity
  (the ``"affinity"`` feature kind: spectral embedding of the symmetrised affinity graph, then
  k-means and memberships; :mod:`stgmtl.features.affinity`), the scalable route of
  :func:`stgmtl.grouping.selection.select` (``method="kmeans"``).
* :func:`set_partitions` enumerates every partition of ``T`` tasks into ``k`` groups (the
  exhaustive tier, ``T <= 5``: each partition is *trained*, so they are listed, not searched).
* :func:`select_networks` is Standley et al.'s budgeted selection over trained candidate
  *systems*: the shared exact search, :func:`stgmtl.grouping.selection.standley_search`,
  on a ``(systems, tasks)`` loss matrix (a system may be a network or a grouped model serving
  every task, so the candidates are rows, not task sets), up to ``max_exact`` affordable sets.
  Beyond, a documented heuristic: from each of the 20 best single candidates (and every
  candidate that serves all tasks alone), greedy additions by decrease of the total loss per
  cost, then single swaps and drops until none improves; the best result wins. It is not
  guaranteed optimal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from stgmtl._checks import check_int, fail, seed_from
from stgmtl.affinity import TaskAffinity
from stgmtl.features.affinity import affinity_features
from stgmtl.grouping import TaskGroups, group
from stgmtl.grouping.selection.standley import search_inputs, standley_search

__all__ = [
    "partition_from_affinity",
    "random_partition",
    "select_networks",
    "selection_objective",
    "set_partitions",
]


def partition_from_affinity(
    affinity: TaskAffinity, k: int, *, random_state: Any = 0, m: float = 1.07
) -> TaskGroups:
    """The common selector: ``k`` groups of the tasks from one signal's affinity.

    Parameters
    ----------
    affinity : TaskAffinity
    k : int
        Number of groups, ``1 <= k <= T``.
    random_state : None, int or Generator
        Seed of the k-means.
    m : float
        Fuzzifier of the returned memberships (the hard groups are their argmax).
        Other options of :func:`stgmtl.group` keep their defaults.

    Returns
    -------
    TaskGroups
        With the embedding and centroids the groups were found in, so that memberships of
        another softness can be computed (:mod:`stgmtl.payoff.softness`). With ``k = 1``,
        ``k = T``, or an affinity without structure (every task's features equal), the tasks
        are dealt round robin in order (hard memberships): no grouping is better than another.
    """
    if not isinstance(affinity, TaskAffinity):
        raise fail("affinity", "a TaskAffinity", type(affinity).__name__, error=TypeError)
    t = affinity.num_tasks
    check_int("k", k, low=1, high=t)
    s = affinity.symmetric()
    off = ~np.eye(t, dtype=bool) & np.isfinite(s)
    if k in (1, t) or t < 3 or not off.any() or np.ptp(s[off]) <= 1e-12:
        # nothing to choose (k = 1 or T), or no structure: tasks in order, round robin
        x = affinity_features(affinity, mode="rows") if off.any() else np.eye(t)
        return _fixed_groups(x, np.arange(t) % k, affinity.task_names)
    return group(affinity, k, m=m, random_state=random_state, progress=False)


def _fixed_groups(x: np.ndarray, labels: np.ndarray, names: list[str]) -> TaskGroups:
    k = int(labels.max()) + 1
    centroids = np.stack([x[labels == g].mean(0) for g in range(k)]).astype(np.float64)
    return TaskGroups(
        task_names=list(names),
        membership=np.eye(k)[labels],
        centroids=centroids,
        embedding=x.astype(np.float32),
        method="hard",
    )


def set_partitions(n: int, k: int) -> Iterator[np.ndarray]:
    """Every partition of ``0 .. n-1`` into exactly ``k`` non-empty groups, as labels ``(n,)``.

    Labels are in canonical form (restricted growth: task 0 in group 0, each new group numbered
    next), so each partition appears once; there are Stirling ``S(n, k)`` of them.
    """
    check_int("n", n, low=1)
    check_int("k", k, low=1, high=n)
    labels = np.zeros(n, dtype=np.int64)

    def rec(i: int, used: int) -> Iterator[np.ndarray]:
        if n - i < k - used:
            return
        if i == n:
            if used == k:
                yield labels.copy()
            return
        for g in range(min(used + 1, k)):
            labels[i] = g
            yield from rec(i + 1, max(used, g + 1))

    yield from rec(0, 0)


def random_partition(n: int, k: int, random_state: Any = 0) -> np.ndarray:
    """Labels ``(n,)`` of a uniformly random assignment into ``k`` non-empty groups (seeded).

    Each task draws a group uniformly; draws with an empty group are repeated.
    """
    check_int("k", k, low=1, high=check_int("n", n, low=1))
    rng = np.random.default_rng(seed_from("random_state", random_state))
    while True:
        lab = rng.integers(0, k, size=n)
        if np.unique(lab).size == k:
            return lab


def selection_objective(losses: np.ndarray, chosen: Sequence[int]) -> float:
    """Mean over tasks of the smallest loss among the chosen candidates (inf if not covered)."""
    sub = np.asarray(losses, dtype=np.float64)[list(chosen)]
    best = np.where(np.isnan(sub), np.inf, sub).min(0)
    return float(best.mean()) if np.isfinite(best).all() else float("inf")


def _heuristic(
    lo: np.ndarray, costs: np.ndarray, budget: float, n_starts: int = 20
) -> tuple[list[int], float]:
    """Greedy additions by decrease of the penalised total per cost, then single swaps and
    drops, from each of the ``n_starts`` best single candidates (and every one that serves all
    tasks alone); the best result wins."""
    c = lo.shape[0]
    penalty = 1e6 * (1.0 + float(np.max(np.where(np.isfinite(lo), np.abs(lo), 0.0))))

    def value(sel: list[int]) -> float:  # total loss, an unserved task counting `penalty`
        return float(np.minimum(lo[sel].min(0), penalty).sum())

    def affordable(sel: list[int]) -> bool:
        return bool(costs[sel].sum() <= budget + 1e-9)

    def improve(chosen: list[int]) -> list[int]:
        while True:  # greedy additions
            cur = value(chosen)
            rates = [
                ((cur - value([*chosen, j])) / costs[j], j)
                for j in range(c)
                if j not in chosen and affordable([*chosen, j])
            ]
            if not rates or max(rates)[0] <= 0:
                break
            chosen = [*chosen, max(rates)[1]]
        improved = True
        while improved:  # single swaps and drops
            improved = False
            cur = value(chosen)
            for pos in range(len(chosen)):
                rest = chosen[:pos] + chosen[pos + 1 :]
                for j in [None, *range(c)]:
                    trial = rest if j is None else [*rest, j]
                    if j in chosen or not trial or not affordable(trial):
                        continue
                    if value(trial) < cur - 1e-12:
                        chosen, improved = trial, True
                        break
                if improved:
                    break
        return chosen

    singles = [j for j in range(c) if affordable([j])]
    if not singles:
        return [], float("inf")
    ranked = sorted(singles, key=lambda j: value([j]))
    alone = [j for j in singles if np.isfinite(lo[j]).all()]
    best: list[int] = []
    for start in dict.fromkeys([*ranked[:n_starts], *alone]):
        sel = improve([start])
        if not best or value(sel) < value(best) - 1e-12:
            best = sel
    val = lo[best].min(0).mean()
    return best, float(val) if np.isfinite(val) else float("inf")


def select_networks(
    losses: np.ndarray,
    costs: Sequence[float] | np.ndarray,
    budget: float,
    *,
    max_exact: int = 2_000_000,
) -> tuple[list[int], float, bool]:
    """Standley's budgeted selection over trained candidate systems (module docstring).

    Parameters
    ----------
    losses : np.ndarray
        ``(C, T)``: candidate ``c``'s loss on task ``t`` (lower is better; NaN where ``c`` does
        not serve ``t``). Normalise per task first (e.g. relative to one reference model) so
        that every task weighs the same.
    costs : sequence of float
        ``(C,)`` cost of each candidate (e.g. its parameters relative to one model).
    budget : float
        Largest total cost.
    max_exact : int
        The exact search (:func:`~stgmtl.grouping.selection.standley_search`) when there are at
        most this many affordable sets (its worst case); else the heuristic.

    Returns
    -------
    chosen : list of int
        Candidate indices (empty when no affordable set serves every task).
    objective : float
        Mean over tasks of the best chosen loss (inf when nothing is feasible).
    exact : bool
        Whether the search was exhaustive.
    """
    lo, cost, budget = search_inputs(losses, costs, budget, name="losses")
    lo = np.where(np.isnan(lo), np.inf, lo)
    order = np.sort(cost)
    max_size = int(np.searchsorted(np.cumsum(order), budget + 1e-9, side="right"))
    if max_size == 0:
        return [], float("inf"), True
    n_sets = sum(math.comb(lo.shape[0], r) for r in range(1, max_size + 1))
    if n_sets <= max_exact:
        found = standley_search(lo, cost, budget, greater_is_better=False)
        if not found.chosen:
            return [], float("inf"), True
        return sorted(found.chosen), found.value, True
    chosen, val = _heuristic(lo, cost, budget)
    return sorted(chosen), val, False
