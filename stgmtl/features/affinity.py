"""The affinity feature (``kind="affinity"``): task features from a :class:`TaskAffinity`.

Any affinity signal (TAG lookahead, gradient cosine, label statistics, ...) becomes soft groups
through the same path as data maps: ``stgmtl.group(affinity, k)`` computes these features and
runs k-means and the fuzzy memberships on them. Two modes:

``"spectral"`` (default)
    The normalised spectral embedding (Ng, Jordan and Weiss 2002) of an undirected, non-negative
    graph built from the affinity, as the confusion feature does:

    1. symmetrise, ``S = (values + values.T) / 2`` (where one direction is unobserved the other
       is used; :meth:`TaskAffinity.symmetric`); the diagonal is ignored;
    2. make the weights non-negative (``negative=``): ``"shift"`` (default) subtracts the
       smallest observed off-diagonal ``S``, so the order of all pairs is kept and the most
       harmful pair gets weight 0; ``"clip"`` sets negative ``S`` (harmful pairs) to 0 and keeps
       positive ones unchanged;
    3. unobserved pairs (NaN in both directions) follow the toolkit's one rule
       (:data:`stgmtl.affinity.UNOBSERVED_RULE`): they read as the mean of the observed
       off-diagonal ``S``, before step 2 (so "unobserved" is neither a strong edge nor the
       most harmful pair's weight 0);
    4. optionally keep only each task's ``n_neighbors`` strongest partners (union of the k
       nearest neighbours);
    5. if the graph is disconnected (after clipping, or with a thin neighbour graph), a small
       uniform weight, ``1e-3`` times the mean positive weight, is added to every pair
       (regularised spectral clustering, Amini et al. 2013, Qin and Rohe 2013), so that the
       embedding is defined and the components still separate;
    6. the leading ``d`` non-trivial eigenvectors of the normalised Laplacian, each row scaled
       to unit length; ``d = n_groups`` by default (capped at ``T - 2``).

    Steps 4 - 6 are the feature stage's one implementation (:mod:`~stgmtl.features.graph`),
    shared with the confusion feature.

``"rows"``
    Each task's row of the affinity (its effect on every task) followed by its column (every
    task's effect on it) for directed signals, or its row for symmetric ones; the diagonal and
    unobserved entries (the same rule) are filled with the mean of the observed off-diagonal
    values (neutral for k-means, which is translation invariant, so no shift is needed).
"""

from __future__ import annotations

import numpy as np

from stgmtl._checks import check_choice, check_int, fail
from stgmtl.affinity import TaskAffinity, fill_unobserved
from stgmtl.features.graph import connect, knn_union, spectral_features

__all__ = ["AFFINITY_MODES", "NEGATIVE_RULES", "affinity_features", "affinity_graph"]

AFFINITY_MODES = ("spectral", "rows")
NEGATIVE_RULES = ("shift", "clip")


def _check(aff: TaskAffinity) -> None:
    if not isinstance(aff, TaskAffinity):
        raise fail("affinity", "a TaskAffinity", type(aff).__name__, error=TypeError)


def affinity_graph(
    aff: TaskAffinity,
    *,
    negative: str = "shift",
    n_neighbors: int | None = None,
) -> np.ndarray:
    """The undirected, non-negative, connected ``(T, T)`` graph that the embedding uses.

    Steps 1 - 5 of the module docstring. Returns float64, symmetric, zero diagonal.
    """
    _check(aff)
    check_choice("negative", negative, NEGATIVE_RULES)
    t = aff.num_tasks
    off = ~np.eye(t, dtype=bool)
    s = fill_unobserved(aff.symmetric())
    if negative == "shift":
        w = s - s[off].min()
    else:
        w = np.maximum(s, 0.0)
    w = np.where(off, w, 0.0)
    if n_neighbors is not None:
        w = knn_union(w, min(check_int("n_neighbors", n_neighbors, low=1), t - 1))
    if not (w > 0).any():
        raise ValueError(
            f"affinity features: no pair has a positive weight after negative={negative!r} "
            "(every observed affinity is equal, or all are <= 0 with 'clip'); nothing to group on"
        )
    return connect(w)


def affinity_features(
    aff: TaskAffinity,
    *,
    mode: str = "spectral",
    n_components: int | None = None,
    n_groups: int | None = None,
    negative: str = "shift",
    n_neighbors: int | None = None,
    random_state: int = 0,
) -> np.ndarray:
    """Task features ``(T, d)`` float32 from an affinity (modes in the module docstring).

    Use through ``stgmtl.group(affinity, k)`` (the default kind for a ``TaskAffinity``) or
    ``stgmtl.features.task_features(affinity, "affinity", n_groups=k)``.

    Parameters
    ----------
    aff : TaskAffinity
        ``values[i, j]`` = effect of task ``i`` on task ``j``, larger = more helpful.
    mode : {"spectral", "rows"}
        Spectral embedding of the symmetrised graph, or rows (and columns) as features.
    n_components : int, optional
        Embedding dimension for ``"spectral"`` (capped at ``T - 2``); default ``n_groups``,
        else 20.
    n_groups : int, optional
        Number of groups the features are for; ``stgmtl.group`` passes ``k``.
    negative : {"shift", "clip"}
        How negative (harmful) affinities become non-negative edge weights (``"spectral"``).
    n_neighbors : int, optional
        Keep only each task's strongest ``n_neighbors`` partners (``"spectral"``); default all.
    random_state : int
        Seed of the eigensolver's start vector.

    Returns
    -------
    np.ndarray
        float32, C-contiguous; unit-length rows for ``"spectral"``.
    """
    _check(aff)
    check_choice("mode", mode, AFFINITY_MODES)
    t = aff.num_tasks
    if mode == "rows":
        return _rows(aff)
    if t < 3:
        raise fail("affinity", "at least 3 tasks for a spectral embedding", f"{t} tasks")
    if n_components is None:
        n_components = 20 if n_groups is None else n_groups
    d = min(check_int("n_components", n_components, low=1), t - 2)
    w = affinity_graph(aff, negative=negative, n_neighbors=n_neighbors)
    return spectral_features(w, d, random_state)


def _rows(aff: TaskAffinity) -> np.ndarray:
    v = aff.filled()
    off = ~np.eye(v.shape[0], dtype=bool)
    v = np.where(off, v, v[off].mean())
    x = v if aff.orientation == "symmetric" else np.hstack([v, v.T])
    return np.ascontiguousarray(x, dtype=np.float32)
