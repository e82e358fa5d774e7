"""Standley et al.'s budgeted network selection (ICML 2020, "Which Tasks Should Be Learned
Together in Multi-task Learning?"), from trained results or from an affinity.

The rule, as in the official code (``tstandley/taskgrouping``, ``network_selection/main.cpp``;
read and re-derived, not copied):

* **Candidates** are networks (task sets) with a score per member task and a cost: a full-size
  network costs 1, a half-size single-task network 0.5 (:func:`standley_cost`). The paper's
  tables hold both sizes of single-task network; give the half-size ones as ``half_size=
  {task: score}`` and the single-task entries of the table are then full-size (cost 1).
* **A solution** is a set of candidates whose total cost fits the budget; each task is served
  by the chosen network where it scores best, and the solution's value is the sum (here: the
  mean) over tasks of those best scores. Every task must be served.
* **The search** is an exact depth-first search over sets of candidates: at each node the
  remaining candidates that no longer fit the budget, or that improve no task over the current
  solution (the solution *dominates* them), are dropped, since adding them can never help;
  candidates are tried best improvement first (the code's sort). Added here, and exact as
  well: a branch is cut when even the best score of every remaining candidate on every task
  could not beat the best solution found (branch and bound), and networks that end up serving
  no task are removed from the answer (same score, lower cost). The search itself lives in
  :mod:`~stgmtl.grouping.selection.search` (:func:`standley_search`).
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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stgmtl._checks import check_bool, check_float, check_int, check_names, fail
from stgmtl.grouping.selection.exhaustive import serve
from stgmtl.grouping.selection.inputs import affinity_values
from stgmtl.grouping.selection.result import TaskSelection
from stgmtl.grouping.selection.search import (
    SearchResult,
    cheapest_cover,
    search_inputs,
    standley_search,
    unserved_tasks,
)
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

#: Cost of a half-size single-task network (``half_size=`` of :func:`standley_select`).
HALF_SIZE_COST = 0.5
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
    member or not scored), ``trained`` (C,) bool (False = higher-order approximation), ``half``
    (C,) bool (True = a half-size single-task network; its mask may repeat a full-size one's)."""

    task_names: list[str]
    masks: np.ndarray
    scores: np.ndarray
    trained: np.ndarray
    half: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        if len(self.half) != len(self.masks):
            self.half = np.zeros(len(self.masks), dtype=bool)

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
            raise fail(name, "each network once (a half-size single-task network beside a "
                       "full-size one goes in half_size={task: score})",
                       f"{seen[frozenset(net)]} and {net}")  # fmt: skip
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
    half_size: Mapping[str, float] | None = None,
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
    half_size : mapping task -> score, optional
        Half-size single-task networks (table input only), appended after the table's
        networks with ``half=True``.
    name : str
        Argument name for messages.

    Returns
    -------
    Candidates
    """
    check_bool("higher_order", higher_order)
    if not isinstance(scores, Mapping):
        if half_size is not None:
            raise fail("half_size", "None for an affinity (it is for tables of trained results)",
                       type(half_size).__name__)  # fmt: skip
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
    cands = _from_table(table, names, higher_order, size)
    return cands if half_size is None else _with_half(cands, half_size, name)


def _with_half(cands: Candidates, half_size: Any, name: str) -> Candidates:
    """``cands`` with one half-size single-task network per entry of ``half_size`` appended."""
    where = "half_size" if name == "scores" else f"{name} (half_size)"
    if not isinstance(half_size, Mapping):
        raise fail(where, "a mapping task -> score", type(half_size).__name__, error=TypeError)
    index = {n: j for j, n in enumerate(cands.task_names)}
    unknown = sorted(str(k) for k in half_size if str(k) not in index)
    if unknown:
        raise fail(where, f"scores of the tasks {cands.task_names}", f"unknown tasks {unknown}")
    t = len(cands.task_names)
    masks, rows = [], []
    for task, value in half_size.items():
        j = index[str(task)]
        row = np.full(t, -np.inf)
        row[j] = check_float(f"{where}[{task!r}]", value)
        masks.append(1 << j)
        rows.append(row)
    return Candidates(
        task_names=cands.task_names,
        masks=np.concatenate([cands.masks, np.array(masks, dtype=np.int64)]),
        scores=np.vstack([cands.scores, np.array(rows).reshape(len(rows), t)]),
        trained=np.concatenate([cands.trained, np.ones(len(rows), dtype=bool)]),
        half=np.concatenate([cands.half, np.ones(len(rows), dtype=bool)]),
    )


def _costs(cands: Candidates, costs: Any) -> np.ndarray:
    """Cost per candidate: half-size ones :data:`HALF_SIZE_COST`; the others from ``costs``,
    defaulting to :func:`standley_cost` (or 1 for every network when half-size ones are given,
    the table's single-task networks being full-size then)."""
    nets = cands.networks()
    with_half = bool(cands.half.any())

    def default(n: Network) -> float:
        return 1.0 if with_half else standley_cost(n)

    if costs is None:
        out = [default(n) for n in nets]
    elif callable(costs):
        out = [costs(n) for n in nets]
    elif isinstance(costs, Mapping):
        given = {frozenset(_network(k, "costs")): v for k, v in costs.items()}
        out = [given.get(frozenset(n), default(n)) for n in nets]
    else:
        raise fail("costs", "None, a mapping network -> cost, or a callable", costs,
                   error=TypeError)  # fmt: skip
    out = [HALF_SIZE_COST if h else c for c, h in zip(out, cands.half.tolist(), strict=True)]
    arr = np.array([check_float("costs", c) for c in out], dtype=np.float64)
    if (arr <= 0).any():
        raise fail("costs", "positive costs", float(arr.min()))
    return arr


def standley_select(
    scores: Any,
    budget: float,
    *,
    half_size: Mapping[str, float] | None = None,
    test_scores: Any = None,
    test_half_size: Mapping[str, float] | None = None,
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
    half_size : mapping task -> score, optional
        Results of half-size single-task networks (cost 0.5), beside the full-size ones in
        ``scores`` (whose single-task networks then cost 1): the layout of the paper's tables,
        where the first row holds the half-size networks.
    test_scores : same kind as ``scores``, optional
        Held-out results: read for the chosen networks only, each task from its serving
        network (``test_task_scores``, ``test_score``); a chosen network missing from it is an
        error.
    test_half_size : mapping task -> score, optional
        Held-out results of the half-size networks (needed when one is chosen).
    task_names : sequence of str, optional
        Task order.
    costs : mapping or callable, optional
        Cost per network of ``scores`` (a mapping may list some networks only; others get
        :func:`standley_cost`, or 1 when ``half_size`` is given).
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
        budget, candidates, visited nodes, each network's cost, whether it is half-size and
        whether its score was trained or approximated. Every chosen network serves a task.

    Raises
    ------
    ValueError
        A task in no candidate network (named), or a budget below the cheapest cover (given).
    """
    start = time.perf_counter()
    check_bool("greater_is_better", greater_is_better)
    check_bool("bound", bound)
    cands = network_candidates(scores, task_names=task_names, higher_order=higher_order,
                               max_network_size=max_network_size, single_score=single_score,
                               half_size=half_size)  # fmt: skip
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
    _check_coverable(cands, cost, b)
    search = standley_search(cands.scores, cost, b, greater_is_better=greater_is_better,
                             bound=bound)  # fmt: skip
    out, chosen = _selection(cands, cost, search, b, greater_is_better, higher_order)
    if test_scores is not None:
        out.test_task_scores = _test_scores(test_scores, test_half_size, out, cands, chosen,
                                            higher_order, max_network_size,
                                            single_score)  # fmt: skip
        out.test_score = float(np.mean(out.test_task_scores))
    out.meta["seconds"] = time.perf_counter() - start
    return out


def _check_coverable(cands: Candidates, cost: np.ndarray, budget: float) -> None:
    """Name the real problem when no selection exists: a task in no network, or the budget."""
    members = np.isfinite(cands.scores)
    missing = unserved_tasks(members)
    if missing:
        raise fail("scores", "every task in some candidate network (with a finite score)",
                   f"no network serving {[cands.task_names[j] for j in missing]}")  # fmt: skip
    need = cheapest_cover(members, cost)
    if budget + 1e-9 < need:
        raise fail("budget", f"at least {need:g}, the cost of the cheapest set of candidate "
                   "networks that serves every task", budget)  # fmt: skip


def _selection(
    cands: Candidates,
    cost: np.ndarray,
    search: SearchResult,
    budget: float,
    greater_is_better: bool,
    higher_order: bool,
) -> tuple[TaskSelection, list[int]]:
    """The search's answer as a TaskSelection and the chosen candidates in its network order
    (by first task, a full-size network before a half-size one of the same task)."""
    sign = 1.0 if greater_is_better else -1.0
    gains = np.where(np.isfinite(cands.scores), sign * cands.scores, -np.inf)
    masks = cands.masks
    chosen = sorted(search.chosen, key=lambda c: (int(masks[c]) & -int(masks[c]), int(masks[c]),
                                                  bool(cands.half[c])))  # fmt: skip
    serving, best = serve(gains[chosen])
    networks = cands.networks()
    meta = {
        "budget": budget,
        "greater_is_better": greater_is_better,
        "higher_order": higher_order,
        "candidates": len(masks),
        "nodes": search.nodes,
        "cut": search.cut,
        "idle_dropped": search.idle,
        "trained": [bool(cands.trained[c]) for c in chosen],
        "half_size": [bool(cands.half[c]) for c in chosen],
        "network_costs": [float(cost[c]) for c in chosen],
        "search": "exact depth-first search, dominance + budget filters, branch and bound",
        "seconds": 0.0,
    }
    out = TaskSelection(
        task_names=cands.task_names,
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
    return out, chosen


def _test_scores(
    test_scores: Any,
    test_half_size: Any,
    sel: TaskSelection,
    cands: Candidates,
    chosen: Iterable[int],
    higher_order: bool,
    max_network_size: int | None,
    single_score: float,
) -> np.ndarray:
    test = network_candidates(test_scores, task_names=sel.task_names, higher_order=higher_order,
                              max_network_size=max_network_size, single_score=single_score,
                              half_size=test_half_size, name="test_scores")  # fmt: skip
    if test.task_names != sel.task_names:
        raise fail("test_scores", f"the tasks {sel.task_names}", test.task_names)
    row_of = {(int(m), bool(h)): i for i, (m, h) in enumerate(zip(test.masks, test.half,
                                                                  strict=True))}  # fmt: skip
    out = np.empty(sel.num_tasks)
    nets = [(int(cands.masks[c]), bool(cands.half[c])) for c in chosen]
    for j, c in enumerate(sel.serving):
        i = row_of.get(nets[c])
        if i is None:
            what = "test_half_size" if nets[c][1] else "test_scores"
            raise fail(what, f"a result for the chosen network {tuple(sel.groups[c])}", "none")
        out[j] = test.scores[i, j]
        if not math.isfinite(out[j]):
            raise fail("test_scores", f"a score for task {sel.task_names[j]!r} in network "
                       f"{tuple(sel.groups[c])}", out[j])  # fmt: skip
    return out
