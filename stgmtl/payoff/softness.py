"""Soft or hard groups as a measured choice: the fuzzifier from a target membership entropy.

STG-MTL's fuzzifier ``m = 1.07`` turns distances into memberships ``u_tc ~ d_tc^(-2/(m-1))``
(an exponent of about -28.6). How soft that is depends on the scale of the feature space: on
the confusion embedding nearly every task gets a membership above 0.96 in one group, so
membership-weighted training is hard grouping in disguise. Here the softness is set instead:
:func:`m_for_entropy` finds, per feature space, the ``m`` at which the tasks' memberships have a
chosen mean normalised entropy

    H = mean over tasks t of  -sum_c u_tc log u_tc / log k       (0 = hard, 1 = uniform),

by bisection (``H`` grows with ``m``). The payoff harness trains the same grouping hard and at
the target entropy and reports, on validation and test, whether the soft weighting pays off.
"""

from __future__ import annotations

import numpy as np

from stgmtl._checks import check_float, fail
from stgmtl.grouping import TaskGroups, fuzzy_memberships
from stgmtl.grouping.kmeans import sq_distances

__all__ = ["m_for_entropy", "membership_entropy", "soft_memberships"]


def membership_entropy(membership: np.ndarray) -> float:
    """Mean over tasks of the membership entropy divided by ``log k`` (0 hard, 1 uniform)."""
    u = np.asarray(membership, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] < 1:
        raise fail("membership", "a (T, k) matrix", u.shape)
    k = u.shape[1]
    if k == 1:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(u > 0, u * np.log(u), 0.0).sum(1)
    return float(h.mean() / np.log(k))


def _sq_dist(groups: TaskGroups) -> np.ndarray:
    if groups.embedding is None:
        raise fail("groups", "TaskGroups with the embedding they were found in", "no embedding")
    x = np.asarray(groups.embedding, dtype=np.float32)
    return np.maximum(sq_distances(x, groups.centroids.astype(np.float32)), 0.0).astype(np.float64)


def m_for_entropy(
    groups: TaskGroups, target: float, *, m_max: float = 50.0, tol: float = 1e-3
) -> float:
    """The fuzzifier at which ``groups``' memberships have mean normalised entropy ``target``.

    Parameters
    ----------
    groups : TaskGroups
        Groups with their embedding and centroids (distances are recomputed from them).
    target : float
        In ``(0, 1)``.
    m_max : float
        Largest ``m`` tried (returned when even it is harder than ``target``).
    tol : float
        Tolerance on the entropy.

    Returns
    -------
    float
    """
    check_float("target", target, low=0.0, high=0.999, low_open=True)
    d = _sq_dist(groups)
    lo, hi = np.log(1e-3), np.log(m_max - 1.0)  # bisection on log(m - 1)
    if membership_entropy(fuzzy_memberships(d, 1.0 + np.exp(hi), squared=True)) < target:
        return float(m_max)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        h = membership_entropy(fuzzy_memberships(d, 1.0 + np.exp(mid), squared=True))
        if abs(h - target) <= tol:
            break
        lo, hi = (mid, hi) if h < target else (lo, mid)
    return float(1.0 + np.exp(mid))


def soft_memberships(groups: TaskGroups, target: float) -> tuple[np.ndarray, float]:
    """``(membership, m)``: ``groups``' memberships re-computed at ``m_for_entropy(target)``.

    ``target = 0`` gives the one-hot memberships of the hard groups (and ``m = 1``).
    """
    check_float("target", target, low=0.0, high=0.999)
    if target == 0:
        return np.eye(groups.n_groups)[groups.labels], 1.0
    m = m_for_entropy(groups, target)
    return fuzzy_memberships(_sq_dist(groups), m, squared=True), m
