"""Fuzzy memberships of tasks in groups, computed in float64 log space.

The fuzzy c-means (FCM) rule with fuzzifier ``m > 1`` and *Euclidean* distances ``d_tc``::

    u_tc = 1 / sum_j (d_tc / d_tj) ** (2 / (m - 1))   <=>   u_tc  oc  d_tc ** (-2 / (m - 1))

With squared distances ``s = d**2`` (what faiss returns) the exponent halves:
``u_tc oc s_tc ** (-1 / (m - 1))``.
STG-MTL uses ``m = 1.07``, an exponent of about -28.6 on ``d``, so the powers over- or underflow
for ordinary distances; here ``log u = a * log d - logsumexp_j(a * log d_tj)`` with
``a = -2 / (m - 1)``, which is finite and sums to 1 for any distances. A task at distance exactly 0
from one or more centroids gets membership 1 there, split evenly among the ties.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stgmtl._checks import fail
from stgmtl.grouping.kmeans import sq_distances
from stgmtl.grouping.reduce import check_magnitude, to_numpy

__all__ = ["fuzzy_cmeans", "fuzzy_memberships", "log_memberships"]


def _check_m(m: float) -> float:
    if isinstance(m, bool) or not isinstance(m, (int, float, np.integer, np.floating)):
        raise fail("m", "a real number > 1", m, error=TypeError)
    if not np.isfinite(m) or m <= 1:
        raise fail(
            "m",
            "a finite fuzzifier > 1 (m -> 1 gives hard k-means memberships: use "
            "method='hard'; STG-MTL uses m = 1.07)",
            m,
        )
    return float(m)


def log_memberships(distances: Any, m: float = 1.07, *, squared: bool = False) -> np.ndarray:
    """Natural log of the FCM memberships (``-inf`` where a membership is exactly 0).

    Parameters and validation as :func:`fuzzy_memberships`.
    """
    m = _check_m(m)
    d = np.asarray(to_numpy(distances), dtype=np.float64)
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distances must be a non-empty (tasks, groups) matrix; got {d.shape}")
    if np.isnan(d).any() or (d < 0).any():
        raise ValueError("distances must be >= 0 and not NaN; got negative or NaN entries")
    if np.isinf(d).all(axis=1).any():
        row = int(np.flatnonzero(np.isinf(d).all(axis=1))[0])
        raise ValueError(f"task {row} is at infinite distance from every centroid")
    expo = -(1.0 if squared else 2.0) / (m - 1.0)
    zero = d == 0
    with np.errstate(divide="ignore"):
        logw = expo * np.log(d)  # +inf at d == 0, -inf at d == inf
    has_zero = zero.any(axis=1)
    logw[has_zero] = np.where(zero[has_zero], 0.0, -np.inf)
    top = logw.max(axis=1, keepdims=True)
    with np.errstate(under="ignore"):
        lse = top + np.log(np.exp(logw - top).sum(axis=1, keepdims=True))
    return logw - lse


def fuzzy_memberships(distances: Any, m: float = 1.07, *, squared: bool = False) -> np.ndarray:
    """Fuzzy c-means memberships from task-to-centroid distances.

    Parameters
    ----------
    distances : array-like or torch.Tensor
        ``(T, k)`` non-negative distances (``inf`` allowed unless a whole row is ``inf``).
    m : float
        Fuzzifier, finite and ``> 1`` (1.07 in STG-MTL; larger is softer).
    squared : bool
        ``True`` if ``distances`` are *squared* Euclidean distances (as faiss returns).

    Returns
    -------
    np.ndarray
        ``(T, k)`` float64, rows summing to 1 (to rounding), all entries finite in ``[0, 1]``.
    """
    with np.errstate(under="ignore"):
        u = np.exp(log_memberships(distances, m, squared=squared))
    return u / u.sum(axis=1, keepdims=True)


def fuzzy_cmeans(
    x: np.ndarray,
    init_centroids: np.ndarray,
    m: float = 1.07,
    *,
    max_iter: int = 300,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Iterative fuzzy c-means (Bezdek) from given centroids, in float64.

    Alternates the membership rule above with centroid updates
    ``c_j = sum_t u_tj^m x_t / sum_t u_tj^m`` (weights formed in log space) until the largest
    centroid move is below ``tol`` times the data's RMS spread, or ``max_iter`` is reached.

    Returns
    -------
    centroids : np.ndarray
        ``(k, d)`` float64.
    membership : np.ndarray
        ``(T, k)`` float64 memberships for the returned centroids.
    objective : float
        ``sum_tj u_tj^m d_tj^2``.
    n_iter : int
    """
    m = _check_m(m)
    x64 = np.asarray(x, dtype=np.float64)
    check_magnitude(x64, "x")
    c = np.asarray(init_centroids, dtype=np.float64).copy()
    scale = float(np.sqrt(((x64 - x64.mean(axis=0)) ** 2).sum(axis=1).mean())) or 1.0
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        logu = log_memberships(sq_distances(x64, c), m, squared=True)
        logw = m * logu
        colmax = logw.max(axis=0, keepdims=True)
        colmax[~np.isfinite(colmax)] = 0.0  # a column with no mass at all (empty group)
        with np.errstate(under="ignore"):
            w = np.exp(logw - colmax)
        mass = w.sum(axis=0)
        new = np.where(mass[:, None] > 0, (w.T @ x64) / np.maximum(mass, 1e-300)[:, None], c)
        move = float(np.sqrt(((new - c) ** 2).sum(axis=1)).max())
        c = new
        if move <= tol * scale:
            break
    d2 = sq_distances(x64, c)
    u = fuzzy_memberships(d2, m, squared=True)
    with np.errstate(under="ignore"):
        objective = float((u**m * d2).sum())
    return c, u, objective, n_iter
