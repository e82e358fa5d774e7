"""Selection back-ends (TAG, Standley, best partition, k-means route) against plain references.

Every exact back-end is compared, score and choice, with a brute-force enumeration written
directly from the rule (itertools over subsets, combinations and set partitions), on random
affinities where ties have probability zero; planted structure must come out; bad input is
refused with "name: expected ..., got ..." messages; the result type round-trips.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import stgmtl
from stgmtl.affinity import TaskAffinity
from stgmtl.grouping.selection import (
    TAG_SINGLETON_SCORE,
    TaskSelection,
    best_partition,
    kmeans_select,
    network_candidates,
    score_groups,
    select,
    standley_cost,
    standley_select,
    tag_select,
)
from stgmtl.specialise.training import check_membership

# ------------------------------------------------------------------------------- references


def _in_group(v: np.ndarray, group: tuple[int, ...], j: int, single: float) -> float:
    """TAG's score of task j in a group: the mean of v[i][j] over the other members."""
    others = [i for i in group if i != j]
    if not others:
        return single
    return sum(float(v[i][j]) for i in others) / len(others)


def _all_subsets(t: int) -> list[tuple[int, ...]]:
    return [c for r in range(1, t + 1) for c in itertools.combinations(range(t), r)]


def tag_reference(v: np.ndarray, k: int, single: float) -> tuple[float, set[frozenset[int]]]:
    """TAG's notebook rule, enumerated: every combination of up to k subsets covering all tasks,
    each task scored by its best group, mean over tasks; the first of the fewest groups wins."""
    t = len(v)
    best, choice = -np.inf, None
    for m in range(1, k + 1):
        for combo in itertools.combinations(_all_subsets(t), m):
            if len(set().union(*combo)) < t:
                continue
            per_task = [max(_in_group(v, g, j, single) for g in combo if j in g) for j in range(t)]
            value = sum(per_task) / t
            if value > best + 1e-12:
                best, choice = value, combo
    assert choice is not None
    return best, {frozenset(g) for g in choice}


def set_partitions(items: list[int]):
    """Every partition of ``items`` (Bell(len) of them), recursively."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]


def partition_reference(v, n_groups, objective, single):
    t = len(v)
    best, choice = -np.inf, None
    for part in set_partitions(list(range(t))):
        if n_groups is not None and len(part) != n_groups:
            continue
        if objective == "tag":
            value = sum(_in_group(v, tuple(g), j, single) for g in part for j in g) / t
        else:
            value = sum(float(v[i][j]) for g in part for i in g for j in g if i != j)
        if value > best + 1e-12 or (
            abs(value - best) <= 1e-12 and choice is not None and len(part) < len(choice)
        ):
            best, choice = value, part
    return best, {frozenset(g) for g in choice}


def standley_reference(gains: np.ndarray, costs: np.ndarray, budget: float):
    """Every set of candidates within the budget (no pruning), served-by-best, must cover."""
    c, t = gains.shape
    best, choice = -np.inf, None
    for m in range(1, c + 1):
        if costs.min() * m > budget + 1e-9:
            break
        for combo in itertools.combinations(range(c), m):
            if costs[list(combo)].sum() > budget + 1e-9:
                continue
            per_task = gains[list(combo)].max(axis=0)
            if not np.isfinite(per_task).all():
                continue
            if per_task.sum() > best + 1e-12:
                best, choice = per_task.sum(), combo
    assert choice is not None
    rows = gains[list(choice)]
    serving = set(np.argmax(rows, axis=0).tolist())
    return best / t, {choice[i] for i in serving}


def _masks(sel: TaskSelection) -> set[frozenset[int]]:
    index = {n: i for i, n in enumerate(sel.task_names)}
    return {frozenset(index[n] for n in g) for g in sel.groups}


def _planted(sizes=(3, 3, 2), seed=0, within=1.0, between=-0.5, noise=0.1):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    v = np.where(labels[:, None] == labels[None, :], within, between)
    v = v + noise * rng.normal(size=v.shape)
    names = [f"g{labels[i]}_t{i}" for i in range(len(labels))]
    return TaskAffinity(task_names=names, values=v, signal="planted"), labels


# ----------------------------------------------------------------------------------- TAG


@pytest.mark.parametrize("seed", range(12))
def test_tag_matches_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    t = int(rng.integers(2, 6))
    k = int(rng.integers(1, 4))
    single = [TAG_SINGLETON_SCORE, 0.0, 0.4][seed % 3]
    v = rng.normal(size=(t, t))
    v[np.diag_indices(t)] = rng.normal(size=t) * 100  # self-affinity is never read
    want, choice = tag_reference(v, k, single)
    got = tag_select(v, k, singleton_score=single)
    assert got.score == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert _masks(got) == choice
    assert got.n_groups <= k and got.cost == got.n_groups
    # each task is served by its best chosen network, with that score
    for j, name in enumerate(got.task_names):
        scores = [_in_group(v, tuple(got.task_names.index(n) for n in g), j, single)
                  for g in got.groups if name in g]  # fmt: skip
        assert got.task_scores[j] == pytest.approx(max(scores), rel=1e-12)
        assert name in got.groups[got.serving[j]]


def _notebook_tag(rev: dict[str, dict[str, float]], tasks: list[str], splits: int):
    """TAG's notebook procedure, re-stated (not copied) with its data layout: ``rev`` keyed
    ``[recipient][source]``; subsets grown depth-first, each member accumulating the affinity
    onto it from every other member, divided by ``|G| - 1``; one-task groups score -1e6; then a
    depth-first search over up to ``splits`` groups covering all tasks, strict improvement."""
    groups: dict[tuple[str, ...], dict[str, float]] = {}

    def grow(start: int, path: tuple[str, ...], acc: dict[str, float]) -> None:
        for i in range(start, len(tasks)):
            cur = tasks[i]
            new = dict(acc)
            new[cur] = 0.0
            for prev in path:
                new[prev] += rev[prev][cur]
                new[cur] += rev[cur][prev]
            if path:
                groups[(*path, cur)] = new
            grow(i + 1, (*path, cur), new)
            if not path:
                groups[(cur,)] = {cur: -1e6}

    grow(0, (), {})
    for g, per_task in groups.items():
        if len(g) > 1:
            for task in per_task:
                per_task[task] /= len(g) - 1
    items = list(groups.items())
    best: list = [-1e18, None]

    def search(start: int, chosen: dict) -> None:
        if {t for g in chosen for t in g} == set(tasks):
            top = {t: -1e6 for t in tasks}
            for per_task in chosen.values():
                for t, v in per_task.items():
                    top[t] = max(top[t], v)
            value = float(np.mean(list(top.values())))
            if value > best[0]:
                best[0], best[1] = value, dict(chosen)
        if len(chosen) == splits:
            return
        for i in range(start, len(items)):
            search(i + 1, {**chosen, items[i][0]: items[i][1]})

    search(0, {})
    return best[0], best[1]


@pytest.mark.parametrize("seed", range(4))
def test_tag_matches_a_restatement_of_the_notebook(seed):
    rng = np.random.default_rng(50 + seed)
    t = 5
    names = [f"task{i}" for i in range(t)]
    v = rng.normal(size=(t, t))
    rev = {names[j]: {names[i]: float(v[i, j]) for i in range(t)} for j in range(t)}
    want, chosen = _notebook_tag(rev, names, 3)
    got = tag_select(TaskAffinity(task_names=names, values=v, signal="tag"), 3)
    assert got.score == pytest.approx(want, rel=1e-12)
    # the notebook may keep a group that serves nobody (found first, same value): compare the
    # networks that serve a task
    serving = set()
    for task in names:
        serving.add(max(chosen, key=lambda g: chosen[g].get(task, -np.inf)))
    assert {frozenset(g) for g in serving} == {frozenset(g) for g in got.groups}


def test_tag_reads_the_affinity_onto_each_task():
    # task 0 helps task 1 a lot (values[0, 1]); task 1 harms task 0 a little
    v = np.array([[0.0, 5.0], [-1.0, 0.0]])
    sel = tag_select(v, 1, task_names=["helper", "helped"])
    assert sel.groups == [["helper", "helped"]]
    np.testing.assert_array_equal(sel.task_scores, [-1.0, 5.0])  # [onto helper, onto helped]
    assert sel.score == pytest.approx(2.0)


def test_tag_recovers_planted_groups_and_prefers_fewer_networks():
    aff, labels = _planted(sizes=(3, 3, 2), seed=1)
    sel = tag_select(aff, 3)
    assert _masks(sel) == {frozenset(np.flatnonzero(labels == g)) for g in range(3)}
    assert adjusted_rand_score(labels, sel.labels) == 1.0
    # with one network allowed, all tasks share it; more allowed networks never score lower
    scores = [tag_select(aff, k).score for k in range(1, 6)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(scores))


def test_tag_refuses_too_many_tasks_and_points_to_kmeans():
    with pytest.raises(ValueError, match=r"affinity: expected at most max_tasks=14 .*kmeans"):
        tag_select(np.zeros((15, 15)), 3)
    with pytest.raises(ValueError, match=r"max_tasks: expected an int in \[1, 16\], got 17"):
        tag_select(np.zeros((5, 5)), 3, max_tasks=17)


# ----------------------------------------------------------------------------- partitions


def test_set_partitions_reference_counts_bell_numbers():
    assert [sum(1 for _ in set_partitions(list(range(n)))) for n in range(1, 8)] == [
        1, 2, 5, 15, 52, 203, 877,
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("objective", ["tag", "total"])
def test_best_partition_matches_every_partition(seed, objective):
    rng = np.random.default_rng(100 + seed)
    t = int(rng.integers(2, 8))
    n_groups = None if seed % 2 else int(rng.integers(1, t + 1))
    single = [TAG_SINGLETON_SCORE, 0.0][seed % 2]
    v = rng.normal(size=(t, t))
    want, choice = partition_reference(v, n_groups, objective, single)
    got = best_partition(v, n_groups, objective=objective, singleton_score=single)
    assert got.score == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert _masks(got) == choice
    groups = [set(g) for g in got.groups]
    assert all(not (a & b) for a, b in itertools.combinations(groups, 2))  # a partition
    total = got.task_scores.sum() if objective == "total" else got.task_scores.mean()
    assert total == pytest.approx(got.score, rel=1e-12, abs=1e-12)


def test_best_partition_recovers_planted_groups():
    aff, labels = _planted(sizes=(4, 3, 3, 2), seed=3)
    # total within-group affinity needs no number of groups: negative pairs keep groups apart
    assert adjusted_rand_score(labels, best_partition(aff, objective="total").labels) == 1.0
    # TAG's mean in-group affinity is told the number (free, it may split a group into the
    # noisily best pairs, since a mean over fewer partners can be higher)
    assert adjusted_rand_score(labels, best_partition(aff, 4, objective="tag").labels) == 1.0


def test_best_partition_with_all_positive_total_affinity_is_one_group():
    v = np.ones((5, 5))
    assert best_partition(v, objective="total").n_groups == 1
    assert best_partition(v, 3, objective="total").n_groups == 3


# --------------------------------------------------------------------------------- Standley


def _gains(cands, greater=True):
    sign = 1.0 if greater else -1.0
    return np.where(np.isfinite(cands.scores), sign * cands.scores, -np.inf)


@pytest.mark.parametrize("seed", range(10))
def test_standley_matches_brute_force_on_affinities(seed):
    rng = np.random.default_rng(200 + seed)
    t = int(rng.integers(2, 5))
    budget = float(rng.choice([1.0, 1.5, 2.0, 2.5, 3.0]))
    v = rng.normal(size=(t, t))
    cands = network_candidates(v)
    costs = np.array([standley_cost(n) for n in cands.networks()])
    want, choice = standley_reference(_gains(cands), costs, budget)
    for bound in (True, False):
        got = standley_select(v, budget, bound=bound)
        assert got.score == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert _masks(got) == {frozenset(np.flatnonzero((int(cands.masks[c]) >> np.arange(t)) & 1))
                               for c in choice}  # fmt: skip
        assert got.cost <= budget + 1e-12
        assert got.cost == pytest.approx(sum(standley_cost(tuple(g)) for g in got.groups))


def test_standley_budget_is_respected_and_more_budget_never_hurts():
    rng = np.random.default_rng(5)
    v = rng.normal(size=(5, 5))
    previous = -np.inf
    for budget in np.arange(1.0, 5.01, 0.5):
        sel = standley_select(v, float(budget))
        assert sel.cost <= budget + 1e-12
        assert sel.score >= previous - 1e-12
        previous = sel.score


def _table(rng, t, names, single=True):
    """Random trained results: every network of up to 3 tasks (losses in [0, 1])."""
    out = {}
    for r in range(1 if single else 2, min(3, t) + 1):
        for combo in itertools.combinations(names, r):
            out[combo] = {n: float(rng.uniform(0.1, 1.0)) for n in combo}
    return out


def test_higher_order_approximation_is_the_mean_of_pair_results():
    rng = np.random.default_rng(7)
    names = ["a", "b", "c", "d", "e"]
    table = _table(rng, 5, names)
    table = {k: v for k, v in table.items() if len(k) <= 2}  # only singles and pairs trained
    cands = network_candidates(table)
    by_mask = {int(m): row for m, row in zip(cands.masks, cands.scores, strict=True)}
    for r in (3, 4, 5):
        for combo in itertools.combinations(range(5), r):
            row = by_mask[sum(1 << j for j in combo)]
            for j in combo:
                pair = [table[tuple(sorted((names[i], names[j]), key=names.index))][names[j]]
                        for i in combo if i != j]  # fmt: skip
                assert row[j] == pytest.approx(sum(pair) / len(pair), rel=1e-12)
            assert np.isneginf(row[[j for j in range(5) if j not in combo]]).all()
    assert cands.trained.sum() == 15 and (~cands.trained).sum() == 16


@pytest.mark.parametrize("seed", range(4))
def test_standley_on_trained_losses_matches_brute_force_and_reports_test(seed):
    rng = np.random.default_rng(300 + seed)
    names = ["a", "b", "c", "d"]
    val = _table(rng, 4, names)
    test = {k: {n: s + 0.05 for n, s in v.items()} for k, v in _table(rng, 4, names).items()}
    budget = [1.5, 2.0, 2.5, 3.0][seed]
    cands = network_candidates(val)
    costs = np.array([standley_cost(n) for n in cands.networks()])
    want, choice = standley_reference(_gains(cands, greater=False), costs, budget)
    got = standley_select(val, budget, greater_is_better=False, test_scores=test)
    assert got.score == pytest.approx(-want, rel=1e-12)  # mean served loss
    assert {tuple(g) for g in got.groups} == {cands.networks()[c] for c in choice}
    # test scores: each task read from the network serving it on validation
    for j, name in enumerate(got.task_names):
        net = tuple(got.groups[got.serving[j]])
        full = val.get(net) or {}
        assert got.task_scores[j] == pytest.approx(
            full.get(name, cands.scores[list(cands.networks()).index(net), j])
        )
        test_row = test.get(net)
        if test_row is not None:
            assert got.test_task_scores[j] == pytest.approx(test_row[name])
    assert got.test_score == pytest.approx(float(np.mean(got.test_task_scores)))


def test_dominated_candidates_are_pruned_without_changing_the_optimum():
    rng = np.random.default_rng(11)
    names = ["a", "b", "c", "d"]
    table = _table(rng, 4, names)  # every network of up to 3 tasks; larger = better
    base = standley_select(table, 2.5, higher_order=False)
    # a 4-task network that is worse on every task than the optimum's served scores: any set
    # holding it is dominated once the optimum's networks are in, and the optimum stays
    served = dict(zip(base.task_names, base.task_scores, strict=True))
    worse = {**table, tuple(names): {n: served[n] - 0.1 for n in names}}
    got = standley_select(worse, 2.5, higher_order=False)
    assert got.groups == base.groups and got.score == pytest.approx(base.score)
    cands = network_candidates(worse, higher_order=False)
    costs = np.array([standley_cost(n) for n in cands.networks()])
    want, _ = standley_reference(_gains(cands), costs, 2.5)
    assert got.score == pytest.approx(want, rel=1e-12)
    # the branch-and-bound cut changes the work, not the answer
    plain = standley_select(worse, 2.5, higher_order=False, bound=False)
    assert plain.groups == got.groups and plain.score == pytest.approx(got.score)
    assert got.meta["nodes"] < plain.meta["nodes"]


def test_standley_recovers_planted_groups_from_an_affinity():
    aff, labels = _planted(sizes=(2, 2, 2), seed=4)
    sel = standley_select(aff, 3.0)
    assert adjusted_rand_score(labels, sel.labels) == 1.0
    assert sel.cost == 3.0


def test_standley_refuses_bad_input():
    v = np.random.default_rng(0).normal(size=(4, 4))
    with pytest.raises(ValueError, match=r"budget: expected at least 2, the cost of the cheap"):
        standley_select(v, 1.0, max_network_size=1)  # four half-size singles: 4 x 0.5
    with pytest.raises(ValueError, match=r"budget: expected a finite number > 0.0, got -1"):
        standley_select(v, -1)
    with pytest.raises(ValueError, match=r"scores: expected at most max_candidates=10 .*'tag'"):
        standley_select(v, 2.0, max_candidates=10)
    with pytest.raises(ValueError, match=r"scores\[\('a', 'b'\)\]: expected a score for each"):
        standley_select({("a", "b"): {"a": 1.0}}, 1.0)
    with pytest.raises(ValueError, match=r"scores: expected each network once"):
        standley_select({("a", "b"): {"a": 1, "b": 1}, ("b", "a"): {"a": 1, "b": 1}}, 1.0)
    with pytest.raises(ValueError, match=r"test_scores: expected a result for the chosen net"):
        standley_select({("a", "b"): {"a": 1.0, "b": 1.0}}, 1.0,
                        test_scores={("a",): {"a": 1.0}, ("b",): {"b": 1.0}})  # fmt: skip
    with pytest.raises(ValueError, match=r"costs: expected positive costs"):
        standley_select(v, 2.0, costs=lambda n: 0.0)


# ------------------------------------------------------------------------ k-means route


def test_kmeans_route_recovers_planted_groups_and_scores_them_like_tag():
    aff, labels = _planted(sizes=(5, 5, 5, 5), seed=6, noise=0.2)
    sel = kmeans_select(aff, 4)
    assert adjusted_rand_score(labels, sel.labels) == 1.0
    again = score_groups(aff, sel.groups)
    np.testing.assert_allclose(again.task_scores, sel.task_scores)
    assert stgmtl.select(aff, "kmeans", n_groups=4).groups == sel.groups


# -------------------------------------------------------------------------- dispatcher


def test_select_dispatches_and_rejects_wrong_arguments():
    aff, _ = _planted()
    assert select(aff, "tag", n_groups=3).method == "tag"
    assert select(aff, "partition").method == "partition"
    assert select(_planted((2, 2, 2))[0], "standley", budget=3.0).method == "standley"
    with pytest.raises(ValueError, match=r"method: expected one of 'tag', .*, got 'bogus'"):
        select(aff, "bogus", n_groups=2)
    with pytest.raises(ValueError, match=r"n_groups: expected a number of groups for method='tag'"):
        select(aff, "tag")
    with pytest.raises(ValueError, match=r"budget: expected a cost budget for method='standley'"):
        select(aff, "standley")
    with pytest.raises(ValueError, match=r"budget: expected None for method='tag'"):
        select(aff, "tag", n_groups=2, budget=1.0)


@pytest.mark.parametrize(
    ("bad", "match", "error"),
    [
        (np.zeros((3, 4)), r"affinity: expected a square \(T, T\) matrix, got \(3, 4", ValueError),
        (np.zeros((1, 1)), r"affinity: expected at least 2 tasks, got '1 task\(s\)'", ValueError),
        (np.array([[0, np.nan], [1, 0]]), r"affinity: expected finite off-diagonal", ValueError),
        (np.array([[0, np.inf], [1, 0]]), r"affinity: expected finite values, got", ValueError),
        (np.array([["a", "b"], ["c", "d"]]), r"affinity: expected a real-valued", TypeError),
        ("x", r"affinity: expected a TaskAffinity or a \(T, T\) array, got 'str'", TypeError),
    ],
)  # fmt: skip
def test_bad_affinities_are_refused(bad, match, error):
    with pytest.raises(error, match=match):
        tag_select(bad, 2)


def test_nan_diagonal_is_ignored_and_task_names_are_checked():
    v = np.random.default_rng(1).normal(size=(4, 4))
    with_nan = v.copy()
    np.fill_diagonal(with_nan, np.nan)
    nan_aff = TaskAffinity(task_names=list("abcd"), values=with_nan, signal="s")
    assert tag_select(nan_aff, 2).groups == tag_select(v, 2, task_names=list("abcd")).groups
    with pytest.raises(ValueError, match=r"expected a finite diagonal in a plain array.*task_0"):
        tag_select(with_nan, 2)  # a plain array has no 'no self-affinity' convention
    aff = TaskAffinity(task_names=list("abcd"), values=v, signal="s")
    with pytest.raises(ValueError, match=r"task_names: expected None or the affinity's own"):
        tag_select(aff, 2, task_names=list("wxyz"))
    with pytest.raises(ValueError, match=r"task_names: expected unique names"):
        tag_select(v, 2, task_names=list("aabc"))
    with pytest.raises(ValueError, match=r"n_groups: expected an int >= 1, got 0"):
        tag_select(v, 0)


# ------------------------------------------------------------------------ result type


def _selection():
    rng = np.random.default_rng(9)
    names = ["a", "b", "c", "d"]
    sel = standley_select(_table(rng, 4, names), 2.0, test_scores=_table(rng, 4, names))
    return sel


def test_selection_round_trips_and_plugs_into_training(tmp_path):
    sel = _selection()
    path = sel.save(tmp_path / "sel")
    back = TaskSelection.load(path)
    assert back.groups == sel.groups and back.task_names == sel.task_names
    np.testing.assert_array_equal(back.serving, sel.serving)
    np.testing.assert_array_equal(back.task_scores, sel.task_scores)
    np.testing.assert_array_equal(back.test_task_scores, sel.test_task_scores)
    assert (back.score, back.cost, back.test_score) == (sel.score, sel.cost, sel.test_score)
    assert back.meta == json.loads(json.dumps(sel.meta)) and back.method == "standley"
    w = check_membership(back.membership, back.num_tasks)
    np.testing.assert_array_equal(w.argmax(axis=1), back.serving)
    gm = back.group_matrix
    assert (gm[np.arange(back.num_tasks), back.serving] == 1).all()
    assert back.to_groups().groups == back.served
    # a selection without test scores round-trips too
    tag = tag_select(np.random.default_rng(0).normal(size=(4, 4)), 2)
    again = TaskSelection.load(tag.save(tmp_path / "tag"))
    assert again.test_task_scores is None and np.isnan(again.test_score)


def test_damaged_selection_folder_is_refused(tmp_path):
    path = _selection().save(tmp_path / "sel")
    with open(path / "tasks.parquet", "ab") as f:
        f.write(b"junk")
    with pytest.raises(ValueError, match="sha256 does not match"):
        TaskSelection.load(path)
    with pytest.raises(FileNotFoundError, match="expected a saved TaskSelection folder"):
        TaskSelection.load(tmp_path / "missing")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"groups": [["a", "z"]]}, r"groups: expected non-empty lists of distinct, known"),
        ({"groups": [["a"], ["a"]]}, r"groups: expected distinct networks"),
        ({"serving": np.array([0, 0])}, r"serving: expected for each task a network that"),
        ({"serving": np.array([0, 5])}, r"serving: expected network indices in \[0, 1\]"),
        ({"task_scores": np.array([1.0, np.nan])}, r"task_scores: expected \(2,\) finite"),
        ({"meta": []}, r"meta: expected a dict, got 'list'"),
    ],
)
def test_selection_rejects_inconsistent_fields(change, match):
    fields = dict(task_names=["a", "b"], groups=[["a"], ["b"]], serving=np.array([0, 1]),
                  task_scores=np.array([1.0, 2.0]), score=1.5, cost=2.0, method="x")  # fmt: skip
    TaskSelection(**fields)
    with pytest.raises((ValueError, TypeError), match=match):
        TaskSelection(**{**fields, **change})
