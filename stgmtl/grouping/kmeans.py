"""Seeded, deterministic k-means on a reduced embedding: k-means++ seeding, faiss Lloyd iterations
and swap repairs.

Each restart is seeded with *greedy k-means++* (Arthur & Vassilvitskii 2007; at each step
``2 + log k`` candidates are drawn with probability proportional to the squared distance to the
nearest chosen centre and the one that lowers the potential most is kept, as scikit-learn does),
refined by ``faiss.Kmeans`` Lloyd iterations with those centroids as ``init_centroids``, and then
the best of ``n_init`` restarts is repaired by *swaps* (the local search of Kanungo et al.
2004): at many groups, k-means++ draws
are diluted by the noise of the groups already covered (``T`` tasks' worth of within-group
spread against one uncovered group's separation), so a few groups get two centres and a few
pairs of groups share one, and Lloyd iterations cannot move a centre across the gap. A swap round
computes, for every centre, what removing it would cost (its tasks move to their second nearest
centre) and, for every group, what splitting it in two would gain (2-means inside the group);
it moves the cheapest centres to the groups that gain most where the gain exceeds the cost, runs
Lloyd iterations again and keeps the round only if the inertia fell.

Numerics: the embedding is centred and divided by a power of two (its RMS norm, rounded) before
faiss sees it, so no input scale can overflow float32 squares (rows of 1e20 once aborted the
process inside faiss) or underflow them; centroids and distances are mapped back exactly
(powers of two). Distances are float64: :func:`sq_distances` by direct differences (exact, zero
on a centroid), the ``(T, k)`` matrix of the result by the float64 expansion
``|x|^2 + |c|^2 - 2 x.c`` on the centred data (absolute error about ``1e-15`` times the squared
spread). ``benchmarks/grouping.py`` compares seedings and the effect of the swaps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse
from threadpoolctl import threadpool_limits

from stgmtl._checks import check_choice, check_int, fail
from stgmtl.grouping.reduce import Passes, check_magnitude

__all__ = [
    "KMeansInit",
    "KMeansResult",
    "auto_n_init",
    "default_n_threads",
    "faiss_device",
    "kmeans",
    "kmeans_plusplus",
    "refine_block_size",
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
        Lloyd iterations faiss ran for the kept restart (after its last swap round).
    n_swaps : int
        Centres moved by the swap rounds of the kept restart.
    """

    centroids: np.ndarray
    labels: np.ndarray
    sq_distances: np.ndarray
    inertia: float
    n_iter: int
    n_swaps: int = 0


def default_n_threads() -> int:
    """CPU cores available to this process (``os.sched_getaffinity`` where it exists)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def faiss_device(device: str) -> bool:
    """Whether faiss should run on GPUs for ``device`` (``"cpu"``, ``"cuda"`` or ``"auto"``).

    Raises
    ------
    ValueError
        For ``"cuda"`` when the installed faiss has no GPU support or sees no GPU (install the
        ``stgmtl[gpu]`` extra, i.e. ``faiss-gpu``, on a CUDA machine).
    """
    import faiss

    check_choice("device", device, ("cpu", "cuda", "auto"))
    if device == "cpu":
        return False
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "cuda" and n_gpus < 1:
        raise fail(
            "device",
            "'cpu' or 'auto' here: this faiss sees no GPU (install faiss-gpu, the "
            "stgmtl[gpu] extra, on a CUDA machine)",
            device,
        )
    return n_gpus > 0


def sq_distances(x: np.ndarray, centroids: np.ndarray, chunk_bytes: int = 32 << 20) -> np.ndarray:
    """Exact float64 squared Euclidean distances ``(T, k)`` by direct differences.

    Differences (not the ``|x|^2 + |c|^2 - 2 x.c`` expansion) make a point that equals a centroid
    have distance exactly 0, and avoid cancellation for nearby points.
    """
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    check_magnitude(x, "x")
    check_magnitude(c, "centroids")
    n, k = x.shape[0], c.shape[0]
    out = np.empty((n, k))
    rows = max(1, chunk_bytes // (8 * max(1, k * x.shape[1])))
    for r0 in range(0, n, rows):
        diff = x[r0 : r0 + rows, None, :] - c[None, :, :]
        out[r0 : r0 + rows] = np.einsum("tkd,tkd->tk", diff, diff)
    return out


@dataclass(frozen=True)
class _Scaled:
    """``x`` centred and divided by a power of two: ``x = mean + scale * xs``."""

    xs: np.ndarray  # (T, d) float32, C-contiguous
    mean: np.ndarray  # (d,) float64
    scale: float  # a power of two

    @classmethod
    def of(cls, x: np.ndarray) -> _Scaled:
        x64 = np.asarray(x, dtype=np.float64)
        check_magnitude(x64, "x")
        mean = x64.mean(axis=0)
        xc = x64 - mean
        rms = float(np.sqrt(np.mean(np.einsum("ij,ij->i", xc, xc)))) if xc.size else 0.0
        scale = 2.0 ** float(np.round(np.log2(rms))) if rms > 0 else 1.0
        return cls(np.ascontiguousarray(xc / scale, dtype=np.float32), mean, scale)

    def back(self, centroids: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.mean + self.scale * centroids.astype(np.float64),
                                    dtype=np.float32)  # fmt: skip


def _sq_dist_blas(xs: np.ndarray, xnorm: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``|x|^2 + |c|^2 - 2 x.c`` clipped at 0, in the dtype of ``xs`` (for seeding)."""
    cc = np.asarray(c, dtype=xs.dtype)
    d2 = xs @ cc.T
    d2 *= -2.0
    d2 += xnorm[:, None]
    d2 += np.einsum("ij,ij->i", cc, cc)[None, :]
    return np.maximum(d2, 0.0, out=d2)


def kmeans_plusplus(
    x: np.ndarray, k: int, rng: np.random.Generator, n_local_trials: int | None = None
) -> np.ndarray:
    """Greedy k-means++ seeding (vectorised numpy).

    Candidate distances use float32 BLAS on the centred data (relative error about 1e-7 of
    the spread, harmless for sampling); the potentials are summed in float64.

    Parameters
    ----------
    x : np.ndarray
        ``(T, d)`` points (with at least ``k`` distinct rows for ``k`` distinct centres).
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
    x = np.asarray(x)
    sc = _Scaled.of(x)
    idx = _seed_rows(sc.xs, k, rng, n_local_trials)
    return np.ascontiguousarray(x[idx], dtype=np.float32)


def _seed_rows(
    xs: np.ndarray, k: int, rng: np.random.Generator, n_local_trials: int | None
) -> np.ndarray:
    n = xs.shape[0]
    xnorm = np.einsum("ij,ij->i", xs, xs)
    trials = n_local_trials if n_local_trials is not None else 2 + int(np.log(k))
    idx = np.empty(k, dtype=np.int64)
    idx[0] = rng.integers(n)
    closest = _sq_dist_blas(xs, xnorm, xs[idx[:1]])[:, 0].astype(np.float64)
    for c in range(1, k):
        cum = np.cumsum(closest)
        if not cum[-1] > 0:  # every point is a centre already (fewer distinct rows than k)
            idx[c:] = idx[0]
            break
        cand = np.searchsorted(cum, rng.random(trials) * cum[-1], side="right")
        cand = np.minimum(cand, n - 1)
        new = np.minimum(closest[:, None], _sq_dist_blas(xs, xnorm, xs[cand]))
        best = int(np.argmin(new.sum(axis=0, dtype=np.float64)))
        idx[c] = cand[best]
        closest = new[:, best].astype(np.float64)
    return idx


def auto_n_init(n: int, k: int, d: int) -> int:
    """Restarts for ``n_init="auto"``: 10, fewer when one Lloyd iteration of all restarts would
    exceed about 2**31 multiply-adds (``n * k * d`` each), at least 1.

    Restarts guard against unlucky seeds at small ``k``, where they are cheap; at large ``k`` the
    swap rounds repair what restarts would (at a fraction of the cost).
    """
    return int(max(1, min(10, (1 << 31) // max(1, n * k * d))))


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    n_init: int | Literal["auto"] = "auto",
    max_iter: int = 100,
    init: KMeansInit = "greedy-k-means++",
    random_state: int = 0,
    n_threads: int | None = None,
    swap_rounds: int = 20,
    device: str = "cpu",
) -> KMeansResult:
    """Best-of-``n_init`` k-means with faiss, deterministic for a given ``random_state``.

    Parameters
    ----------
    x : np.ndarray
        ``(T, d)`` embedding, finite; any scale (it is centred and rescaled internally).
    k : int
        Number of clusters, ``1 <= k <= T``; with fewer than ``k`` distinct rows some
        centroids coincide.
    n_init : int or "auto"
        Restarts; the one with the lowest inertia is kept (first one on ties). ``"auto"``:
        :func:`auto_n_init` (10 unless the problem is large).
    max_iter : int
        Maximum Lloyd iterations per faiss run (faiss stops early once the objective is unchanged).
    init : str
        ``"greedy-k-means++"`` (default), ``"k-means++"`` (one candidate per step), or faiss's
        own ``"faiss-random"`` / ``"faiss-k-means++"`` (for comparison).
    random_state : int
        Seed; restart ``i`` uses seeds drawn from ``np.random.default_rng(random_state)``.
    n_threads : int, optional
        OpenMP threads for faiss during this call (restored afterwards). Default: 1 when
        ``T * k * d < 2**24`` (thread start-up costs more than the work), else all cores
        available to the process.
    swap_rounds : int
        Maximum swap rounds tried on the best restart (module docstring); 0 turns them off.
    device : {"cpu", "cuda", "auto"}
        Where faiss runs (see :func:`faiss_device`); seeding and swaps run on the CPU.
    """
    import faiss  # heavy import kept local so `import stgmtl.grouping` stays cheap

    check_choice("init", init, _INITS)
    check_int("swap_rounds", swap_rounds, low=0)
    gpu = faiss_device(device)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise fail("x", "a non-empty (T, d) matrix", x.shape)
    n, d = x.shape
    check_int("k", k, low=1, high=n)
    n_init = auto_n_init(n, k, d) if n_init == "auto" else check_int("n_init", n_init, low=1)
    sc = _Scaled.of(x)
    if n_threads is None:  # OpenMP overhead dominates small problems, worse on a busy machine
        n_threads = 1 if n * k * d < _SMALL_WORK else default_n_threads()
    saved_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(n_threads))
    try:  # small BLAS calls on the embedding: threads would only wait on each other
        with threadpool_limits(limits=1, user_api="blas"):
            cent, n_iter, n_swaps = _best_of(sc.xs, k, n_init, max_iter, init, random_state,
                                             swap_rounds, gpu)  # fmt: skip
    finally:
        faiss.omp_set_num_threads(saved_threads)
    centroids = sc.back(cent)
    d2 = _all_sq_distances(x, centroids)
    labels = np.argmin(d2, axis=1).astype(np.int64)
    inertia = float(d2[np.arange(n), labels].sum())
    return KMeansResult(centroids, labels, d2, inertia, n_iter, n_swaps)


def _all_sq_distances(x: np.ndarray, centroids: np.ndarray, rows: int = 1 << 14) -> np.ndarray:
    """``(T, k)`` float64 squared distances: BLAS expansion on centred data, exact nearest.

    ``|x|^2 + |c|^2 - 2 x.c`` in float64 after subtracting the mean of ``x`` (absolute error
    about 1e-15 of the squared spread); each task's distance to its nearest centroid is then
    recomputed by direct differences, so it is exact (0 for a task equal to its centroid).
    """
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=0)
    c64 = centroids.astype(np.float64) - mean
    cnorm = np.einsum("ij,ij->i", c64, c64)
    n, k = x64.shape[0], c64.shape[0]
    out = np.empty((n, k))
    for r0 in range(0, n, rows):
        xb = x64[r0 : r0 + rows] - mean
        part = out[r0 : r0 + rows]
        np.matmul(xb, c64.T, out=part)
        part *= -2.0
        part += np.einsum("ij,ij->i", xb, xb)[:, None]
        part += cnorm[None, :]
        np.maximum(part, 0.0, out=part)
        near = np.argmin(part, axis=1)
        diff = xb - c64[near]
        part[np.arange(part.shape[0]), near] = np.einsum("ij,ij->i", diff, diff)
    return out


class _Faiss:
    """faiss Lloyd runs and nearest-centre searches on the scaled embedding."""

    def __init__(self, xs: np.ndarray, k: int, max_iter: int, gpu: bool) -> None:
        self.xs, self.k, self.max_iter, self.gpu = xs, k, max_iter, gpu

    def lloyd(
        self, seed: int, init_c: np.ndarray | None, method: Any = None
    ) -> tuple[np.ndarray, int]:
        import faiss

        n, d = self.xs.shape
        params: dict[str, Any] = dict(
            niter=self.max_iter,
            seed=int(seed),
            max_points_per_centroid=max(n, 256),  # never subsample tasks
            min_points_per_centroid=1,
            verbose=False,
            gpu=self.gpu,
        )
        if method is not None:
            params["init_method"] = method
        km = faiss.Kmeans(d, self.k, **params)
        km.train(self.xs, init_centroids=init_c)
        return np.array(km.centroids, dtype=np.float32), len(km.iteration_stats or [])

    def nearest(self, cent: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 squared distances and indices of the ``m`` nearest centres of every task."""
        import faiss

        index: Any = faiss.IndexFlatL2(cent.shape[1])
        if self.gpu:  # pragma: no cover - needs faiss-gpu and a GPU
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(np.ascontiguousarray(cent, dtype=np.float32))
        dist, ids = index.search(self.xs, m)
        return np.maximum(dist, 0.0), ids.astype(np.int64)


def _best_of(
    xs: np.ndarray,
    k: int,
    n_init: int,
    max_iter: int,
    init: str,
    random_state: int,
    swap_rounds: int,
    gpu: bool,
) -> tuple[np.ndarray, int, int]:
    import faiss

    n, d = xs.shape
    if k == 1:
        return np.zeros((1, d), dtype=np.float32), 0, 0  # the (centred) mean
    engine = _Faiss(xs, k, max_iter, gpu)
    seeds = np.random.default_rng(random_state).integers(0, 2**31 - 1, size=n_init)
    best: tuple[float, np.ndarray, int, int] | None = None  # inertia, centres, iterations, seed
    for seed in seeds:
        init_c, method = None, None
        if init == "faiss-k-means++":
            method = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
        elif init in ("k-means++", "greedy-k-means++"):
            trials = 1 if init == "k-means++" else None
            init_c = xs[_seed_rows(xs, k, np.random.default_rng(int(seed)), trials)]
        cent, n_iter = engine.lloyd(int(seed), init_c, method)
        inertia = float(engine.nearest(cent, 1)[0].sum(dtype=np.float64))
        if best is None or inertia < best[0]:
            best = (inertia, cent, n_iter, int(seed))
    assert best is not None
    # swaps repair the best restart only (at small k restarts rarely differ after repair)
    cent, n_iter, n_swaps, _ = _swap_rounds(engine, best[1], best[2], best[3], swap_rounds)
    return cent, n_iter, n_swaps


def _group_means(xt: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``(k, d)`` means of the rows of each label and the counts (0 rows: mean 0).

    ``xt`` is the ``(d, T)`` transposed data: one ``bincount`` per column.
    """
    counts = np.bincount(labels, minlength=k)
    sums = np.stack([np.bincount(labels, weights=col, minlength=k) for col in xt], axis=1)
    return sums / np.maximum(counts, 1)[:, None], counts


def _argmax_by_group(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Row index of the largest value within each label (-1 for empty labels; first on ties)."""
    order = np.lexsort((np.arange(len(values)), -values, labels))  # by label, then value desc
    first = np.full(k, -1)
    seen = np.r_[True, labels[order][1:] != labels[order][:-1]]
    first[labels[order][seen]] = order[seen]
    return first


def _split_groups(
    xs: np.ndarray, labels: np.ndarray, k: int, iters: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-means inside every group at once: (gain in inertia, centre a, centre b) per group.

    Started from each group's task farthest from its mean and the task farthest from that one
    (deterministic); groups of fewer than two distinct tasks gain 0.
    """
    x64 = xs.astype(np.float64)
    xt = np.ascontiguousarray(x64.T)
    mean, counts = _group_means(xt, labels, k)
    to_mean = np.einsum("ij,ij->i", x64 - mean[labels], x64 - mean[labels])
    sse = np.bincount(labels, weights=to_mean, minlength=k)
    far = _argmax_by_group(to_mean, labels, k)
    a = x64[np.maximum(far, 0)]
    to_far = np.einsum("ij,ij->i", x64 - a[labels], x64 - a[labels])
    b = x64[np.maximum(_argmax_by_group(to_far, labels, k), 0)]
    side = None
    for _ in range(iters):
        da = np.einsum("ij,ij->i", x64 - a[labels], x64 - a[labels])
        db = np.einsum("ij,ij->i", x64 - b[labels], x64 - b[labels])
        new = db < da
        if side is not None and np.array_equal(new, side):
            break
        side = new
        a_new, n_a = _group_means(xt, np.where(side, k, labels), k + 1)
        b_new, n_b = _group_means(xt, np.where(side, labels, k), k + 1)
        a = np.where(n_a[:k, None] > 0, a_new[:k], a)
        b = np.where(n_b[:k, None] > 0, b_new[:k], b)
    assert side is not None
    after = np.bincount(labels, weights=np.where(side, db, da), minlength=k)
    gain = np.where(counts >= 2, np.maximum(sse - after, 0.0), 0.0)
    return gain, a, b


# Swap plans tried in turn (limit on swaps, share of the removal cost a split must beat): all
# clearly good swaps at once, the best one alone, then the best one whose estimated gain is at
# least half its cost (the estimates ignore the Lloyd iterations that follow, which can turn
# a near miss into a gain; every round is kept only if the inertia actually falls).
_PLANS = ((None, 1.0), (1, 1.0), (1, 0.5))


def _swap_rounds(
    engine: _Faiss, cent: np.ndarray, n_iter: int, seed: int, rounds: int
) -> tuple[np.ndarray, int, int, float]:
    """Swap repairs (module docstring); returns centroids, Lloyd iterations, swaps, inertia."""
    k = cent.shape[0]
    dist, ids = engine.nearest(cent, 2 if k > 1 else 1)
    inertia = float(dist[:, 0].sum(dtype=np.float64))
    n_swaps, plan, tried = 0, 0, 0
    while tried < rounds and plan < len(_PLANS) and k > 1:
        limit, share = _PLANS[plan]
        swaps = _plan_swaps(engine.xs, cent, dist, ids, limit or k // 2, share)
        if not swaps:
            plan += 1
            continue
        tried += 1
        trial = cent.copy()
        for j, c_j, i, c_i in swaps:
            trial[j] = c_j
            if c_i is not None:
                trial[i] = c_i
        trial, it = engine.lloyd(seed, trial)
        t_dist, t_ids = engine.nearest(trial, 2)
        t_inertia = float(t_dist[:, 0].sum(dtype=np.float64))
        if t_inertia < inertia * (1 - 1e-7):
            cent, dist, ids, inertia, n_iter = trial, t_dist, t_ids, t_inertia, it
            n_swaps += len(swaps)
            plan = 0
        else:
            plan += 1
    return cent, n_iter, n_swaps, inertia


def _plan_swaps(
    xs: np.ndarray, cent: np.ndarray, dist: np.ndarray, ids: np.ndarray, limit: int, share: float
) -> list[tuple[int, np.ndarray, int, np.ndarray | None]]:
    """Moves of cheap centres to where a new centre gains more than ``share`` x their cost.

    Proposals: split a group in two (2-means inside it; the split group keeps one half), or a
    new centre at one of the tasks farthest from their centre (where a small group hides among
    others' tasks, one task at a time). Proposals are taken by decreasing gain, centres to move
    by increasing removal cost; a group takes part in one move per round (split, removed,
    absorbing the removed centre's tasks, or losing tasks to a new centre). Returns
    ``(removed centre j, its new position, split group i or -1, i's new position or None)``.
    """
    k = cent.shape[0]
    lab, second = ids[:, 0], ids[:, 1]
    d1 = dist[:, 0].astype(np.float64)
    sizes = np.bincount(lab, minlength=k)
    removal = np.bincount(lab, weights=dist[:, 1] - d1, minlength=k)
    order = np.argsort(lab, kind="stable")
    ends = np.cumsum(sizes)

    def members(g: int) -> np.ndarray:
        return order[ends[g] - sizes[g] : ends[g]]

    proposals: list[tuple[float, np.ndarray, int, np.ndarray | None, np.ndarray]] = []
    gains, half_a, half_b = _split_groups(xs, lab, k)
    for g in np.flatnonzero(gains > 0):
        proposals.append((float(gains[g]), half_b[g], int(g), half_a[g], np.array([g])))
    far = np.argsort(-d1, kind="stable")[: min(len(d1), 4 * max(1, min(limit, 64)))]
    if far.size:
        xnorm = np.einsum("ij,ij->i", xs, xs).astype(np.float64)
        to_far = xnorm[:, None] + xnorm[far][None, :] - 2.0 * (xs @ xs[far].T).astype(np.float64)
        for col, p in enumerate(far.tolist()):
            caught = np.flatnonzero(to_far[:, col] < d1)
            if caught.size == 0:
                caught = np.array([p])
            c_new = xs[caught].astype(np.float64).mean(axis=0)
            moved = ((xs[caught].astype(np.float64) - c_new) ** 2).sum(axis=1)
            gain = float((d1[caught] - moved).sum())
            if gain > 0:
                proposals.append((gain, c_new, -1, None, np.unique(lab[caught])))
    absorber = np.full(k, -1)
    for j in np.flatnonzero(sizes > 0):
        absorber[j] = np.bincount(second[members(int(j))]).argmax()
    used = np.zeros(k, dtype=bool)
    cheap = np.argsort(removal, kind="stable")
    moves: list[tuple[int, np.ndarray, int, np.ndarray | None]] = []
    for gain, c_new, i, c_i, touched in sorted(proposals, key=lambda pr: -pr[0]):
        if len(moves) >= limit:
            break
        if used[touched].any():
            continue
        pick = next((int(j) for j in cheap if not used[j] and j not in touched
                     and (absorber[j] < 0 or absorber[j] not in touched)), None)  # fmt: skip
        if pick is None or gain <= share * removal[pick]:
            break  # no cheaper centre is left for this or any smaller gain
        moves.append((pick, c_new.astype(np.float32), i,
                      None if c_i is None else c_i.astype(np.float32)))  # fmt: skip
        used[touched] = True
        used[pick] = True
        if absorber[pick] >= 0:
            used[absorber[pick]] = True
    return moves


# Largest k * T for which the refinement averages groups with a dense (k, T) matrix (64 MiB)
_DENSE_AVERAGING_MAX = 1 << 24


def refine_block_size(shape: tuple[int, ...]) -> int:
    """Columns per block of the refinement for a ``(T, D)`` array (a grouper's shared passes too).

    At most ~16 blocks per pass: every block adds a ``(T, k)`` product to the accumulator, and
    array blocks are views (no copy) for float32 data; at least ~64 MiB of float32 per block.
    """
    n, dim = int(shape[0]), int(shape[1])
    return max(1, -(-dim // 16), (64 << 20) // (4 * max(n, 1)))


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
    data : np.ndarray, callable or Passes
        The ``(T, D)`` features, a callable returning a fresh iterable of column blocks, or a
        :class:`~stgmtl.grouping.reduce.Passes` over them already read once (its column means
        and per-task norms are reused; ``block_size`` and ``progress`` are then its own).
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
    labels = np.asarray(labels, dtype=np.int64).copy()
    n = labels.size
    if isinstance(data, Passes):
        passes = data  # shared with the reduction: its first-pass statistics are reused
    else:
        if block_size is None and isinstance(data, np.ndarray):
            block_size = refine_block_size(data.shape)
        passes = Passes(data, block_size, progress)
    if labels.min() < 0 or labels.max() >= k or (np.bincount(labels, minlength=k) == 0).any():
        raise ValueError(f"labels must use every group 0..{k - 1}")
    d2 = np.zeros((n, k))
    buf = np.empty((n, k), dtype=np.float32)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - reported
        counts = np.bincount(labels, minlength=k)
        if (counts == 0).any():
            break  # a group emptied: keep the last distances (labels are their argmin)
        weights = (1.0 / counts[labels]).astype(np.float32)
        avg: Any
        if k * n <= _DENSE_AVERAGING_MAX:
            # small k: a dense (k, T) averaging matrix, one BLAS product per block that reads
            # the strided block in place (scipy's sparse product first copies it contiguous)
            avg = np.zeros((k, n), dtype=np.float32)
            avg[labels, np.arange(n)] = weights
        else:  # group means as a sparse (k, T) matrix: O(T * D) per pass, not O(T * D * k)
            avg = sparse.csr_matrix((weights, (labels, np.arange(n))), shape=(k, n))
        cross, row, cnorm = np.zeros((n, k)), np.zeros(k), np.zeros(k)
        for _, raw, mean, scale in passes.blocks(f"refine (pass {n_iter})"):
            block = raw if raw.dtype == np.float32 else raw.astype(np.float32)
            mu = mean.astype(np.float32)
            cent = np.asarray(avg @ block) - mu  # centred centroids on this block
            s2 = scale * scale  # blocks come divided by a power of two (reduce.Passes)
            np.matmul(block, cent.T, out=buf)
            if s2 == 1.0:
                cross += buf  # float32 -> float64 inside the ufunc: no (T, k) temporary
            else:
                cross += s2 * buf.astype(np.float64)
            row += s2 * (mu @ cent.T).astype(np.float64)  # subtracted once, after the blocks
            cnorm += s2 * np.einsum("ij,ij->i", cent, cent, dtype=np.float64)
        xnorm = passes.row_norms  # |x - mean|^2 per task, from the first pass over the data
        assert xnorm is not None and xnorm.shape == (n,)
        cross -= row[None, :]
        d2 = np.maximum(xnorm[:, None] - 2.0 * cross + cnorm[None, :], 0.0)
        new = np.argmin(d2, axis=1).astype(np.int64)
        if np.array_equal(new, labels):
            return d2, labels, n_iter
        labels = new
    return d2, labels, n_iter
