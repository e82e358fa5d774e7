"""The cross-task confusion feature (``kind="confusion"``), built from data maps.

STG-MTL's feature (``DataMaps.features(kind="datamap")``) describes a task by its confidence
and variability on every sample. Most of those values are the easy negatives that every task
gets right, so two tasks look alike mostly because they are equally easy. The *confusion*
feature asks a sharper question of the same data map: how strongly does task ``t`` fire on
the positives of task ``u``? For binary tasks the data map holds the mean probability of the
*true* label, so the mean probability that task ``t`` says yes on sample ``n`` is
``confidence[t, n]`` where ``t``'s own label is 1 and ``1 - confidence[t, n]`` where it is 0.
Averaged over the positives of ``u`` it gives the confusion matrix

    A[t, u] = mean over samples n with targets[u, n] == 1 of P(t says yes on n),   t != u

(``A[t, t] = 0``). Its symmetric part ``S = (A + A.T) / 2`` is a task affinity: tasks that
the model mixes up share features, which is what grouping wants. By default only each task's
strongest confusions are kept: a k-nearest-neighbour graph of ``S`` with about one average
group's worth of neighbours per task (``T / n_groups``), symmetrised by union, as in spectral
clustering practice (von Luxburg 2007); the many weak confusions that every task has with
every other are noise that blurs the groups. The feature of a task is its row of the
normalised spectral embedding of that graph (Ng, Jordan and Weiss 2002): the leading
non-trivial eigenvectors of the normalised graph Laplacian, each row scaled to unit length,
so that faiss k-means and the fuzzy membership step run on it unchanged.

It needs only what the recorder stores (``confidence`` and ``targets``), costs one sparse
matrix product (``T x nnz(targets == 1)``) and a ``T x T`` eigenproblem, and works for any
multi-label task set where tasks have positives.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from stgmtl.affinity.signals import confusion_matrix, says_yes
from stgmtl.datamaps import DataMaps

__all__ = ["confusion_affinity", "confusion_features", "confusion_matrix", "says_yes"]


def _resolve_neighbors(n_neighbors: int | str | None, t: int, n_groups: int | None) -> int | None:
    if n_neighbors is None:
        return None
    if isinstance(n_neighbors, str):
        if n_neighbors != "auto":
            raise ValueError(f"n_neighbors: expected an int, 'auto' or None, got {n_neighbors!r}")
        if n_groups is None:
            return None
        return int(min(t - 1, max(2, round(t / n_groups))))
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)):
        raise TypeError(f"n_neighbors: expected an int, got {type(n_neighbors).__name__}")
    if not 1 <= n_neighbors:
        raise ValueError(f"n_neighbors: expected >= 1, got {n_neighbors}")
    return int(min(n_neighbors, t - 1))


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
        off-diagonal entries of ``S`` (ties broken by the lower task index), then symmetrise by
        union, ``W = max(B, B.T)``.
    snapshot : int or "final"
        Which confidence to read (see :func:`confusion_matrix`).

    Returns
    -------
    np.ndarray or scipy.sparse.csr_matrix
        float64 ``(T, T)``, symmetric, zero diagonal; sparse when ``n_neighbors`` is given.
    """
    a = confusion_matrix(dm, snapshot=snapshot)
    s = (a + a.T) / 2.0
    q = _resolve_neighbors(n_neighbors, s.shape[0], None)
    if q is None:
        return s
    t = s.shape[0]
    ranked = np.where(np.eye(t, dtype=bool), -np.inf, s)
    # a stable sort on -S keeps ties in task order, so the graph does not depend on the solver
    nearest = np.argsort(-ranked, axis=1, kind="stable")[:, :q]
    rows = np.repeat(np.arange(t), q)
    b = sp.csr_matrix((s[rows, nearest.ravel()], (rows, nearest.ravel())), shape=(t, t))
    w = b.maximum(b.T).tocsr()
    w.eliminate_zeros()
    return w


def confusion_features(
    dm: DataMaps,
    *,
    snapshot: int | str = "final",
    n_components: int | None = None,
    n_groups: int | None = None,
    n_neighbors: int | str | None = "auto",
    random_state: int = 0,
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
        Sparsify the affinity to a k-nearest-neighbour graph (see :func:`confusion_affinity`).
        ``"auto"`` (default): ``round(T / n_groups)`` neighbours (the size of an average group,
        at least 2), or the dense affinity when ``n_groups`` is unknown. ``None``: dense. On
        CIFAR-100 (k = 20, so 5 neighbours) it was chosen on two recordings (NMI against the
        superclasses 0.770 - 0.774 vs 0.752 - 0.757 dense; 3 to 8 neighbours gave 0.748 -
        0.774); on three later recordings it gave NMI 0.756 vs 0.751 and ARI 0.429 vs 0.411
        (15 groupings each). A graph thinner than about half a group can split groups.
    random_state : int
        Seed of the eigensolver's start vector.

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
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
        raise TypeError(f"n_components: expected an int, got {type(n_components).__name__}")
    if n_components < 1:
        raise ValueError(f"n_components: expected >= 1, got {n_components}")
    d = int(min(n_components, t - 2))
    q = _resolve_neighbors(n_neighbors, t, n_groups)
    affinity = confusion_affinity(dm, n_neighbors=q, snapshot=snapshot)
    nonzero = affinity.nnz if isinstance(affinity, sp.spmatrix) else np.count_nonzero(affinity)
    if nonzero == 0:
        raise ValueError(
            "confusion features: no task fires on another task's positives (all confusions are "
            "0); record targets with positives, or use kind='datamap'"
        )
    from sklearn.manifold import spectral_embedding

    emb = spectral_embedding(affinity, n_components=d, drop_first=True, random_state=random_state)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(emb / norms, dtype=np.float32)
