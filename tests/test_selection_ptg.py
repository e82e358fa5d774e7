"""Principled Task Grouping's selection: the MILP (scipy / HiGHS) against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import stgmtl
from stgmtl.affinity import TaskAffinity
from stgmtl.grouping.selection import ptg_select, select


def _brute(s: np.ndarray, n: int) -> float:
    """Loops: every set of n distinct non-empty groups covering all tasks, the official value
    sum_G (1/|G|) sum_{i,k in G} S[i, k]."""
    t = len(s)
    groups = [g for r in range(1, t + 1) for g in itertools.combinations(range(t), r)]
    best = -np.inf
    for combo in itertools.combinations(groups, n):
        if set().union(*combo) != set(range(t)):
            continue
        value = sum(sum(s[i, k] for i in g for k in g) / len(g) for g in combo)
        best = max(best, value)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_milp_reaches_the_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    t = 4 + seed % 2
    s = rng.normal(size=(t, t))
    for n in (1, 2, 3):
        want = _brute(s, n)
        for solver in ("milp", "enumerate"):
            sel = ptg_select(s, n, solver=solver)
            assert sel.score == pytest.approx(want, rel=1e-9, abs=1e-9), (solver, n)
            assert len(sel.groups) == n and len({tuple(g) for g in sel.groups}) == n
            again = sum(sum(s[i, k] for i in ix for k in ix) / len(ix)
                        for ix in ([int(x[5:]) for x in g] for g in sel.groups))  # fmt: skip
            assert again == pytest.approx(sel.score, rel=1e-12)


def test_planted_blocks_and_overlap():
    s = np.full((6, 6), -1.0)
    s[:3, :3] = 1.0
    s[3:, 3:] = 1.0
    names = list("abcdef")
    sel = select(TaskAffinity(task_names=names, values=s, signal="ptg"), "ptg", n_groups=2)
    assert sel.groups == [["a", "b", "c"], ["d", "e", "f"]] and sel.method == "ptg"
    assert sel.labels.tolist() == [0, 0, 0, 1, 1, 1]
    three = ptg_select(s, 3, task_names=names)  # a third group must be distinct: it overlaps
    assert len(three.groups) == 3 and three.score == pytest.approx(_brute(s, 3))


def test_ptg_select_refuses_bad_input():
    with pytest.raises(ValueError, match=r"n_groups: expected an int in \[1, 7\], got 8"):
        ptg_select(np.zeros((3, 3)), 8)
    with pytest.raises(ValueError, match=r"affinity: expected at most max_tasks=3 tasks"):
        ptg_select(np.zeros((4, 4)), 2, max_tasks=3)
    with pytest.raises(ValueError, match=r"solver: expected one of 'milp', 'enumerate'"):
        ptg_select(np.zeros((3, 3)), 2, solver="gurobi")
    assert stgmtl.select is not None
