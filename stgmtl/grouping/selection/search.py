"""Standley et al.'s exact budgeted search on a plain ``(C, T)`` score matrix, and the
cheapest cover (the smallest budget for which any selection exists).

The rule (from the official ``tstandley/taskgrouping`` ``network_selection/main.cpp``, read and
re-derived, not copied; see :mod:`~stgmtl.grouping.selection.standley`): choose a set of
candidates within the budget, each task served by the chosen candidate where it scores best,
maximising the sum of those best scores; every task must be served. Depth-first search with the
reference's two filters (a candidate that no longer fits, or that improves no task over the
current solution, is dropped) and, added here and exact as well, a branch-and-bound cut.

The answer never holds a network that serves no task: at a tie the search may reach a set in
which a network's every score is matched by another chosen network (the reference's order
hides this; a half-size network tried first for a still-unserved task is the usual case), and
:func:`standley_search` drops such networks before returning (same value, lower cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stgmtl._checks import check_bool, check_float, fail

__all__ = ["SearchResult", "cheapest_cover", "search_inputs", "standley_search"]

#: Largest ``T`` for which :func:`cheapest_cover` is exact (a DP over the ``2^T`` task sets).
_COVER_MAX_TASKS = 16


@dataclass
class SearchResult:
    """What :func:`standley_search` found.

    ``chosen``: candidate indices, each serving at least one task (empty: the budget affords no
    set that serves every task); ``value``: the mean over tasks of the best chosen score (``nan``
    when nothing is chosen); ``nodes`` visited; branches ``cut``; ``idle``: networks the search
    reached that served no task and were dropped from ``chosen``.
    """

    chosen: list[int]
    value: float
    nodes: int
    cut: int
    idle: int = 0


def search_inputs(
    scores: Any,
    costs: Any,
    budget: float,
    *,
    name: str = "scores",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Checked inputs of :func:`standley_search`: ``(C, T)`` float64 scores, ``(C,)`` positive
    finite costs, a positive budget (``ValueError`` "name: expected ..." otherwise)."""
    sc = np.asarray(scores, dtype=np.float64)
    if sc.ndim != 2 or sc.shape[0] < 1 or sc.shape[1] < 1:
        raise fail(name, "a (C, T) matrix with C >= 1 and T >= 1", sc.shape)
    cost = np.asarray(costs, dtype=np.float64)
    if cost.shape != (sc.shape[0],):
        raise fail("costs", f"{sc.shape[0]} costs (one per candidate)", cost.shape)
    if not np.isfinite(cost).all() or (cost <= 0).any():
        raise fail("costs", "finite costs > 0", cost[~np.isfinite(cost) | (cost <= 0)][:3])
    return sc, cost, check_float("budget", budget, low=0.0, low_open=True)


def unserved_tasks(members: np.ndarray) -> list[int]:
    """Tasks (columns of the ``(C, T)`` bool ``members``) that no candidate serves."""
    return np.flatnonzero(~members.any(axis=0)).tolist()


def cheapest_cover(members: np.ndarray, costs: np.ndarray) -> float:
    """The least total cost of candidates that together serve every task.

    Exact (a DP over the ``2^T`` task sets) for ``T <= 16``; above that the lower bound
    ``max_j (cheapest candidate serving j)``. ``inf`` when some task is in no candidate.

    Parameters
    ----------
    members : np.ndarray
        ``(C, T)`` bool, ``[c, j]``: candidate ``c`` serves task ``j``.
    costs : np.ndarray
        ``(C,)`` positive costs.
    """
    c, t = members.shape
    if unserved_tasks(members):
        return float("inf")
    if t > _COVER_MAX_TASKS:
        return float(max(costs[members[:, j]].min() for j in range(t)))
    cand = (members.astype(np.int64) << np.arange(t, dtype=np.int64)).sum(axis=1)
    best = np.full(1 << t, np.inf)
    best[0] = 0.0
    for mask in range(1, 1 << t):  # the lowest task of mask is served by some candidate
        low = mask & -mask
        use = (cand & low) != 0
        rest = mask & ~cand[use]
        best[mask] = float((best[rest] + costs[use]).min())
    return float(best[(1 << t) - 1])


def standley_search(
    scores: np.ndarray,
    costs: np.ndarray,
    budget: float,
    *,
    greater_is_better: bool = True,
    bound: bool = True,
) -> SearchResult:
    """The exact search of :func:`~stgmtl.grouping.selection.standley_select` on a plain
    ``(C, T)`` score matrix.

    The set of candidates within ``budget`` that serves every task and maximises (``greater_is_
    better``) or minimises the mean over tasks of each task's best chosen score; depth-first with
    the dominance and budget filters and the branch-and-bound cut of the module docstring.
    Networks that serve no task are dropped from the answer (``SearchResult.idle`` counts them).
    Callers that are not about task sets (e.g. trained systems that serve tasks in other ways)
    use it directly; :func:`~stgmtl.grouping.selection.standley_select` builds the matrix from
    networks.

    Parameters
    ----------
    scores : np.ndarray
        ``(C, T)``: candidate ``c``'s score on task ``t``; non-finite (NaN, +-inf) where ``c``
        does not serve ``t``.
    costs : np.ndarray
        ``(C,)`` positive costs.
    budget : float
        Largest total cost. A budget below the cheapest cover is not an error here: the result
        is then empty (``chosen=[]``, ``value=nan``), and :func:`cheapest_cover` says how much
        would do.
    greater_is_better : bool
        False for losses.
    bound : bool
        Use the branch-and-bound cut (exact either way).

    Returns
    -------
    SearchResult

    Raises
    ------
    ValueError
        When some task is served by no candidate (no budget can help).
    """
    sc, cost, b = search_inputs(scores, costs, budget)
    sign = 1.0 if check_bool("greater_is_better", greater_is_better) else -1.0
    gains = np.where(np.isfinite(sc), sign * sc, -np.inf)
    missing = unserved_tasks(np.isfinite(gains))
    if missing:
        raise fail("scores", "every task (column) served by some candidate (a finite score)",
                   f"tasks {missing} with no finite score in any row")  # fmt: skip
    search = _Search(gains, cost, check_bool("bound", bound))
    search.run(b)
    if not search.best:
        return SearchResult([], float("nan"), search.nodes, search.cut)
    chosen = _serving(gains, search.best)
    value = sign * search.best_value / sc.shape[1]
    return SearchResult(chosen, float(value), search.nodes, search.cut,
                        len(search.best) - len(chosen))  # fmt: skip


def _serving(gains: np.ndarray, chosen: list[int]) -> list[int]:
    """The chosen candidates that serve some task (each task's first best among ``chosen``)."""
    rows = gains[chosen]
    serving = set(np.argmax(rows, axis=0).tolist())
    return [c for i, c in enumerate(chosen) if i in serving]


class _Search:
    """Depth-first search with Standley's filters and a branch-and-bound cut."""

    def __init__(self, gains: np.ndarray, costs: np.ndarray, bound: bool) -> None:
        self.gains, self.costs, self.bound = gains, costs, bound
        finite = gains[np.isfinite(gains)]
        scale = float(np.abs(finite).max()) if finite.size else 1.0
        self.tol = 1e-12 * max(1.0, scale) * gains.shape[1]
        self.best_value = -np.inf
        self.best: list[int] = []
        self.nodes = 0
        self.cut = 0

    def _cut(self, running: np.ndarray, gains: np.ndarray, cost: np.ndarray, left: float) -> bool:
        """Whether no set of the remaining candidates can beat the best solution found.

        The final value is at most every task at its best remaining score, and at most
        ``floor + knapsack``: ``floor[j]`` is task ``j``'s current
        best, or for a task not yet served the lowest score any remaining candidate gives it
        (it will get at least that); the value ``sum_j max(floor[j], best chosen on j)`` is a
        facility-location function, hence submodular, so a set of candidates raises it by at
        most the sum of what each raises it alone, and the best such sum within the budget left
        is at most the fractional knapsack of those one-by-one raises.
        """
        served = np.isfinite(running)
        member = np.isfinite(gains)
        if not member[:, ~served].any(axis=0).all():
            return True  # some task can no longer be served
        low = np.where(member, gains, np.inf).min(axis=0)
        floor = np.where(served, running, low)
        each = np.where(gains > floor, gains - floor, 0.0).sum(axis=1)
        order = np.argsort(-each / cost, kind="stable")
        spent = np.cumsum(cost[order])
        full = spent <= left + 1e-9
        extra = float(each[order][full].sum())
        rest = np.flatnonzero(~full)
        if rest.size:
            i = int(rest[0])
            room = left - (float(spent[i - 1]) if i else 0.0)
            extra += float(each[order][i]) * max(room, 0.0) / float(cost[order][i])
        reach = float(np.maximum(running, gains.max(axis=0)).sum())  # every task at its best
        return min(float(floor.sum()) + extra, reach) <= self.best_value + self.tol

    def run(self, budget: float) -> None:
        t = self.gains.shape[1]
        self._node(np.arange(len(self.costs)), np.full(t, -np.inf), budget, [])

    def _node(self, cand: np.ndarray, running: np.ndarray, left: float, chosen: list[int]) -> None:
        self.nodes += 1
        if chosen and np.isfinite(running).all():
            value = float(running.sum())
            if value > self.best_value + self.tol:
                self.best_value, self.best = value, list(chosen)
        gains = self.gains[cand]
        keep = (self.costs[cand] <= left + 1e-9) & (gains > running).any(axis=1)
        cand, gains = cand[keep], gains[keep]
        if cand.size == 0:
            return
        if self.bound and self._cut(running, gains, self.costs[cand], left):
            self.cut += 1
            return
        with np.errstate(invalid="ignore"):
            gain = np.where(gains > running, gains - running, 0.0).max(axis=1)  # inf: unserved
        order = np.argsort(-gain, kind="stable")
        cand, gains = cand[order], gains[order]
        for i in range(cand.size):
            c = int(cand[i])
            self._node(cand[i + 1 :], np.maximum(running, gains[i]), left - self.costs[c],
                       [*chosen, c])  # fmt: skip
