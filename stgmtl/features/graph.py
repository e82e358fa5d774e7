"""The one task-graph toolkit of the feature stage: a k-nearest-neighbour graph of an affinity,
the rule that keeps it connected, and its normalised spectral embedding.

Shared by the confusion feature (:mod:`~stgmtl.features.confusion`) and the affinity feature
(:mod:`~stgmtl.features.affinity`), so both read a ``(T, T)`` non-negative, symmetric weight
matrix the same way:

* :func:`knn_union` keeps, in every row, the ``q`` largest off-diagonal weights (ties to the
  lower task index, by a stable sort, so the graph does not depend on the solver), symmetrised
  by union (von Luxburg 2007); ``spanning_tree=True`` also keeps the edges of a maximum
  spanning tree (forest) of the positive weights, so that thinning cannot split a connected
  affinity into pieces;
* :func:`connect`: a graph that is still disconnected (tasks with no evidence, or clipped
  harmful pairs) gets a uniform weight :data:`REGULARISATION` times its mean positive weight
  between every pair (regularised spectral clustering, Amini et al. 2013, Qin and Rohe 2013):
  the embedding is then defined and the components still separate;
* :func:`spectral_features`: the leading ``d`` non-trivial eigenvectors of the normalised
  Laplacian of the connected graph (Ng, Jordan and Weiss 2002), each row scaled to unit length,
  float32.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

__all__ = ["REGULARISATION", "connect", "knn_union", "spanning_tree", "spectral_features"]

#: Uniform weight added to a disconnected graph, relative to its mean positive weight.
REGULARISATION = 1e-3


def spanning_tree(s: np.ndarray) -> np.ndarray:
    """Bool ``(T, T)`` symmetric edges of a maximum spanning tree (forest) of ``s > 0``."""
    off = s > 0
    np.fill_diagonal(off, False)
    if not off.any():
        return off
    # minimum spanning tree of (max + margin - s) over the positive entries = maximum of s
    cost = np.where(off, s.max() * (1.0 + 1e-9) + 1e-300 - s, 0.0)
    tree = minimum_spanning_tree(sp.csr_matrix(cost)).toarray() != 0
    return tree | tree.T


def knn_union(s: np.ndarray, q: int | None, *, spanning_tree_edges: bool = False) -> np.ndarray:
    """Dense ``(T, T)``: ``s`` where an edge is kept, else 0 (see the module docstring).

    ``q=None`` or ``q >= T - 1`` keeps every pair (a copy of ``s``).
    """
    t = s.shape[0]
    if q is None or q >= t - 1:
        return s.copy()
    ranked = np.where(np.eye(t, dtype=bool), -np.inf, s)
    nearest = np.argsort(-ranked, axis=1, kind="stable")[:, :q]
    keep = np.zeros((t, t), dtype=bool)
    keep[np.repeat(np.arange(t), q), nearest.ravel()] = True
    keep |= keep.T
    if spanning_tree_edges:
        keep |= spanning_tree(s)
    return np.where(keep, s, 0.0)


def connect(w: np.ndarray) -> np.ndarray:
    """``w`` unchanged if its positive weights connect all tasks; else ``w`` plus
    ``REGULARISATION * mean(w[w > 0])`` between every pair (zero diagonal)."""
    if connected_components(sp.csr_matrix(w > 0), directed=False)[0] == 1:
        return w
    positive = w[w > 0]
    ridge = REGULARISATION * (float(positive.mean()) if positive.size else 1.0)
    out = w + ridge
    np.fill_diagonal(out, 0.0)
    return out


def spectral_features(w: np.ndarray, d: int, seed: int) -> np.ndarray:
    """Normalised spectral embedding of ``connect(w)``: float32 ``(T, d)``, unit-length rows."""
    from sklearn.manifold import spectral_embedding

    emb = spectral_embedding(connect(w), n_components=d, drop_first=True, random_state=seed)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(emb / norms, dtype=np.float32)
