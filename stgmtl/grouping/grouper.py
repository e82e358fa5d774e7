"""Soft task groups: :class:`TaskGrouper` (scikit-learn style), :func:`group`, :class:`TaskGroups`.

Pipeline: features ``(T, D)`` -> :func:`~stgmtl.grouping.reduce.reduce_features` (exact or
randomized PCA to the components above the noise floor, streamed over column blocks) -> seeded
k-means on that embedding (greedy k-means++ seeding, faiss Lloyd iterations, best of ``n_init``)
-> Lloyd refinement in the full feature space, streamed (``refine="auto"``, whenever the
reduction lost variance) -> fuzzy memberships from the full-space distances. Without refinement
(``refine=False``, a one-shot iterator, or ``method="fcm"``) distances and memberships are those
of the reduced space. ``TaskGroups.centroids`` are always group centres in the reduced space.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator

from stgmtl.grouping.groups import TaskGroups
from stgmtl.grouping.kmeans import KMeansInit, kmeans, refine_full_space, sq_distances
from stgmtl.grouping.membership import _check_m, fuzzy_cmeans, fuzzy_memberships
from stgmtl.grouping.reduce import (
    AUTO_MAX_COMPONENTS,
    ReduceMethod,
    _float_matrix,
    reduce_features,
)

GroupMethod = Literal["kmeans", "fcm", "hard"]
_GROUP_METHODS = ("kmeans", "fcm", "hard")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def unpack_data(
    data: Any,
    task_names: Any,
    feature_kwargs: dict[str, Any] | None,
    n_groups: int | None = None,
) -> tuple[Any, Any]:
    """``(features, task_names)`` of a ``DataMaps``-like object (duck typed), else ``data``.

    ``n_groups`` is passed to ``data.features`` when that method takes it (feature kinds such as
    ``"confusion"`` size their embedding by the number of groups), unless already given.
    """
    if hasattr(data, "features") and hasattr(data, "task_names"):
        if task_names is None:
            task_names = list(data.task_names)
        kwargs = dict(feature_kwargs or {})
        if n_groups is not None and "n_groups" not in kwargs:
            if "n_groups" in inspect.signature(data.features).parameters:
                kwargs["n_groups"] = n_groups
        return data.features(**kwargs), task_names
    return data, task_names


def _task_names(names: Any, n: int) -> list[str]:
    if names is None:
        width = len(str(n - 1))
        return [f"task_{i:0{width}d}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(
            f"task_names has {len(names)} names but the data has {n} tasks (rows); "
            "pass one name per row of the feature matrix"
        )
    if len(set(names)) != n:
        dup = next(x for x in names if names.count(x) > 1)
        raise ValueError(f"task_names must be unique; {dup!r} appears more than once")
    return names


class TaskGrouper(BaseEstimator):
    """Group tasks by their features: reduce -> seeded k-means -> fuzzy memberships.

    Parameters
    ----------
    n_groups : int
        Number of groups ``k`` (``1 <= k <= T``).
    method : {"kmeans", "fcm", "hard"}
        ``"kmeans"`` (default, as STG-MTL): k-means, then one fuzzy membership step.
        ``"fcm"``: full iterative fuzzy c-means started from the k-means centroids.
        ``"hard"``: k-means with one-hot memberships.
    m : float
        Fuzzifier ``> 1`` (STG-MTL: 1.07). Memberships use Euclidean distances.
    n_init : int
        k-means restarts; the lowest inertia wins.
    max_iter : int
        Lloyd iterations per restart (faiss stops earlier when converged).
    init : str
        Seeding: ``"greedy-k-means++"`` (default), ``"k-means++"``, ``"faiss-random"``,
        ``"faiss-k-means++"``.
    reduce : {"auto", "none", "pca", "rpca", "projection"}
        Dimension reduction; see :mod:`stgmtl.grouping.reduce`.
    n_components, projection_dim, n_power_iter, block_size
        Passed to :func:`~stgmtl.grouping.reduce.reduce_features` (with
        ``min_components = max(16, 2 * n_groups)`` for ``n_components="auto"``).
    refine : bool or "auto"
        Refine k-means by Lloyd iterations in the full feature space, streamed over column
        blocks (:func:`~stgmtl.grouping.kmeans.refine_full_space`), and take the memberships
        from full-space distances. ``"auto"``: when the reduction lost variance (``"rpca"``,
        ``"projection"``, truncated ``"pca"``) and the data can be read again (not a one-shot
        iterator). Weak groups that a truncated PCA blurs are recovered this way at the cost of
        a few passes over the data. Not used by ``method="fcm"``.
    refine_max_iter : int
        Maximum full-space passes.
    fcm_max_iter, tol : int, float
        Iteration limit and relative centroid-move tolerance of ``method="fcm"``.
    feature_kwargs : dict, optional
        Passed to ``data.features(**feature_kwargs)`` when fitting a ``DataMaps``.
    random_state : int
        Seed for the projection and the k-means restarts; same seed, same result (bitwise, for
        the same input, thread count and machine).
    n_threads : int, optional
        Threads for faiss (OpenMP) and BLAS during ``fit``. Default: BLAS as configured, faiss
        1 thread for small problems (``T * k * d < 2**24``) else all available cores.
    progress : bool
        Show progress bars over feature blocks.

    Attributes
    ----------
    membership_ : np.ndarray
        ``(T, k)`` float64 memberships.
    labels_ : np.ndarray
        ``(T,)`` int64 argmax groups.
    cluster_centers_ : np.ndarray
        ``(k, d)`` float64 centroids in the reduced space.
    embedding_ : np.ndarray
        ``(T, d)`` float32 reduced features.
    inertia_ : float
    n_iter_ : int
    reduction_ : str
    explained_variance_ratio_ : float
    task_names_ : list[str]
    n_features_in_ : int
    groups_ : TaskGroups
    """

    def __init__(
        self,
        n_groups: int = 10,
        *,
        method: GroupMethod = "kmeans",
        m: float = 1.07,
        n_init: int = 10,
        max_iter: int = 100,
        init: KMeansInit = "greedy-k-means++",
        reduce: ReduceMethod = "auto",
        n_components: int | Literal["auto"] = "auto",
        projection_dim: int = 128,
        n_power_iter: int = 1,
        block_size: int | None = None,
        refine: bool | Literal["auto"] = "auto",
        refine_max_iter: int = 20,
        fcm_max_iter: int = 300,
        tol: float = 1e-6,
        feature_kwargs: dict[str, Any] | None = None,
        random_state: int = 0,
        n_threads: int | None = None,
        progress: bool = True,
    ) -> None:
        self.n_groups = n_groups
        self.method = method
        self.m = m
        self.n_init = n_init
        self.max_iter = max_iter
        self.init = init
        self.reduce = reduce
        self.n_components = n_components
        self.projection_dim = projection_dim
        self.n_power_iter = n_power_iter
        self.block_size = block_size
        self.refine = refine
        self.refine_max_iter = refine_max_iter
        self.fcm_max_iter = fcm_max_iter
        self.tol = tol
        self.feature_kwargs = feature_kwargs
        self.random_state = random_state
        self.n_threads = n_threads
        self.progress = progress

    def _validate(self) -> int:
        k = _positive_int("n_groups", self.n_groups)
        if self.method not in _GROUP_METHODS:
            raise ValueError(f"method must be one of {_GROUP_METHODS}; got {self.method!r}")
        _check_m(self.m)
        if self.refine not in (True, False, "auto"):
            raise ValueError(f"refine must be True, False or 'auto'; got {self.refine!r}")
        if self.refine is True and self.method == "fcm":
            raise ValueError(
                "refine=True is not available with method='fcm' (FCM runs in the "
                "reduced space); use refine='auto' or False"
            )
        for name in ("n_init", "max_iter", "fcm_max_iter", "refine_max_iter"):
            _positive_int(name, getattr(self, name))
        rs = self.random_state
        if isinstance(rs, bool) or not isinstance(rs, (int, np.integer)) or rs < 0:
            raise ValueError(f"random_state must be a non-negative integer; got {rs!r}")
        return k

    def fit(self, X: Any, y: None = None, *, task_names: Any = None) -> TaskGrouper:
        """Group the tasks of ``X``.

        Parameters
        ----------
        X : DataMaps, array-like, torch.Tensor, or iterable of column blocks
            Anything with ``features()`` and ``task_names`` (a ``DataMaps``), a ``(T, D)``
            matrix, or column blocks ``(T, d_b)`` (see :mod:`stgmtl.grouping.reduce`).
        y : None
            Ignored (scikit-learn convention).
        task_names : sequence of str, optional
            One unique name per task; default: ``X.task_names`` or ``task_0``, ``task_1``, ...
        """
        k = self._validate()
        if self.n_threads is None:
            return self._fit(X, k, task_names)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=int(self.n_threads), user_api="blas"):
            return self._fit(X, k, task_names)

    def _fit(self, X: Any, k: int, task_names: Any) -> TaskGrouper:
        X, task_names = unpack_data(X, task_names, self.feature_kwargs, n_groups=k)
        if isinstance(X, (np.ndarray, list, tuple)) or hasattr(X, "detach"):
            X = _float_matrix(X)  # once, without copying float arrays; reused by refinement
        if hasattr(X, "shape") and len(X.shape) == 2:
            self._check_sizes(k, int(X.shape[0]))
        red = reduce_features(
            X,
            method=self.reduce,
            n_components=self.n_components,
            min_components=min(AUTO_MAX_COMPONENTS, max(16, 2 * k)),
            projection_dim=self.projection_dim,
            n_power_iter=self.n_power_iter,
            block_size=self.block_size,
            random_state=int(self.random_state),
            progress=self.progress,
        )
        emb = red.embedding
        n = emb.shape[0]
        self._check_sizes(k, n)
        names = _task_names(task_names, n)
        n_distinct = len(np.unique(emb, axis=0))
        if n_distinct < k:
            raise ValueError(
                f"only {n_distinct} distinct task feature vectors, fewer than n_groups={k}; "
                "lower n_groups or check for duplicated tasks"
            )
        km = kmeans(
            emb,
            k,
            n_init=self.n_init,
            max_iter=self.max_iter,
            init=self.init,
            random_state=int(self.random_state),
            n_threads=self.n_threads,
        )
        centers, d2, n_iter = km.centroids.astype(np.float64), km.sq_distances, km.n_iter
        labels = km.labels
        refined = self._should_refine(X, red.method, red.explained_variance_ratio)
        if refined:
            d2, labels, self.n_refine_iter_ = refine_full_space(
                X,
                labels,
                k,
                max_iter=self.refine_max_iter,
                block_size=self.block_size,
                progress=self.progress,
            )
            onehot = np.zeros((n, k))
            onehot[np.arange(n), labels] = 1.0
            counts = np.maximum(onehot.sum(axis=0), 1.0)
            centers = (onehot.T @ emb.astype(np.float64)) / counts[:, None]
        if self.method == "fcm":
            centers, memb, obj, n_iter = fuzzy_cmeans(
                emb, centers, self.m, max_iter=self.fcm_max_iter, tol=self.tol
            )
            d2 = sq_distances(emb, centers)
            self.objective_ = obj
        elif self.method == "hard":
            memb = np.zeros((n, k))
            memb[np.arange(n), labels] = 1.0
        else:
            memb = fuzzy_memberships(d2, self.m, squared=True)
        self.refined_ = refined
        self.embedding_ = emb
        self.cluster_centers_ = centers
        self.membership_ = memb
        self.inertia_ = float(d2.min(axis=1).sum())
        self.n_iter_ = int(n_iter)
        self.reduction_ = red.method
        self.explained_variance_ratio_ = red.explained_variance_ratio
        self.n_features_in_ = red.n_features_in
        self.task_names_ = names
        self.groups_ = TaskGroups(
            task_names=names,
            membership=memb,
            centroids=centers,
            embedding=emb,
            m=float(self.m),
            method=self.method,
            inertia=self.inertia_,
            reduction=red.method,
            refined=refined,
        )
        self.labels_ = self.groups_.labels
        return self

    def _should_refine(self, data: Any, reduction: str, kept: float) -> bool:
        reiterable = isinstance(data, np.ndarray) or callable(data)
        if self.refine is True:
            if not reiterable:
                raise ValueError(
                    "refine=True reads the data again, but a one-shot iterator of blocks was "
                    "given; pass a callable returning a fresh iterator, or refine='auto'/False"
                )
            return True
        lossy = reduction in ("rpca", "projection") or (reduction == "pca" and kept < 1 - 1e-6)
        return self.refine == "auto" and self.method != "fcm" and reiterable and lossy

    @staticmethod
    def _check_sizes(k: int, n: int) -> None:
        if n < 2:
            what = "data is empty (0 tasks); " if n == 0 else ""
            raise ValueError(f"{what}need at least 2 tasks (rows) to group; got {n}")
        if k > n:
            raise ValueError(f"n_groups={k} exceeds the number of tasks T={n}; use 1 <= k <= T")

    def fit_predict(self, X: Any, y: None = None, *, task_names: Any = None) -> np.ndarray:
        """Fit and return ``labels_`` (the argmax group of every task)."""
        return self.fit(X, task_names=task_names).labels_


def group(
    data: Any,
    k: int = 10,
    *,
    m: float = 1.07,
    random_state: int = 0,
    task_names: Any = None,
    **kwargs: Any,
) -> TaskGroups:
    """Soft-group tasks: ``TaskGrouper(n_groups=k, m=m, random_state=random_state, **kwargs)``.

    Parameters
    ----------
    data : DataMaps, array-like, torch.Tensor, or iterable of column blocks
        See :meth:`TaskGrouper.fit`.
    k : int
        Number of groups.
    m : float
        Fuzzifier ``> 1`` (1.07 as in STG-MTL).
    random_state : int
        Seed; the same seed gives the same groups.
    task_names : sequence of str, optional
        Task names (default: ``data.task_names`` for a ``DataMaps``).
    **kwargs
        Any other :class:`TaskGrouper` parameter (``method``, ``n_init``, ``reduce``, ...).

    Returns
    -------
    TaskGroups
    """
    grouper = TaskGrouper(n_groups=k, m=m, random_state=random_state, **kwargs)
    return grouper.fit(data, task_names=task_names).groups_
