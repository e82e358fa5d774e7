"""Principled Task Grouping's selection (Wang, Pan and Yu 2024, arXiv 2402.15328), exact, with
an open solver.

The official grouping notebook (``LOGO-CUHKSZ/Principled-Task-Grouping``,
``celeba/ours_code/celeba-grouping.ipynb``, read, not copied) solves, with Gurobi, a quadratic
programme over binary memberships: exactly ``n`` groups, each non-empty, no two equal, every
task in at least one group (a task may sit in several), maximising

    sum over groups G of (1 / |G|) * sum_{i, k in G} S[i, k]

with ``S[i, k]`` the transfer gain from ``i`` to ``k`` (:mod:`stgmtl.record.ptg`), the diagonal
``S[k, k]`` included. Here the same optimum comes from a linear programme: the value of every
candidate group ``v(G) = (1 / |G|) sum_{i, k in G} S[i, k]`` is computed up front (``2^T - 1``
groups), and a binary ``x_G`` per group picks exactly ``n`` of them covering every task,
maximising ``sum_G v(G) x_G``; distinctness holds because each group has one variable. It is
solved by :func:`scipy.optimize.milp` (HiGHS, branch and bound, exact up to its tolerance);
``solver="enumerate"`` tries every combination instead (small ``T`` only; the tests compare
the two). ``T <= max_tasks`` (default 12: 4,095 variables, about a second; 14 takes some
20 s); beyond, ``select(..., method="kmeans")``.

Each task is served by the chosen group where its own term is largest, ``mean_{i in G} S[i,
k]`` (the objective is the sum over groups of these terms over their members).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from stgmtl._checks import check_choice, check_int, fail
from stgmtl.affinity import TaskAffinity
from stgmtl.grouping.selection.exhaustive import serve
from stgmtl.grouping.selection.inputs import affinity_values
from stgmtl.grouping.selection.result import TaskSelection
from stgmtl.grouping.selection.subsets import MAX_TASKS, mask_tasks, member_matrix

__all__ = ["PTG_SOLVERS", "ptg_group_values", "ptg_select"]

#: Solvers of :func:`ptg_select`.
PTG_SOLVERS = ("milp", "enumerate")
_DEFAULT_MAX_TASKS = 12
_OBJECTIVE = "sum over groups of (1/|G|) sum_{i,k in G} S[i, k] (Principled Task Grouping)"


def _gains(affinity: Any, task_names: Any) -> tuple[np.ndarray, list[str]]:
    """``S`` with its diagonal (a task's gain from itself; NaN or absent -> 0)."""
    values, names = affinity_values(affinity, task_names)
    raw = affinity.values if isinstance(affinity, TaskAffinity) else np.asarray(affinity, float)
    np.fill_diagonal(values, np.nan_to_num(np.diag(raw).astype(np.float64)))
    return values, names


def ptg_group_values(gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every non-empty group's value and its members' terms.

    Returns ``(value (2^T,), terms (2^T, T))``: ``terms[G, k] = mean_{i in G} S[i, k]`` for
    ``k`` in ``G`` (``-inf`` outside), ``value[G] = sum_k terms[G, k]`` (``-inf`` for the empty
    set).
    """
    member = member_matrix(gains.shape[0])
    size = member.sum(axis=1)
    sums = member.astype(np.float64) @ gains  # [G, k] = sum_{i in G} S[i, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(member, sums / np.maximum(size, 1)[:, None], -np.inf)
    value = np.where(member, terms, 0.0).sum(axis=1)
    value[0] = -np.inf
    return value, terms


def _milp(value: np.ndarray, member: np.ndarray, n: int) -> list[int]:
    from scipy.optimize import Bounds, LinearConstraint, milp

    groups = np.arange(1, len(value))
    a = np.vstack([np.ones(len(groups)), member[groups].T.astype(np.float64)])
    low = np.concatenate([[n], np.ones(member.shape[1])])
    high = np.concatenate([[n], np.full(member.shape[1], np.inf)])
    res = milp(-value[groups], constraints=LinearConstraint(a, low, high),
               integrality=np.ones(len(groups)), bounds=Bounds(0, 1))  # fmt: skip
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"ptg_select: HiGHS found no solution ({res.message})")
    return [int(g) for g in groups[np.round(res.x) == 1]]


def _enumerate(value: np.ndarray, member: np.ndarray, n: int) -> list[int]:
    t = member.shape[1]
    best, chosen = -np.inf, None
    for combo in itertools.combinations(range(1, 1 << t), n):
        if member[list(combo)].any(axis=0).all():
            v = float(value[list(combo)].sum())
            if chosen is None or v > best + 1e-12 * max(1.0, abs(best)):
                best, chosen = v, combo
    assert chosen is not None
    return list(chosen)


def ptg_select(
    affinity: Any,
    n_groups: int,
    *,
    task_names: Any = None,
    solver: str = "milp",
    max_tasks: int = _DEFAULT_MAX_TASKS,
) -> TaskSelection:
    """Principled Task Grouping: exactly ``n_groups`` distinct, possibly overlapping groups.

    Parameters
    ----------
    affinity : TaskAffinity or array-like
        ``S`` (``(T, T)``, ``[i, k]`` = transfer gain from ``i`` to ``k``, e.g. the ``ptg``
        signal of :func:`stgmtl.record_affinity`); its diagonal is read (NaN = 0).
    n_groups : int
        Number of groups ``n``, ``1 <= n <= 2^T - 1``.
    task_names : sequence of str, optional
    solver : {"milp", "enumerate"}
        :func:`scipy.optimize.milp` (HiGHS), or every combination (small ``T``).
    max_tasks : int
        Refuse larger ``T`` (``2^T - 1`` variables; hard limit 16).

    Returns
    -------
    TaskSelection
        ``method="ptg"``; ``score`` = the objective; ``task_scores`` = each task's term in its
        serving group; ``cost`` = number of groups.
    """
    start = time.perf_counter()
    check_choice("solver", solver, PTG_SOLVERS)
    limit = check_int("max_tasks", max_tasks, low=1, high=MAX_TASKS)
    gains, names = _gains(affinity, task_names)
    t = len(names)
    if t > limit:
        raise fail("affinity", f"at most max_tasks={limit} tasks for the exact PTG programme "
                   f"(2^T - 1 = {2**t - 1:,} groups); for more use select(..., "
                   "method='kmeans')", f"{t} tasks")  # fmt: skip
    n = check_int("n_groups", n_groups, low=1, high=(1 << t) - 1)
    value, terms = ptg_group_values(gains)
    member = member_matrix(t)
    chosen = _milp(value, member, n) if solver == "milp" else _enumerate(value, member, n)
    chosen.sort(key=lambda m: ((m & -m).bit_length(), m))
    serving, best = serve(terms[chosen])
    return TaskSelection(
        task_names=names,
        groups=[[names[j] for j in mask_tasks(m, t)] for m in chosen],
        serving=serving,
        task_scores=best,
        score=float(value[chosen].sum()),
        cost=float(len(chosen)),
        method="ptg",
        objective=_OBJECTIVE,
        meta={
            "n_groups": n,
            "solver": solver,
            "num_tasks": t,
            "seconds": time.perf_counter() - start,
        },  # fmt: skip
    )
