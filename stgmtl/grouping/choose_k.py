"""Choose the number of task groups ``k`` with documented validity criteria.

What these criteria measure, and what they do not: they score how well the tasks separate in
the *feature space* (compact, well separated, reproducible clusters). They say nothing about
whether training the groups separately pays off; a small ``k`` with a high silhouette is often
just the coarsest split of the features. Choose the number of groups for training from measured
validation gains (the payoff harness) where you can.

For every candidate ``k`` the task features are computed exactly as :func:`stgmtl.group`
computes them for that ``k`` (feature kinds that depend on the number of groups, such as
``"confusion"``, are recomputed per ``k``; others once), reduced once per distinct feature
matrix, and grouped ``n_seeds`` times (seeds ``random_state``, ``random_state + 1``, ...),
then scored by

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
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import adjusted_rand_score, silhouette_score

from stgmtl._checks import check_int, fail, seed_from
from stgmtl.features import FEATURE_KINDS, default_kind
from stgmtl.grouping.grouper import TaskGrouper, feature_matrix
from stgmtl.grouping.kmeans import sq_distances
from stgmtl.grouping.reduce import reduce_features

__all__ = ["ChooseKResult", "choose_k", "xie_beni"]

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

    def __getitem__(self, index: int) -> Any:
        """Round 1's tuple indexing (``[0]`` table, ``[1]`` best k), deprecated."""
        names = ("table", "best_k")
        if not isinstance(index, int) or isinstance(index, bool) or index not in (0, 1, -1, -2):
            raise TypeError(f"ChooseKResult: use .table or .best_k, not [{index!r}]")
        name = names[index]
        warnings.warn(
            f"choose_k(...)[{index}] is deprecated since stgmtl 0.2; use choose_k(...).{name} "
            "(see CHANGELOG.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(self, name)


def xie_beni(x: np.ndarray, membership: np.ndarray, centroids: np.ndarray, m: float) -> float:
    """Xie-Beni index (lower is better); NaN for fewer than two centroids."""
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
    features: str | None = None,
    feature_kwargs: dict[str, Any] | None = None,
    m: float = 1.07,
    n_seeds: int = 3,
    random_state: Any = 0,
    min_stability: float = 0.9,
    silhouette_sample: int = 2000,
    **grouper_kwargs: Any,
) -> ChooseKResult:
    """Score candidate numbers of groups and pick one (rule in the module docstring).

    Parameters
    ----------
    data : DataMaps, array-like, torch.Tensor, or iterable of column blocks
        As for :func:`stgmtl.group`.
    ks : iterable of int
        Candidates, each in ``[1, T]``.
    features, feature_kwargs
        Feature kind and options for recorded signals, as for :func:`stgmtl.group`.
    m : float
        Fuzzifier for the memberships and the Xie-Beni index.
    n_seeds : int
        Groupings per ``k`` for the stability score.
    random_state : None, int, numpy Generator or RandomState
        Seed of the reduction and of the first grouping.
    min_stability : float
        Minimum mean ARI across seeds for a ``k`` to be preferred.
    silhouette_sample : int
        Tasks sampled for the silhouette (it costs ``O(T^2)``).
    **grouper_kwargs
        Other :class:`~stgmtl.grouping.grouper.TaskGrouper` parameters (``method``, ``n_init``,
        ``reduce``, ``n_components``, ...).

    Returns
    -------
    ChooseKResult
        ``(table, best_k)``.
    """
    ks = sorted({check_int("ks", k, low=1) for k in ks})
    if not ks:
        raise fail("ks", "candidate numbers of groups, e.g. range(2, 11)", [])
    check_int("n_seeds", n_seeds, low=1)
    seed = seed_from("random_state", random_state)
    red_kw = {key: grouper_kwargs.pop(key) for key in _REDUCE_KEYS if key in grouper_kwargs}
    red_kw.setdefault("progress", False)
    if "reduce" in red_kw:
        red_kw["method"] = red_kw.pop("reduce")
    red_kw.setdefault("min_components", min(128, max(16, 2 * max(ks))))
    kind = default_kind(data) if features is None else features
    per_k = FEATURE_KINDS[kind].uses_n_groups if kind in FEATURE_KINDS else False
    emb = None
    rows = []
    for k in ks:
        if emb is None or per_k:
            x, _ = feature_matrix(data, k, features=features, feature_kwargs=feature_kwargs)
            emb = reduce_features(x, random_state=seed, **red_kw).embedding
        n = emb.shape[0]
        if k > n:
            raise fail("ks", f"numbers of groups in [1, T={n}]", ks)
        rows.append(_score(emb, k, m, n_seeds, seed, silhouette_sample, grouper_kwargs))
    table = pl.DataFrame(rows)
    best = _pick(table, min_stability)
    return ChooseKResult(table.with_columns((pl.col("k") == best).alias("chosen")), best)


def _score(
    emb: np.ndarray,
    k: int,
    m: float,
    n_seeds: int,
    seed: int,
    silhouette_sample: int,
    grouper_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Silhouette, Xie-Beni, stability and inertia of ``k`` groups of ``emb``."""
    n = emb.shape[0]
    fits = [
        TaskGrouper(n_groups=k, m=m, random_state=seed + s, reduce="none", progress=False,
                    **grouper_kwargs).fit(emb)
        for s in range(n_seeds)
    ]  # fmt: skip
    first = fits[0]
    n_labels = len(np.unique(first.labels_))
    sil = float("nan")
    if 2 <= n_labels <= n - 1:
        sil = float(silhouette_score(
            emb, first.labels_, sample_size=min(n, silhouette_sample), random_state=seed
        ))  # fmt: skip
    pairs = list(itertools.combinations(fits, 2))
    stab = (
        float(np.mean([adjusted_rand_score(a.labels_, b.labels_) for a, b in pairs]))
        if pairs
        else float("nan")
    )
    return {
        "k": k,
        "silhouette": sil,
        "xie_beni": xie_beni(emb, first.membership_, first.cluster_centers_, m),
        "stability": stab,
        "inertia": first.inertia_,
    }


def _pick(table: pl.DataFrame, min_stability: float) -> int:
    cand = table.filter(pl.col("stability").is_not_nan() & (pl.col("stability") >= min_stability))
    if cand.height == 0:
        cand = table
    cand = cand.filter(pl.col("silhouette").is_not_nan())
    if cand.height == 0:
        return min(int(v) for v in table["k"].to_list())
    top = cand["silhouette"].max()
    return min(int(v) for v in cand.filter(pl.col("silhouette") == top)["k"].to_list())
