"""Choose the number of task groups ``k`` with documented validity criteria.

For every candidate ``k`` the tasks are grouped ``n_seeds`` times (``random_state``,
``random_state + 1``, ...) in one shared reduced embedding, and scored by

``silhouette``
    Mean silhouette of the hard labels of the first seed in the reduced space (scikit-learn;
    computed on a seeded sample of at most ``silhouette_sample`` tasks). In ``[-1, 1]``, higher is
    better; undefined (NaN) for ``k = 1`` and ``k = T``.
``xie_beni``
    Xie-Beni index of the fuzzy partition of the first seed,
    ``sum_tc u_tc^m |x_t - c_c|^2 / (T * min_{i != j} |c_i - c_j|^2)``; lower is better; NaN for
    ``k = 1``.
``stability``
    Mean adjusted Rand index between the hard labels of every pair of seeds (1.0 = every seed finds
    the same partition); NaN when ``n_seeds < 2``.
``inertia``
    Sum of squared distances to the nearest centroid (first seed), for an elbow plot.

Pick rule: among the ``k`` whose stability is at least ``min_stability`` (all ``k`` if none is, or
if stability is NaN), take the highest silhouette; ties go to the smaller ``k``. If no silhouette is
defined (e.g. ``ks = [1]``), the smallest ``k`` is returned.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import adjusted_rand_score, silhouette_score

from stgmtl.grouping.grouper import TaskGrouper, unpack_data
from stgmtl.grouping.reduce import reduce_features

_REDUCE_KEYS = (
    "reduce",
    "n_components",
    "projection_dim",
    "n_power_iter",
    "block_size",
    "progress",
)


@dataclass(frozen=True)
class ChooseKResult:
    """Scores per ``k`` and the pick; unpacks as ``table, best_k = choose_k(...)``.

    Attributes
    ----------
    table : pl.DataFrame
        Columns ``k``, ``silhouette``, ``xie_beni``, ``stability``, ``inertia``, ``chosen``.
    best_k : int
    """

    table: pl.DataFrame
    best_k: int

    def __iter__(self):  # noqa: D105 - tuple-style unpacking
        yield self.table
        yield self.best_k


def xie_beni(x: np.ndarray, membership: np.ndarray, centroids: np.ndarray, m: float) -> float:
    """Xie-Beni index (lower is better); NaN for fewer than two centroids."""
    from stgmtl.grouping.kmeans import sq_distances

    if centroids.shape[0] < 2:
        return float("nan")
    d2 = sq_distances(x, centroids)
    sep = sq_distances(centroids, centroids)
    sep[np.diag_indices_from(sep)] = np.inf
    with np.errstate(under="ignore"):
        compact = float((membership**m * d2).sum())
    return compact / (x.shape[0] * float(sep.min()))


def choose_k(
    data: Any,
    ks: Iterable[int] = range(2, 11),
    *,
    m: float = 1.07,
    n_seeds: int = 3,
    random_state: int = 0,
    min_stability: float = 0.9,
    silhouette_sample: int = 2000,
    task_names: Any = None,
    **grouper_kwargs: Any,
) -> ChooseKResult:
    """Score candidate numbers of groups and pick one (rule in the module docstring).

    Parameters
    ----------
    data : DataMaps, array-like, torch.Tensor, or iterable of column blocks
        As for :func:`stgmtl.group`; reduced once and shared by all ``k``.
    ks : iterable of int
        Candidates, each in ``[1, T]``.
    m : float
        Fuzzifier for the memberships and the Xie-Beni index.
    n_seeds : int
        Groupings per ``k`` for the stability score.
    random_state : int
        Seed of the reduction and of the first grouping.
    min_stability : float
        Minimum mean ARI across seeds for a ``k`` to be preferred.
    silhouette_sample : int
        Tasks sampled for the silhouette (it costs ``O(T^2)``).
    task_names : sequence of str, optional
        Unused for scoring; accepted for symmetry with :func:`stgmtl.group`.
    **grouper_kwargs
        Other :class:`~stgmtl.grouping.grouper.TaskGrouper` parameters (``method``, ``n_init``,
        ``reduce``, ``n_components``, ...).

    Returns
    -------
    ChooseKResult
        ``(table, best_k)``.
    """
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks is empty; pass candidate numbers of groups, e.g. range(2, 11)")
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be >= 1; got {n_seeds}")
    x, _ = unpack_data(data, task_names, grouper_kwargs.pop("feature_kwargs", None))
    red_kw = {key: grouper_kwargs.pop(key) for key in _REDUCE_KEYS if key in grouper_kwargs}
    red_kw.setdefault("progress", False)
    if "reduce" in red_kw:
        red_kw["method"] = red_kw.pop("reduce")
    red_kw.setdefault("min_components", min(128, max(16, 2 * max(ks))))
    emb = reduce_features(x, random_state=random_state, **red_kw).embedding
    n = emb.shape[0]
    bad = [k for k in ks if k < 1 or k > n]
    if bad:
        raise ValueError(f"every k in ks must be in [1, T={n}]; got {bad}")
    rows = []
    for k in ks:
        fits = [
            TaskGrouper(
                n_groups=k,
                m=m,
                random_state=random_state + s,
                reduce="none",
                progress=False,
                **grouper_kwargs,
            ).fit(emb)
            for s in range(n_seeds)
        ]
        first = fits[0]
        n_labels = len(np.unique(first.labels_))
        sil = float("nan")
        if 2 <= n_labels <= n - 1:
            sil = float(
                silhouette_score(
                    emb,
                    first.labels_,
                    sample_size=min(n, silhouette_sample),
                    random_state=random_state,
                )
            )
        pairs = list(itertools.combinations(fits, 2))
        stab = (
            float(np.mean([adjusted_rand_score(a.labels_, b.labels_) for a, b in pairs]))
            if pairs
            else float("nan")
        )
        rows.append(
            {
                "k": k,
                "silhouette": sil,
                "xie_beni": xie_beni(emb, first.membership_, first.cluster_centers_, m),
                "stability": stab,
                "inertia": first.inertia_,
            }
        )
    table = pl.DataFrame(rows)
    best = _pick(table, min_stability)
    return ChooseKResult(table.with_columns((pl.col("k") == best).alias("chosen")), best)


def _pick(table: pl.DataFrame, min_stability: float) -> int:
    cand = table.filter(pl.col("stability").is_not_nan() & (pl.col("stability") >= min_stability))
    if cand.height == 0:
        cand = table
    cand = cand.filter(pl.col("silhouette").is_not_nan())
    if cand.height == 0:
        return min(int(v) for v in table["k"].to_list())
    top = cand["silhouette"].max()
    return min(int(v) for v in cand.filter(pl.col("silhouette") == top)["k"].to_list())
