"""Selection for the payoff harness: partitions, the common selector, budgeted search, softness."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import comb
from sklearn.metrics import adjusted_rand_score

import stgmtl
from stgmtl.affinity import TaskAffinity
from stgmtl.grouping.selection import standley_cost, standley_select
from stgmtl.payoff.search import (
    partition_from_affinity,
    random_partition,
    select_networks,
    selection_objective,
    set_partitions,
)
from stgmtl.payoff.softness import m_for_entropy, membership_entropy, soft_memberships


def _stirling2(n: int, k: int) -> int:
    return round(
        sum((-1) ** j * comb(k, j, exact=True) * (k - j) ** n for j in range(k + 1))
        / np.prod(range(1, k + 1))
    )


@pytest.mark.parametrize(("n", "k"), [(1, 1), (4, 2), (5, 3), (6, 4), (7, 7)])
def test_set_partitions_are_all_distinct_partitions(n: int, k: int) -> None:
    parts = list(set_partitions(n, k))
    assert len(parts) == _stirling2(n, k)
    canon = {tuple(p) for p in parts}
    assert len(canon) == len(parts)
    for p in parts:
        assert set(p.tolist()) == set(range(k)) and p[0] == 0


def test_random_partition_is_seeded_and_uses_every_group() -> None:
    a = random_partition(10, 4, 3)
    assert np.array_equal(a, random_partition(10, 4, 3)) and set(a.tolist()) == {0, 1, 2, 3}


def test_common_selector_recovers_planted_blocks() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 5)
    v = np.where(labels[:, None] == labels[None, :], 1.0, -1.0) + rng.normal(0, 0.3, (15, 15))
    np.fill_diagonal(v, np.nan)
    aff = TaskAffinity([f"t{i}" for i in range(15)], v, "planted")
    groups = partition_from_affinity(aff, 3, random_state=0)
    assert adjusted_rand_score(labels, groups.labels) == 1.0
    again = partition_from_affinity(aff, 3, random_state=0)
    assert np.array_equal(groups.labels, again.labels)


def _brute(losses: np.ndarray, costs: np.ndarray, budget: float) -> float:
    best = np.inf
    for r in range(1, len(costs) + 1):
        for c in itertools.combinations(range(len(costs)), r):
            if costs[list(c)].sum() <= budget + 1e-9:
                best = min(best, selection_objective(losses, c))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_budgeted_selection_exact_and_heuristic_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c, t = 10, 6
    losses = rng.random((c, t))
    losses[rng.random((c, t)) < 0.5] = np.nan
    losses[0] = 1.0  # one model serves every task
    costs = rng.uniform(0.3, 1.0, c)
    for budget in (1.0, 2.0, 3.5):
        ref = _brute(losses, costs, budget)
        chosen, val, exact = select_networks(losses, costs, budget)
        assert exact and val == pytest.approx(ref)
        assert costs[chosen].sum() <= budget + 1e-9
        assert selection_objective(losses, chosen) == pytest.approx(val)
        h_chosen, h_val, h_exact = select_networks(losses, costs, budget, max_exact=1)
        assert not h_exact and h_val >= ref - 1e-12 and np.isfinite(h_val)
        assert costs[h_chosen].sum() <= budget + 1e-9


def test_budgeted_selection_edge_cases() -> None:
    losses = np.array([[1.0, np.nan], [np.nan, 1.0]])
    assert select_networks(losses, [1.0, 1.0], 1.0) == ([], float("inf"), True)
    assert select_networks(losses, [1.0, 1.0], 0.5)[0] == []
    with pytest.raises(ValueError, match="costs: expected"):
        select_networks(losses, [1.0, 0.0], 2.0)
    with pytest.raises(ValueError, match="budget: expected"):
        select_networks(losses, [1.0, 1.0], 0.0)


def test_softness_hits_the_target_entropy_and_keeps_the_groups() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=(12, 12))
    np.fill_diagonal(v, np.nan)
    groups = partition_from_affinity(TaskAffinity([f"t{i}" for i in range(12)], v, "x"), 3)
    for target in (0.1, 0.4, 0.7):
        u, m = soft_memberships(groups, target)
        assert membership_entropy(u) == pytest.approx(target, abs=2e-3)
        assert m > 1 and np.array_equal(u.argmax(1), groups.labels)
    m1, m2 = m_for_entropy(groups, 0.2), m_for_entropy(groups, 0.6)
    assert m1 < m2
    hard, m0 = soft_memberships(groups, 0.0)
    assert m0 == 1.0 and membership_entropy(hard) == 0.0
    assert membership_entropy(np.full((4, 3), 1 / 3)) == pytest.approx(1.0)


def test_common_selector_is_stgmtl_group_on_the_affinity() -> None:
    rng = np.random.default_rng(4)
    v = rng.normal(size=(9, 9))
    np.fill_diagonal(v, np.nan)
    aff = TaskAffinity([f"t{i}" for i in range(9)], v, "x", orientation="source->recipient")
    ours = partition_from_affinity(aff, 3, random_state=2)
    common = stgmtl.group(aff, 3, random_state=2, progress=False)
    assert np.array_equal(ours.labels, common.labels)
    assert np.allclose(ours.membership, common.membership)


def test_common_selector_without_structure_deals_round_robin() -> None:
    flat = np.ones((6, 6))
    np.fill_diagonal(flat, np.nan)
    groups = partition_from_affinity(TaskAffinity([f"t{i}" for i in range(6)], flat, "x"), 2)
    assert groups.labels.tolist() == [0, 1, 0, 1, 0, 1]
    two = TaskAffinity(["a", "b"], np.array([[np.nan, 1.0], [2.0, np.nan]]), "x")
    assert partition_from_affinity(two, 2).labels.tolist() == [0, 1]


@pytest.mark.parametrize("seed", range(4))
def test_budgeted_selection_is_the_shared_standley_search(seed: int) -> None:
    # the same instance through standley_select (task sets) and select_networks (rows)
    rng = np.random.default_rng(seed)
    names = [f"t{i}" for i in range(5)]
    nets = [tuple(names)] + [
        tuple(sorted(rng.choice(names, int(rng.integers(1, 4)), replace=False).tolist()))
        for _ in range(9)
    ]
    nets = list(dict.fromkeys(nets))
    losses = np.full((len(nets), 5), np.nan)
    for c, net in enumerate(nets):
        for task in net:
            losses[c, names.index(task)] = rng.random()
    costs = np.array([standley_cost(n) for n in nets])
    table = {n: {t: float(losses[c, names.index(t)]) for t in n} for c, n in enumerate(nets)}
    for budget in (1.0, 2.0, 2.5):
        chosen, val, exact = select_networks(losses, costs, budget)
        ref = standley_select(table, budget, task_names=names, greater_is_better=False,
                              higher_order=False)  # fmt: skip
        brute = _brute(losses, costs, budget)
        assert exact and val == pytest.approx(ref.score) and val == pytest.approx(brute)
