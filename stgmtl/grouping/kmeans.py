"""Seeded, deterministic k-means on a reduced embedding: k-means++ seeding + faiss Lloyd iterations.

faiss's default initialisation samples ``k`` points uniformly at random, which on planted groups
of unequal size often puts two seeds in one group and none in another; Lloyd iterations rarely
recover from that. Here each restart is seeded with *greedy k-means++* (Arthur & Vassilvitskii 2007;
at each step ``2 + log k`` candidates are drawn with probability proportional to the squared
distance to the nearest chosen centre and the one that lowers the potential most is kept, as
scikit-learn does), written in vectorised float64 numpy, and then refined by ``faiss.Kmeans`` with
those centroids as ``init_centroids``. Of ``n_init`` restarts the one with the lowest inertia
(sum of squared distances to the nearest centroid, recomputed exactly in float64) is kept.
``benchmarks/grouping.py`` compares this with faiss's random and built-in k-means++ initialisations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from threadpoolctl import threadpool_limits

from stgmtl._checks import check_choice
from stgmtl.grouping.reduce import Passes

__all__ = [
    "KMeansInit",
    "KMeansResult",
    "default_n_threads",
    "kmeans",
    "kmeans_plusplus",
    "refine_full_space",
    "sq_distances",
]

KMeansInit = Literal["k-means++", "greedy-k-means++", "faiss-random", "faiss-k-means++"]
_INITS = ("k-means++", "greedy-k-means++", "faiss-random", "faiss-k-means++")
_SMALL_WORK = 1 << 24  # T * k * d below which faiss runs single-threaded by default


@dataclass(frozen=True)
class KMeansResult:
    """Best of ``n_init`` restarts.

    Attributes
    ----------
    centroids : np.ndarray
        ``(k, d)`` float32.
    labels : np.ndarray
        ``(T,)`` int64, index of the nearest centroid (lowest index on ties).
    sq_distances : np.ndarray
        ``(T, k)`` float64 squared Euclidean distances to every centroid.
    inertia : float
        ``sq_distances.min(axis=1).sum()``.
    n_iter : int
        Lloyd iterations faiss ran for the kept restart.
    """

    centroids: np.ndarray
    labels: np.ndarray
    sq_distances: np.ndarray
    inertia: float
    n_iter: int


def default_n_threads() -> int:
    """CPU cores available to this process (``os.sched_getaffinity`` where it exists)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def sq_distances(x: np.ndarray, centroids: np.ndarray, chunk_bytes: int = 32 << 20) -> np.ndarray:
    """Exact float64 squared Euclidean distances ``(T, k)`` by direct differences.

    Differences (not the ``|x|^2 + |c|^2 - 2 x.c`` expansion) make a point that equals a centroid
    have distance exactly 0, and avoid cancellation for nearby points.
    """
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    n, k = x.shape[0], c.shape[0]
    out = np.empty((n, k))
    rows = max(1, chunk_bytes // (8 * max(1, k * x.shape[1])))
    for r0 in range(0, n, rows):
        diff = x[r0 : r0 + rows, None, :] - c[None, :, :]
        out[r0 : r0 + rows] = np.einsum("tkd,tkd->tk", diff, diff)
    return out


def _sq_dist_fast(x64: np.ndarray, xnorm: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``|x|^2 + |c|^2 - 2 x.c`` (BLAS), clipped at 0: for seeding and comparing restarts."""
    c64 = np.asarray(c, dtype=np.float64)
    d2 = xnorm[:, None] + (c64 * c64).sum(axis=1)[None, :] - 2.0 * (x64 @ c64.T)
    return np.maximum(d2, 0.0)


def kmeans_plusplus(
    x: np.ndarray, k: int, rng: np.random.Generator, n_local_trials: int | None = None
) -> np.ndarray:
    """Greedy k-means++ seeding (vectorised numpy, float64 distances).

    Parameters
    ----------
    x : np.ndarray
        ``(T, d)`` points with at least ``k`` distinct rows.
    k : int
        Number of centres.
    rng : np.random.Generator
        Source of randomness.
    n_local_trials : int, optional
        Candidates per step; ``1`` is plain k-means++; default ``2 + int(log(k))``.

    Returns
    -------
    np.ndarray
        ``(k, d)`` float32 centres, each a row of ``x``.
    """
    x64 = np.asarray(x, dtype=np.float64)
    n = x64.shape[0]
    xnorm = (x64 * x64).sum(axis=1)
    trials = n_local_trials if n_local_trials is not None else 2 + int(np.log(k))
    idx = np.empty(k, dtype=np.int64)
    idx[0] = rng.integers(n)
    closest = _sq_dist_fast(x64, xnorm, x64[idx[:1]])[:, 0]
    for c in range(1, k):
        cum = np.cumsum(closest)
        cand = np.searchsorted(cum, rng.random(trials) * cum[-1], side="right")
        cand = np.minimum(cand, n - 1)
        new = np.minimum(closest[None, :], _sq_dist_fast(x64, xnorm, x64[cand]).T)
        best = int(np.argmin(new.sum(axis=1)))
        idx[c] = cand[best]
        closest = new[best]
    return np.ascontiguousarray(x64[idx], dtype=np.float32)


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    n_init: int = 10,
    max_iter: int = 100,
    init: KMeansInit = "greedy-k-means++",
    random_state: int = 0,
    n_threads: int | None = None,
) -> KMeansResult:
    """Best-of-``n_init`` k-means with faiss, deterministic for a given ``random_state``.

    Parameters
    ----------
    x : np.ndarray
        ``(T, d)`` embedding (converted to float32 C-contiguous for faiss).
    k : int
        Number of clusters, ``1 <= k <= T``; ``x`` must have at least ``k`` distinct rows.
    n_init : int
        Restarts; the one with the lowest exact inertia is kept (first one on ties).
    max_iter : int
        Maximum Lloyd iterations per restart (faiss stops early once the objective is unchanged).
    init : str
        ``"greedy-k-means++"`` (default), ``"k-means++"`` (one candidate per step), or faiss's
        own ``"faiss-random"`` / ``"faiss-k-means++"`` (for comparison).
    random_state : int
        Seed; restart ``i`` uses seeds drawn from ``np.random.default_rng(random_state)``.
    n_threads : int, optional
        OpenMP threads for faiss during this call (restored afterwards). Default: 1 when
        ``T * k * d < 2**24`` (thread start-up costs more than the work), else all cores
        available to the process.
    """
    import faiss  # heavy import kept local so `import stgmtl.grouping` stays cheap

    check_choice("init", init, _INITS)
    xf = np.ascontiguousarray(x, dtype=np.float32)
    n, d = xf.shape
    if n_threads is None:  # OpenMP overhead dominates small problems, worse on a busy machine
        n_threads = 1 if n * k * d < _SMALL_WORK else default_n_threads()
    saved_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(n_threads))
    try:  # small BLAS calls on the embedding: threads would only wait on each other
        with threadpool_limits(limits=1, user_api="blas"):
            return _best_of(xf, k, n_init, max_iter, init, random_state)
    finally:
        faiss.omp_set_num_threads(saved_threads)


def _best_of(
    xf: np.ndarray, k: int, n_init: int, max_iter: int, init: str, random_state: int
) -> KMeansResult:
    import faiss

    n, d = xf.shape
    seeds = np.random.default_rng(random_state).integers(0, 2**31 - 1, size=n_init)
    x64 = xf.astype(np.float64)
    xnorm = (x64 * x64).sum(axis=1)
    best_inertia: float | None = None
    best_c: np.ndarray | None = None
    best_iter = 0
    for seed in seeds:
        params = dict(
            niter=max_iter,
            seed=int(seed),
            max_points_per_centroid=max(n, 256),  # never subsample tasks
            min_points_per_centroid=1,
            verbose=False,
        )
        init_c = None
        if init == "faiss-k-means++":
            params["init_method"] = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
        elif init in ("k-means++", "greedy-k-means++"):
            trials = 1 if init == "k-means++" else None
            init_c = kmeans_plusplus(xf, k, np.random.default_rng(int(seed)), trials)
        if k == 1:
            cent = xf.mean(axis=0, dtype=np.float64)[None, :].astype(np.float32)
            n_iter = 0
        else:
            km = faiss.Kmeans(d, k, **params)
            km.train(xf, init_centroids=init_c)
            cent, n_iter = np.array(km.centroids, dtype=np.float32), len(km.iteration_stats or [])
        inertia = float(_sq_dist_fast(x64, xnorm, cent).min(axis=1).sum())
        if best_inertia is None or inertia < best_inertia:
            best_inertia, best_c, best_iter = inertia, cent, n_iter
        if k == 1:
            break
    assert best_c is not None
    d2 = sq_distances(xf, best_c)  # exact, for the memberships
    labels = np.argmin(d2, axis=1).astype(np.int64)
    return KMeansResult(best_c, labels, d2, float(d2[np.arange(n), labels].sum()), best_iter)


def refine_full_space(
    data: Any,
    labels: np.ndarray,
    k: int,
    *,
    max_iter: int = 20,
    block_size: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Lloyd iterations in the full feature space, started from ``labels``, streamed over blocks.

    Each iteration is one pass over the column blocks: the centroids of the current labels and
    every task's squared distance to them are accumulated block by block (centroids restricted to
    a block only need that block), so the ``(T, D)`` matrix is never copied and the ``(k, D)``
    centroids are never held. It stops when the labels no longer change.

    Parameters
    ----------
    data : np.ndarray or callable
        The ``(T, D)`` features, or a callable returning a fresh iterable of column blocks.
    labels : np.ndarray
        ``(T,)`` starting labels in ``[0, k)`` (e.g. k-means on the reduced embedding).
    k : int
    max_iter : int
        Maximum passes.
    block_size : int, optional
        Columns per block for array input.
    progress : bool
        Show tqdm bars.

    Returns
    -------
    sq_distances : np.ndarray
        ``(T, k)`` float64 squared Euclidean distances in the full space to the centroids of
        the returned labels.
    labels : np.ndarray
        ``(T,)`` int64.
    n_iter : int
        Passes made.
    """
    passes = Passes(data, block_size, progress)
    labels = np.asarray(labels, dtype=np.int64).copy()
    n = labels.size
    if labels.min() < 0 or labels.max() >= k or (np.bincount(labels, minlength=k) == 0).any():
        raise ValueError(f"labels must use every group 0..{k - 1}")
    d2 = np.zeros((n, k))
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - reported
        counts = np.bincount(labels, minlength=k)
        if (counts == 0).any():
            break  # a group emptied: keep the last distances (labels are their argmin)
        onehot = np.zeros((n, k), dtype=np.float32)
        onehot[np.arange(n), labels] = 1.0
        inv = (1.0 / counts).astype(np.float32)
        cross, xnorm, cnorm = np.zeros((n, k)), np.zeros(n), np.zeros(k)
        for _, raw, mean in passes.blocks(f"refine (pass {n_iter})"):
            block = raw if raw.dtype == np.float32 else raw.astype(np.float32)
            mu = mean.astype(np.float32)
            cent = (onehot.T @ block) * inv[:, None] - mu  # centred centroids on this block
            cross += (block @ cent.T).astype(np.float64) - (mu @ cent.T).astype(np.float64)
            xnorm += (
                np.einsum("ij,ij->i", block, block, dtype=np.float64)
                - 2.0 * (block @ mu).astype(np.float64)
                + float(mu.astype(np.float64) @ mu)
            )
            cnorm += np.einsum("ij,ij->i", cent, cent, dtype=np.float64)
        d2 = np.maximum(xnorm[:, None] - 2.0 * cross + cnorm[None, :], 0.0)
        new = np.argmin(d2, axis=1).astype(np.int64)
        if np.array_equal(new, labels):
            return d2, labels, n_iter
        labels = new
    return d2, labels, n_iter
