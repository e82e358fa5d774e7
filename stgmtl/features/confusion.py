"""The cross-task confusion feature (``kind="confusion"``), built from data maps.

STG-MTL's feature (``task_features(maps, "datamap")``) describes a task by its confidence
and variability on every sample. Most of those values are the easy negatives that every task
gets right, so two tasks look alike mostly because they are equally easy. The *confusion*
feature asks a sharper question of the same data map: how strongly does task ``t`` fire on
the positives of task ``u``? For binary tasks the data map holds the mean probability of the
*true* label, so the mean probability that task ``t`` says yes on sample ``n`` is
``confidence[t, n]`` where ``t``'s own label is 1 and ``1 - confidence[t, n]`` where it is 0.
Averaged over the positives of ``u`` it gives the confusion matrix

    A[t, u] = mean over samples n with targets[u, n] == 1 of P(t says yes on n),   t != u

(``A[t, t] = 0``). Its symmetric part ``S = (A + A.T) / 2`` is a task affinity: tasks that
the model mixes up share features, which is what grouping wants. (Before stgmtl 0.2 the
probability of yes was ``1 - confidence`` everywhere, which is right only where ``t``'s own label
is 0: on one-vs-rest suites nothing changes, but with overlapping labels it measured ``t``'s
*error*, so identical tasks looked unrelated and a random-label task looked related to all.)

Only each task's strongest confusions are kept: a k-nearest-neighbour graph of ``S``,
symmetrised by union, as in spectral clustering practice (von Luxburg 2007); the many weak
confusions that every task has with every other are noise that blurs the groups. The graph is
**connected by construction**: the maximum spanning tree of ``S`` is added to it, so a thin
graph cannot fall apart into pieces whose spectral embedding is arbitrary (a disconnected graph
made groups change with the grouping seed). The **number of neighbours is chosen from the data**
(``n_neighbors="auto"``): for each candidate (2 to twice the size of an average group, and the
dense affinity), the samples are resampled with replacement (16 times), the graph and a k-means
partition of its embedding are recomputed on each resample, and each candidate's partitions are
compared (mean pairwise adjusted Rand index): stability-based model selection (Ben-Hur,
Elisseeff and Guyon 2002; Lange et al. 2004), i.e. the graph whose groups least depend on which
samples were recorded. Of the candidates within one standard error of the most stable, the one
whose groups of the full data agree best with the dense affinity's groups wins, then the
densest (:func:`choose_neighbors`). :func:`neighbor_stability` returns the scores.

The feature of a task is its row of the normalised spectral embedding of that graph (Ng,
Jordan and Weiss 2002): the leading non-trivial eigenvectors of the normalised graph
Laplacian, each row scaled to unit length, so that faiss k-means and the fuzzy membership step
run on it unchanged. The graph, its connection rule and the embedding are the feature stage's
one implementation (:mod:`~stgmtl.features.graph`), shared with the affinity feature.

The stability scoring's k-means (:func:`neighbor_stability`) is a small numpy k-means++ / Lloyd
on ``(T, d)`` embeddings, not the grouping stage's faiss k-means: the feature stage may not
import the grouping stage or faiss (``tests/test_architecture.py``), and the scorer runs about
200 times per ``"auto"`` choice, where a library call (scikit-learn's, 5x slower here) would
dominate.

It needs only what the recorder stores (``confidence`` and ``targets``) and works for any
multi-label task set where tasks have positives. Cost: one sparse matrix product
(``T x nnz(targets == 1)``) per resample and one ``T x T`` eigenproblem and small k-means per
candidate and resample (about 10 s for CIFAR-100's 100 tasks and 45,000 samples on 2 cores).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from stgmtl._checks import check_int, check_random_state, fail, seed_from
from stgmtl.affinity.signals import confusion_from, confusion_matrix, says_yes
from stgmtl.datamaps import DataMaps
from stgmtl.features.graph import knn_union, spectral_features

__all__ = [
    "confusion_affinity",
    "confusion_features",
    "confusion_matrix",
    "choose_neighbors",
    "neighbor_candidates",
    "neighbor_stability",
    "says_yes",
]


def _check_neighbors(n_neighbors: Any) -> int | str | None:
    if n_neighbors is None or n_neighbors == "auto":
        return n_neighbors  # type: ignore[no-any-return]
    if isinstance(n_neighbors, str):
        raise fail("n_neighbors", "an int >= 1, 'auto' or None", n_neighbors)
    return check_int("n_neighbors", n_neighbors, low=1)


def _knn_graph(s: np.ndarray, q: int | None) -> np.ndarray:
    """The union k-nearest-neighbour graph of ``s`` plus its maximum spanning tree
    (:func:`~stgmtl.features.graph.knn_union`)."""
    return knn_union(s, q, spanning_tree_edges=True)


def confusion_affinity(
    dm: DataMaps,
    *,
    n_neighbors: int | None = None,
    snapshot: int | str = "final",
) -> np.ndarray | sp.csr_matrix:
    """Task affinity from the symmetric confusion ``S = (A + A.T) / 2``, optionally sparsified.

    Parameters
    ----------
    dm : DataMaps
        Data maps of binary tasks with recorded targets.
    n_neighbors : int, optional
        ``None``: the dense ``S``. An int ``q``: keep, in every row, the ``q`` largest
        off-diagonal entries of ``S`` (ties broken by the lower task index), symmetrise by
        union, ``W = max(B, B.T)``, and add the edges of a maximum spanning tree of ``S``, so
        that the graph is connected whenever ``S`` is (the tree's edges are the strongest links
        between what would otherwise be separate pieces).
    snapshot : int or "final"
        Which confidence to read (see :func:`confusion_matrix`).

    Returns
    -------
    np.ndarray or scipy.sparse.csr_matrix
        float64 ``(T, T)``, symmetric, zero diagonal; sparse when ``n_neighbors`` is given.
    """
    q = _check_neighbors(n_neighbors)
    if q == "auto":
        raise fail("n_neighbors", "an int or None (choose it with neighbor_stability)", q)
    a = confusion_matrix(dm, snapshot=snapshot)
    s = (a + a.T) / 2.0
    if q is None:
        return s
    w = sp.csr_matrix(_knn_graph(s, int(q)))  # type: ignore[arg-type]
    w.eliminate_zeros()
    return w


def neighbor_candidates(num_tasks: int, n_groups: int) -> list[int | None]:
    """Neighbour counts that ``n_neighbors="auto"`` compares, then ``None`` (the dense affinity).

    From 2 to twice the size of an average group (``2 * T / n_groups``, at most ``T - 2``):
    every count up to 10, at most 10 counts spread geometrically beyond.
    """
    top = min(num_tasks - 2, max(2, (2 * num_tasks) // max(n_groups, 1)))
    if top <= 11:
        counts = list(range(2, top + 1))
    else:
        counts = sorted({int(c) for c in np.round(np.geomspace(2, top, 10))})
    return [*counts, None]


def neighbor_stability(
    dm: DataMaps,
    n_groups: int,
    *,
    candidates: list[int | None] | None = None,
    n_resamples: int = 16,
    n_components: int | None = None,
    snapshot: int | str = "final",
    random_state: Any = 0,
) -> dict[int | None, tuple[float, float, float]]:
    """How stable the groups of each neighbour graph are, under resampling and across graphs.

    For each of ``n_resamples`` bootstrap resamples of the samples (with replacement, seeded),
    the confusion affinity is recomputed, and for each candidate number of neighbours the
    graph (:func:`confusion_affinity`), its spectral embedding and a k-means partition into
    ``n_groups`` groups (k-means++ seeding, Lloyd iterations, best of 10, seeded) are computed.
    A candidate's stability is the mean adjusted Rand index (ARI) between its partitions of
    different resamples: 1 when every resample gives the same groups. Its agreement is the ARI
    between its partition of the full data and that of the dense affinity: low for a graph
    whose groups come from which edges it cut rather than from the confusions.

    Parameters
    ----------
    dm : DataMaps
        Data maps of binary tasks with recorded targets.
    n_groups : int
        Number of groups, ``2 <= n_groups < T``.
    candidates : list of int or None, optional
        Neighbour counts to compare (``None`` = dense); default :func:`neighbor_candidates`.
    n_resamples : int
        Bootstrap resamples (>= 2).
    n_components : int, optional
        Embedding dimension (default ``n_groups``, capped at ``T - 2``).
    snapshot : int or "final"
        Which confidence to read.
    random_state : None, int, numpy Generator or RandomState
        Seed of the resamples, the eigensolver and k-means.

    Returns
    -------
    dict
        Candidate -> ``(stability, standard error, agreement)``, in candidate order; the
        standard error is the standard deviation of the pairwise ARIs over
        ``sqrt(n_resamples)``.
    """
    from sklearn.metrics import adjusted_rand_score

    t = dm.num_tasks
    k = check_int("n_groups", n_groups, low=2, high=max(2, t - 1))
    check_int("n_resamples", n_resamples, low=2)
    cands = neighbor_candidates(t, k) if candidates is None else list(candidates)
    for q in cands:
        if q is not None:
            check_int("candidates", q, low=1)
    d = int(min(k if n_components is None else n_components, t - 2))
    rng = check_random_state("random_state", random_state)
    seed = int(rng.integers(0, 2**31 - 1))
    fired = says_yes(dm, snapshot=snapshot)
    positives = sp.csr_matrix(np.asarray(dm.targets) == 1, dtype=np.float64)

    def partitions(s: np.ndarray, qs: list[int | None]) -> dict[int | None, np.ndarray]:
        out = {}
        for q in qs:
            emb = spectral_features(_knn_graph(s, q), d, seed).astype(np.float64)
            out[q] = _kmeans_labels(emb, k, np.random.default_rng(seed))
        return out

    a = confusion_from(positives, fired)
    full = partitions((a + a.T) / 2.0, list(dict.fromkeys([*cands, None])))
    n = dm.num_samples
    parts: dict[int | None, list[np.ndarray]] = {q: [] for q in cands}
    for _ in range(n_resamples):
        weights = rng.multinomial(n, np.full(n, 1.0 / n)).astype(np.float64)
        a = confusion_from(sp.csr_matrix(positives.multiply(weights[None, :])), fired)
        for q, labels in partitions((a + a.T) / 2.0, cands).items():
            parts[q].append(labels)
    out: dict[int | None, tuple[float, float, float]] = {}
    for q, ls in parts.items():
        aris = [adjusted_rand_score(x, y) for i, x in enumerate(ls) for y in ls[i + 1 :]]
        agree = float(adjusted_rand_score(full[q], full[None]))
        out[q] = (float(np.mean(aris)), float(np.std(aris) / np.sqrt(n_resamples)), agree)
    return out


def _kmeans_labels(x: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 10) -> np.ndarray:
    """Labels of the best of ``n_init`` k-means runs (k-means++ seeding, Lloyd iterations) on a
    small ``(T, d)`` matrix: for scoring candidates, where a library call costs more than the
    clustering."""
    n = x.shape[0]
    best, best_inertia = np.zeros(n, dtype=np.int64), np.inf
    for _ in range(n_init):
        centres = [x[rng.integers(n)]]
        d2 = ((x - centres[0]) ** 2).sum(1)
        for _ in range(1, k):
            total = d2.sum()
            i = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
            centres.append(x[i])
            d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(1))
        c = np.array(centres)
        for _ in range(100):
            dist = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
            labels = dist.argmin(1)
            new = np.array(
                [x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)]
            )
            if np.array_equal(new, c):
                break
            c = new
        inertia = float(dist[np.arange(n), labels].sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def choose_neighbors(scores: Mapping[int | None, tuple[float, ...]]) -> int | None:
    """The neighbour count to use, from :func:`neighbor_stability`'s scores.

    Of the candidates whose stability is within one standard error of the most stable one
    (the one-standard-error rule: resampling cannot tell them apart), the one whose groups
    agree best with the dense affinity's groups; remaining ties go to the denser graph
    (``None``, the dense affinity, is densest). With few tasks and many samples several graphs
    are perfectly stable (resampling hardly moves the confusions) and one of them can find
    groups that come from which edges it cut; the agreement step passes over it.
    """
    best = max(scores, key=lambda q: scores[q][0])
    floor = scores[best][0] - scores[best][1]
    ok = [q for q in scores if scores[q][0] >= floor]
    agree = {q: scores[q][2] if len(scores[q]) > 2 else 0.0 for q in ok}
    top = max(agree.values())
    ok = [q for q in ok if agree[q] >= top - 1e-12]
    return None if None in ok else max(q for q in ok if q is not None)


def confusion_features(
    dm: DataMaps,
    *,
    snapshot: int | str = "final",
    n_components: int | None = None,
    n_groups: int | None = None,
    n_neighbors: int | str | None = "auto",
    n_resamples: int = 16,
    random_state: Any = 0,
) -> np.ndarray:
    """Normalised spectral embedding of the symmetric cross-task confusion, float32 ``(T, d)``.

    Use through ``stgmtl.features.task_features(maps, "confusion", ...)`` or
    ``stgmtl.group(maps, k, features="confusion")``.

    Parameters
    ----------
    dm : DataMaps
        Data maps of binary tasks with recorded targets.
    snapshot : int or "final"
        Which confidence to read (see :func:`confusion_matrix`).
    n_components : int, optional
        Embedding dimension ``d`` (capped at ``T - 2``). Default: ``n_groups`` (as in Ng,
        Jordan and Weiss: k eigenvectors for k groups), else 20. More dimensions than groups
        add eigenvectors that only carry noise: on 6 planted groups, 20 dimensions dropped the
        ARI from 1.0 to about 0.5.
    n_groups : int, optional
        Number of groups the embedding is for; :class:`~stgmtl.TaskGrouper` passes it.
    n_neighbors : int, "auto" or None
        The affinity graph (see :func:`confusion_affinity`; always connected). ``"auto"``
        (default): the neighbour count (or the dense affinity) whose groups are most stable
        under resampling of the samples (:func:`neighbor_stability`, :func:`choose_neighbors`);
        the dense affinity when ``n_groups`` is unknown, below 2 or at least ``T - 1``. An int:
        that many neighbours. ``None``: dense.
    n_resamples : int
        Bootstrap resamples of ``"auto"``.
    random_state : None, int, numpy Generator or RandomState
        Seed of the eigensolver's start vector and of ``"auto"``'s resamples and k-means; the
        same int gives the same features.

    Returns
    -------
    np.ndarray
        float32, C-contiguous ``(T, d)``, rows of unit length.
    """
    t = dm.num_tasks
    if t < 3:
        raise ValueError(f"confusion features need at least 3 tasks; got {t}")
    if n_components is None:
        n_components = 20 if n_groups is None else n_groups
    n_components = check_int("n_components", n_components, low=1)
    q = _check_neighbors(n_neighbors)
    seed = seed_from("random_state", random_state)
    d = int(min(n_components, t - 2))
    a = confusion_matrix(dm, snapshot=snapshot)
    s = (a + a.T) / 2.0
    if not np.any(s > 0):
        raise ValueError(
            "confusion features: no task fires on another task's positives (all confusions are "
            "0); record targets with positives, or use kind='datamap'"
        )
    if q == "auto":
        q = None
        if n_groups is not None and 2 <= n_groups < t - 1:
            scores = neighbor_stability(dm, n_groups, n_resamples=n_resamples,
                                        n_components=n_components, snapshot=snapshot,
                                        random_state=seed)  # fmt: skip
            q = choose_neighbors(scores)
    return spectral_features(_knn_graph(s, q), d, seed)  # type: ignore[arg-type]
