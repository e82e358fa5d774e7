"""Exact search over subsets of ``T`` tasks, with tasks as bits of an integer mask.

The exhaustive back-ends (TAG's network selection and the best partition) share three steps,
each a few vectorised numpy passes over all subsets:

1. :func:`group_scores` - for every subset ``G`` (a candidate network) and every task ``j`` in
   it, the score of ``j`` when trained in ``G``: TAG's mean in-group affinity onto ``j``,
   ``mean(values[i, j] for i in G, i != j)``.
2. :func:`best_superset` - for every set ``S`` of tasks, the best single network that serves
   all of ``S``: ``max over G ⊇ S of sum(score[G, j] for j in S)``. One pass over all
   ``3^T`` pairs ``S ⊆ G``.
3. :func:`PartitionSearch` - the best split of all tasks into ``m`` blocks, each block scored
   on its own (``block_value[S]``), by dynamic programming over masks: the block holding the
   lowest task of ``mask`` is chosen first, so every split is counted once. ``O(m * 3^T)``.

Why this equals "try every combination of up to k networks" (TAG's code): in a selection each
task is served by its best network; the tasks one network serves form a block, so the
selection's score is a sum over blocks of what their serving network gives them, which step 2
maximises per block and step 3 over splits; conversely every split with its blocks' best
networks is a selection of at most ``k`` networks scoring at least that much. The tests compare
the result with a plain enumeration of combinations on small ``T``.

Memory: the ``3^T`` pairs are held as two int32 arrays plus float64 sums (about 20 bytes per
pair: 100 MB at ``T = 14``); :data:`MAX_TASKS` is the largest ``T`` accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stgmtl._checks import check_int, fail

__all__ = [
    "DEFAULT_MAX_TASKS",
    "MAX_TASKS",
    "PartitionSearch",
    "best_superset",
    "check_size",
    "group_scores",
    "mask_tasks",
    "member_matrix",
    "source_sums",
    "submask_pairs",
]

#: Default limit on ``T`` for the exhaustive back-ends (about a second at this size).
DEFAULT_MAX_TASKS = 14
#: Hard limit on ``T`` (memory of the ``3^T`` pairs: about 290 MB at 15, 860 MB at 16).
MAX_TASKS = 16


def check_size(t: int, max_tasks: int, what: str) -> int:
    """Refuse an exhaustive search over ``t`` tasks above ``max_tasks`` (pointing elsewhere)."""
    limit = check_int("max_tasks", max_tasks, low=1, high=MAX_TASKS)
    if t > limit:
        raise fail(
            "affinity",
            f"at most max_tasks={limit} tasks for {what} (exact, O(3^T) time and memory: "
            f"3^{t} = {3**t:,} subset pairs); for more tasks use select(..., method='kmeans') "
            "(spectral embedding + k-means, as stgmtl.group(affinity, k))",
            f"{t} tasks",
        )
    return t


def member_matrix(t: int) -> np.ndarray:
    """``(2^t, t)`` bool: ``[G, j]`` is True when task ``j`` is in subset ``G``."""
    masks = np.arange(1 << t, dtype=np.int64)
    return ((masks[:, None] >> np.arange(t)) & 1).astype(bool)


def mask_tasks(mask: int, t: int) -> list[int]:
    """Task indices (increasing) in ``mask``."""
    return [j for j in range(t) if (int(mask) >> j) & 1]


def source_sums(values: np.ndarray) -> np.ndarray:
    """``(2^T, T)``: ``[G, j] = sum(values[i, j] for i in G, i != j)`` (the diagonal is skipped)."""
    t = values.shape[0]
    v = values.astype(np.float64, copy=True)
    np.fill_diagonal(v, 0.0)
    sums = np.zeros((1 << t, t))
    for b in range(t):  # subsets holding bit b = subsets below it plus task b's row
        sums[1 << b : 1 << (b + 1)] = sums[: 1 << b] + v[b]
    return sums


def group_scores(values: np.ndarray, singleton_score: float) -> np.ndarray:
    """``(2^T, T)`` TAG in-group scores: ``[G, j]`` for each task ``j`` in network ``G``.

    ``mean(values[i, j] for i in G, i != j)`` for ``|G| >= 2``; ``singleton_score`` for the
    task of a one-task network; ``-inf`` where ``j`` is not in ``G`` (row 0, the empty set,
    is all ``-inf``).
    """
    t = values.shape[0]
    member = member_matrix(t)
    size = member.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = source_sums(values) / (size - 1)[:, None]
    scores[size == 1] = singleton_score
    scores[~member] = -np.inf
    return scores


def submask_pairs(t: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(G, S)`` of masks with ``S ⊆ G`` and ``S`` non-empty, as two int32 arrays.

    Built bit by bit: each task is in neither, in ``G`` only, or in both (``3^t`` pairs, less
    the ``2^t`` with an empty ``S``).
    """
    sup = np.zeros(1, dtype=np.int32)
    sub = np.zeros(1, dtype=np.int32)
    for b in range(t):
        bit = np.int32(1 << b)
        sup = np.concatenate((sup, sup | bit, sup | bit))
        sub = np.concatenate((sub, sub, sub | bit))
    keep = sub != 0
    return sup[keep], sub[keep]


def best_superset(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every task set ``S``: the best one network ``G ⊇ S`` to serve all of it.

    Parameters
    ----------
    scores : np.ndarray
        ``(2^T, T)`` score of task ``j`` in network ``G`` (``-inf`` when ``j`` is not in ``G``).

    Returns
    -------
    value : np.ndarray
        ``(2^T,)`` float64: ``max over G ⊇ S of sum(scores[G, j] for j in S)`` (``-inf`` for
        the empty set).
    network : np.ndarray
        ``(2^T,)`` int64: the maximising ``G`` (the smallest mask among exact ties).
    """
    t = scores.shape[1]
    sup, sub = submask_pairs(t)
    total = np.zeros(sup.shape[0])
    for j in range(t):
        has = ((sub >> j) & 1).astype(bool)
        total[has] += scores[sup[has], j]
    value = np.full(1 << t, -np.inf)
    np.maximum.at(value, sub, total)
    best = total == value[sub]
    network = np.full(1 << t, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(network, sub[best], sup[best].astype(np.int64))
    network[0] = 0
    return value, network


@dataclass
class PartitionSearch:
    """Best splits of all ``T`` tasks into ``m = 1 .. max_blocks`` blocks scored one by one.

    ``value[m - 1]`` is ``max over splits into m non-empty blocks of sum(block_value[S])``
    (``-inf`` when no split into ``m`` blocks has a finite value); :meth:`blocks` recovers the
    maximising blocks. Built by :meth:`run`.
    """

    t: int
    value: np.ndarray
    choice: list[np.ndarray]

    @classmethod
    def run(cls, block_value: np.ndarray, max_blocks: int) -> PartitionSearch:
        """Dynamic programming over masks, levels ``m = 1 .. max_blocks``.

        ``best[m][mask] = max over S ⊆ mask holding mask's lowest task, S != mask, of
        block_value[S] + best[m - 1][mask \\ S]``; ``best[1] = block_value``.
        """
        size = block_value.shape[0]
        t = size.bit_length() - 1
        if size != 1 << t or t < 1:
            raise fail("block_value", "one value per subset (2^T entries)", size)
        sup, sub = submask_pairs(t)
        lowest = sup & -sup
        keep = ((sub & lowest) != 0) & (sub != sup)
        sup, sub = sup[keep], sub[keep]
        rest = sup ^ sub
        full = size - 1
        level = block_value.astype(np.float64, copy=True)
        level[0] = -np.inf
        values = [level[full]]
        choice: list[np.ndarray] = [np.zeros(0, dtype=np.int32)]
        for _ in range(2, min(max_blocks, t) + 1):
            cand = block_value[sub] + level[rest]
            nxt = np.full(size, -np.inf)
            np.maximum.at(nxt, sup, cand)
            best = (cand == nxt[sup]) & np.isfinite(cand)
            pick = np.zeros(size, dtype=np.int32)
            np.maximum.at(pick, sup[best], sub[best])
            level = nxt
            values.append(level[full])
            choice.append(pick)
        return cls(t=t, value=np.asarray(values, dtype=np.float64), choice=choice)

    def blocks(self, m: int) -> list[int]:
        """The ``m`` blocks (masks) of the best split into ``m`` blocks."""
        if not 1 <= m <= len(self.value) or not np.isfinite(self.value[m - 1]):
            raise fail("m", f"a number of blocks with a finite best split (1..{len(self.value)})",
                       m)  # fmt: skip
        mask = (1 << self.t) - 1
        out = []
        for level in range(m, 1, -1):
            s = int(self.choice[level - 1][mask])
            out.append(s)
            mask ^= s
        out.append(mask)
        return out

    def best_count(self, rtol: float = 1e-10) -> int:
        """The fewest blocks whose best split is within ``rtol`` of the best over all counts."""
        top = float(np.max(self.value))
        if not np.isfinite(top):
            raise ValueError("no split of the tasks has a finite value")
        tol = rtol * max(1.0, abs(top))
        return int(np.flatnonzero(self.value >= top - tol)[0]) + 1
