"""Standley et al.'s budgeted network selection (ICML 2020, "Which Tasks Should Be Learned
Together in Multi-task Learning?"), from trained results or from an affinity.

The rule, as in the official code (``tstandley/taskgrouping``, ``network_selection/main.cpp``;
read and re-derived, not copied):

* **Candidates** are networks (task sets) with a score per member task and a cost: a full-size
  network costs 1, a half-size single-task network 0.5 (:func:`standley_cost`).
* **A solution** is a set of candidates whose total cost fits the budget; each task is served
  by the chosen network where it scores best, and the solution's value is the sum (here: the
  mean) over tasks of those best scores. Every task must be served.
* **The search** is an exact depth-first search over sets of candidates: at each node the
  remaining candidates that no longer fit the budget, or that improve no task over the current
  solution (the solution *dominates* them), are dropped, since adding them can never help;
  candidates are tried best improvement first (the code's sort). Added here, and exact as
  well: a branch is cut when even the best score of every remaining candidate on every task
  could not beat the best solution found (branch and bound), and networks that end up serving
  no task are removed from the answer (same score, lower cost).
* **Higher-order approximation** (the paper's HOA): a network of three or more tasks without a
  trained result is scored, per member task, by the mean of that task's results in the pair
  networks inside it.
* **Validation and test**: the selection is made on validation scores; ``test_scores`` are only
  looked up for the chosen networks, each task read from the network that serves it on
  validation. (The official code re-takes each task's best chosen network on the test scores,
  which lets the test set pick the serving network; this module does not.)

Scores are "larger is better" by default (``greater_is_better=False`` for losses, as the paper's
tables). From an affinity (``values[i, j]`` = effect of ``i`` on ``j``) the candidate scores are
TAG-style: a pair ``{i, j}`` scores ``values[i, j]`` for ``j``; a larger network scores the mean
affinity onto each member (exactly HOA over the pairs); a single-task network scores
``single_score`` (default 0: alone = no transfer).

Complexity: the search visits at most every set of candidates within the budget,
``O(C^(B / c_min))`` for ``C`` candidates and budget ``B``; the pruning keeps it far below that
in practice but gives no better guarantee, so the number of candidates is capped
(``max_candidates``, default 63: every network of up to 6 tasks). For more tasks use
:func:`~stgmtl.grouping.selection.exhaustive.tag_select` (exact up to 14 tasks, the same
served-by-best rule without costs) or the scalable route.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stgmtl._checks import check_bool, check_float, check_int, check_names, fail
from stgmtl.grouping.selection.exhaustive import serve
from stgmtl.grouping.selection.inputs import affinity_values
from stgmtl.grouping.selection.result import TaskSelection
from stgmtl.grouping.selection.subsets import group_scores, mask_tasks, member_matrix, source_sums

__all__ = [
    "DEFAULT_MAX_CANDIDATES",
    "Candidates",
    "SearchResult",
    "network_candidates",
    "search_inputs",
    "standley_cost",
    "standley_search",
    "standley_select",
]

#: Default cap on the number of candidate networks of :func:`standley_select`.
DEFAULT_MAX_CANDIDATES = 63

Network = tuple[str, ...]
#: Most tasks for which candidates are built (all 2^T subsets are scored first).
_MAX_TASKS = 16


def standley_cost(network: Network) -> float:
    """Standley et al.'s cost: 0.5 for a (half-size) single-task network, else 1."""
    return 0.5 if len(network) == 1 else 1.0


@dataclass
class Candidates:
    """Candidate networks: ``masks`` (C,) int64, ``scores`` (C, T) float64 (``-inf`` = not a
    member or not scored), ``trained`` (C,) bool (False = higher-order approximation)."""

    task_names: list[str]
    masks: np.ndarray
    scores: np.ndarray
    trained: np.ndarray

    def networks(self) -> list[Network]:
        """The candidates as tuples of task names."""
        t = len(self.task_names)
        return [tuple(self.task_names[j] for j in mask_tasks(m, t)) for m in self.masks]


def _network(key: Any, name: str) -> Network:
    if isinstance(key, str):
        parts = tuple(p.strip() for p in key.split("|"))
    elif isinstance(key, (tuple, list, frozenset, set)):
        parts = tuple(str(p) for p in (sorted(key) if isinstance(key, (set, frozenset)) else key))
    else:
        raise fail(name, "networks as tuples of task names (or 'a|b' strings)", key,
                   error=TypeError)  # fmt: skip
    if not parts or any(not p for p in parts) or len(set(parts)) != len(parts):
        raise fail(name, "networks of distinct, non-empty task names", key)
    return parts


def _parse_table(scores: Any, name: str) -> dict[Network, dict[str, float]]:
    if not isinstance(scores, Mapping) or not scores:
        raise fail(name, "a TaskAffinity, a (T, T) array, or a non-empty mapping network -> "
                   "{task: score}", type(scores).__name__, error=TypeError)  # fmt: skip
    table: dict[Network, dict[str, float]] = {}
    seen: dict[frozenset[str], Network] = {}
    for key, per_task in scores.items():
        net = _network(key, name)
        if frozenset(net) in seen:
            raise fail(name, "each network once", f"{seen[frozenset(net)]} and {net}")
        seen[frozenset(net)] = net
        if not isinstance(per_task, Mapping) or set(map(str, per_task)) != set(net):
            raise fail(f"{name}[{key!r}]", f"a score for each of its tasks {list(net)}",
                       per_task)  # fmt: skip
        row = {}
        for task, value in per_task.items():
            row[str(task)] = check_float(f"{name}[{key!r}][{task!r}]", value)
        table[net] = row
    return table


def _from_table(
    table: dict[Network, dict[str, float]],
    names: list[str],
    higher_order: bool,
    max_size: int,
) -> Candidates:
    t = len(names)
    index = {n: j for j, n in enumerate(names)}
    rows: dict[int, np.ndarray] = {}
    for net, per_task in table.items():
        if len(net) > max_size:
            continue
        row = np.full(t, -np.inf)
        for task, value in per_task.items():
            row[index[task]] = value
        rows[sum(1 << index[n] for n in net)] = row
    trained = set(rows)
    if higher_order and max_size >= 3:
        pair = np.full((t, t), np.nan)  # pair[i, j] = score of j trained with i
        for net, per_task in table.items():
            if len(net) == 2:
                a, b = index[net[0]], index[net[1]]
                pair[a, b], pair[b, a] = per_task[net[1]], per_task[net[0]]
        seen = ~np.isnan(pair)
        sums, counts = source_sums(np.where(seen, pair, 0.0)), source_sums(seen.astype(float))
        member = member_matrix(t)
        size = member.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(member & (counts > 0), sums / counts, -np.inf)
        for m in np.flatnonzero((size >= 3) & (size <= max_size)):
            if int(m) not in rows and np.isfinite(mean[m]).any():
                rows[int(m)] = mean[m]
    masks = np.array(sorted(rows), dtype=np.int64)
    return Candidates(
        task_names=names,
        masks=masks,
        scores=np.array([rows[int(m)] for m in masks]).reshape(len(masks), t),
        trained=np.array([int(m) in trained for m in masks], dtype=bool),
    )


def network_candidates(
    scores: Any,
    *,
    task_names: Any = None,
    higher_order: bool = True,
    max_network_size: int | None = None,
    single_score: float = 0.0,
    name: str = "scores",
) -> Candidates:
    """Candidate networks and their per-task scores, from trained results or an affinity.

    Parameters
    ----------
    scores : mapping, TaskAffinity or array-like
        Trained results: ``{network: {task: score}}`` with networks as tuples of task names
        (or ``"a|b"`` strings) and a score for every member. Or an affinity ``(T, T)``
        (``[i, j]`` = effect of ``i`` on ``j``): every network up to ``max_network_size`` tasks,
        scored as described in the module docstring.
    task_names : sequence of str, optional
        Task order (default: the affinity's, or order of first appearance in the table).
    higher_order : bool
        Fill networks of 3+ tasks that have no result with the mean of the pair results.
    max_network_size : int, optional
        Largest network considered (default: all sizes).
    single_score : float
        Score of a single-task network, for affinity input.
    name : str
        Argument name for messages.

    Returns
    -------
    Candidates
    """
    check_bool("higher_order", higher_order)
    if not isinstance(scores, Mapping):
        values, names = affinity_values(scores, task_names, name=name)
        t = len(names)
        size = check_int("max_network_size", t if max_network_size is None else max_network_size,
                         low=1)  # fmt: skip
        if t > _MAX_TASKS:
            raise fail(name, f"at most {_MAX_TASKS} tasks for Standley's search", f"{t} tasks")
        s0 = check_float("single_score", single_score)
        all_scores = group_scores(values, s0)
        n = member_matrix(t).sum(axis=1)
        limit = size if higher_order else min(size, 2)
        masks = np.flatnonzero((n >= 1) & (n <= limit)).astype(np.int64)
        return Candidates(names, masks, all_scores[masks], np.ones(len(masks), dtype=bool))
    table = _parse_table(scores, name)
    appearing = list(dict.fromkeys(n for net in table for n in net))
    if task_names is None:
        names = appearing
    else:
        names = check_names("task_names", task_names, len(list(task_names)))
        extra = sorted(set(appearing) - set(names))
        if extra:
            raise fail(name, f"networks of the tasks {names}", f"unknown tasks {extra}")
    size = check_int("max_network_size", len(names) if max_network_size is None
                     else max_network_size, low=1)  # fmt: skip
    if len(names) > _MAX_TASKS:
        raise fail(name, f"at most {_MAX_TASKS} tasks for Standley's search",
                   f"{len(names)} tasks")  # fmt: skip
    return _from_table(table, names, higher_order, size)


def _costs(cands: Candidates, costs: Any) -> np.ndarray:
    nets = cands.networks()
    if costs is None:
        out = [standley_cost(n) for n in nets]
    elif callable(costs):
        out = [costs(n) for n in nets]
    elif isinstance(costs, Mapping):
        given = {frozenset(_network(k, "costs")): v for k, v in costs.items()}
        out = [given.get(frozenset(n), standley_cost(n)) for n in nets]
    else:
        raise fail("costs", "None, a mapping network -> cost, or a callable", costs,
                   error=TypeError)  # fmt: skip
    arr = np.array([check_float("costs", c) for c in out], dtype=np.float64)
    if (arr <= 0).any():
        raise fail("costs", "positive costs", float(arr.min()))
    return arr


@dataclass
class SearchResult:
    """What :func:`standley_search` found: ``chosen`` candidate indices (empty: no affordable
    set serves every task), ``value`` the mean over tasks of the best chosen score (``nan`` when
    nothing is chosen), ``nodes`` visited and branches ``cut``."""

    chosen: list[int]
    value: float
    nodes: int
    cut: int


def search_inputs(
    scores: Any, costs: Any, budget: float, *, name: str = "scores"
) -> tuple[np.ndarray, np.ndarray, float]:
    """Checked inputs of :func:`standley_search`: ``(C, T)`` float64 scores, ``(C,)`` positive
    finite costs, a positive budget (``ValueError`` "name: expected ..." otherwise)."""
    sc = np.asarray(scores, dtype=np.float64)
    if sc.ndim != 2 or sc.shape[0] < 1:
        raise fail(name, "a (C, T) matrix with C >= 1", sc.shape)
    cost = np.asarray(costs, dtype=np.float64)
    if cost.shape != (sc.shape[0],) or not np.isfinite(cost).all() or (cost <= 0).any():
        raise fail("costs", f"{sc.shape[0]} finite costs > 0", cost.shape)
    return sc, cost, check_float("budget", budget, low=0.0, low_open=True)


def standley_search(
    scores: np.ndarray,
    costs: np.ndarray,
    budget: float,
    *,
    greater_is_better: bool = True,
    bound: bool = True,
) -> SearchResult:
    """The exact search of :func:`standley_select` on a plain ``(C, T)`` score matrix.

    The set of candidates within ``budget`` that serves every task and maximises (``greater_is_
    better``) or minimises the mean over tasks of each task's best chosen score; depth-first with
    the dominance and budget filters and the branch-and-bound cut of the module docstring.
    Callers that are not about task sets (e.g. trained systems that serve tasks in other ways)
    use it directly; :func:`standley_select` builds the matrix from networks.

    Parameters
    ----------
    scores : np.ndarray
        ``(C, T)``: candidate ``c``'s score on task ``t``; non-finite (NaN, +-inf) where ``c``
        does not serve ``t``.
    costs : np.ndarray
        ``(C,)`` positive costs.
    budget : float
        Largest total cost.
    greater_is_better : bool
        False for losses.
    bound : bool
        Use the branch-and-bound cut (exact either way).

    Returns
    -------
    SearchResult
    """
    sc, cost, b = search_inputs(scores, costs, budget)
    sign = 1.0 if check_bool("greater_is_better", greater_is_better) else -1.0
    gains = np.where(np.isfinite(sc), sign * sc, -np.inf)
    search = _Search(gains, cost, check_bool("bound", bound))
    search.run(b)
    value = sign * search.best_value / sc.shape[1] if search.best else float("nan")
    return SearchResult(list(search.best), float(value), search.nodes, search.cut)


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


def standley_select(
    scores: Any,
    budget: float,
    *,
    test_scores: Any = None,
    task_names: Any = None,
    costs: Mapping[Any, float] | Callable[[Network], float] | None = None,
    greater_is_better: bool = True,
    higher_order: bool = True,
    max_network_size: int | None = None,
    single_score: float = 0.0,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    bound: bool = True,
) -> TaskSelection:
    """Standley et al.'s exact budgeted selection of networks (rule in the module docstring).

    Parameters
    ----------
    scores : mapping, TaskAffinity or array-like
        Validation results ``{network: {task: score}}`` (networks as tuples of task names or
        ``"a|b"`` strings), or an affinity (see :func:`network_candidates`).
    budget : float
        Most total cost (full network 1, half-size single-task network 0.5 by default).
    test_scores : same kind as ``scores``, optional
        Held-out results: read for the chosen networks only, each task from its serving
        network (``test_task_scores``, ``test_score``); a chosen network missing from it is an
        error.
    task_names : sequence of str, optional
        Task order.
    costs : mapping or callable, optional
        Cost per network (a mapping may list some networks only; others get
        :func:`standley_cost`).
    greater_is_better : bool
        False for losses (lower is better); ``score`` is then the mean served loss.
    higher_order : bool
        Score untrained 3+-task networks from their pairs (HOA).
    max_network_size : int, optional
        Largest network considered.
    single_score : float
        Single-task network score for affinity input (0 = no transfer).
    max_candidates : int
        Refuse more candidate networks than this (the search is exponential in the budget).
    bound : bool
        Use the branch-and-bound cut (exact either way; False only for testing).

    Returns
    -------
    TaskSelection
        ``method="standley"``, ``cost`` = total cost of the chosen networks, ``meta`` with the
        budget, candidates, visited nodes and whether each network's score was trained or
        approximated.
    """
    start = time.perf_counter()
    check_bool("greater_is_better", greater_is_better)
    check_bool("bound", bound)
    cands = network_candidates(
        scores,
        task_names=task_names,
        higher_order=higher_order,
        max_network_size=max_network_size,
        single_score=single_score,
    )
    names = cands.task_names
    b = check_float("budget", budget, low=0.0, low_open=True)
    limit = check_int("max_candidates", max_candidates, low=1)
    if len(cands.masks) > limit:
        raise fail(
            "scores",
            f"at most max_candidates={limit} candidate networks (the exact search grows as "
            "C^(budget / cost)); limit max_network_size, or use select(..., method='tag') "
            "(exact up to 14 tasks) or method='kmeans'",
            f"{len(cands.masks)} candidates",
        )
    cost = _costs(cands, costs)
    sign = 1.0 if greater_is_better else -1.0
    gains = np.where(np.isfinite(cands.scores), sign * cands.scores, -np.inf)
    search = standley_search(cands.scores, cost, b, greater_is_better=greater_is_better,
                             bound=bound)  # fmt: skip
    if not search.chosen:
        raise fail("budget", "enough to serve every task with the candidate networks "
                   f"(cheapest possible: {_cover_hint(gains, cost)})", b)  # fmt: skip
    chosen = sorted(search.chosen, key=lambda c: ((int(cands.masks[c]) & -int(cands.masks[c])),
                                                int(cands.masks[c])))  # fmt: skip
    serving, _ = serve(gains[chosen])
    chosen = [c for i, c in enumerate(chosen) if i in set(serving.tolist())]  # drop idle ones
    serving, best = serve(gains[chosen])
    networks = cands.networks()
    meta = {
        "budget": b,
        "greater_is_better": greater_is_better,
        "higher_order": higher_order,
        "candidates": len(cands.masks),
        "nodes": search.nodes,
        "cut": search.cut,
        "trained": [bool(cands.trained[c]) for c in chosen],
        "network_costs": [float(cost[c]) for c in chosen],
        "search": "exact depth-first search, dominance + budget filters, branch and bound",
        "seconds": 0.0,
    }
    out = TaskSelection(
        task_names=names,
        groups=[list(networks[c]) for c in chosen],
        serving=serving,
        task_scores=sign * best,
        score=float(np.mean(sign * best)),
        cost=float(cost[chosen].sum()),
        method="standley",
        objective="mean over tasks of the served network's score "
        + ("(larger is better)" if greater_is_better else "(a loss: smaller is better)"),
        test_task_scores=None,
        meta=meta,
    )
    if test_scores is not None:
        out.test_task_scores = _test_scores(test_scores, out, cands, chosen, higher_order,
                                            max_network_size, single_score)  # fmt: skip
        out.test_score = float(np.mean(out.test_task_scores))
    out.meta["seconds"] = time.perf_counter() - start
    return out


def _test_scores(
    test_scores: Any,
    sel: TaskSelection,
    cands: Candidates,
    chosen: Iterable[int],
    higher_order: bool,
    max_network_size: int | None,
    single_score: float,
) -> np.ndarray:
    test = network_candidates(test_scores, task_names=sel.task_names, higher_order=higher_order,
                              max_network_size=max_network_size, single_score=single_score,
                              name="test_scores")  # fmt: skip
    if test.task_names != sel.task_names:
        raise fail("test_scores", f"the tasks {sel.task_names}", test.task_names)
    row_of = {int(m): i for i, m in enumerate(test.masks)}
    out = np.empty(sel.num_tasks)
    nets = [int(cands.masks[c]) for c in chosen]
    for j, c in enumerate(sel.serving):
        i = row_of.get(nets[c])
        if i is None:
            raise fail("test_scores", f"a result for the chosen network {tuple(sel.groups[c])}",
                       "none")  # fmt: skip
        out[j] = test.scores[i, j]
        if not math.isfinite(out[j]):
            raise fail("test_scores", f"a score for task {sel.task_names[j]!r} in network "
                       f"{tuple(sel.groups[c])}", out[j])  # fmt: skip
    return out


def _cover_hint(gains: np.ndarray, cost: np.ndarray) -> str:
    t = gains.shape[1]
    cheapest = [float(cost[np.isfinite(gains[:, j])].min(initial=np.inf)) for j in range(t)]
    if any(math.isinf(c) for c in cheapest):
        return "impossible: some task is in no candidate network"
    return f"at least {max(cheapest):g}, at most {sum(cheapest):g}"
