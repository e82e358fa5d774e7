"""Soft task groups: :class:`TaskGrouper` (scikit-learn style, on a matrix) and :func:`group`.

:func:`group` is the one-call entry point: it takes a feature matrix or a recorded signal
(``DataMaps``), computes the task features through the feature stage
(:func:`stgmtl.features.task_features`, with ``n_groups=k``) and fits a :class:`TaskGrouper`.
Pipeline of the grouper: features ``(T, D)`` -> :func:`~stgmtl.grouping.reduce.reduce_features`
(exact or randomized PCA to the components above the noise floor, streamed over column blocks)
-> seeded k-means on that embedding (greedy k-means++ seeding, faiss Lloyd iterations, best of
``n_init``) -> Lloyd refinement in the full feature space, streamed (``refine="auto"``, whenever
the reduction lost variance) -> fuzzy memberships from the full-space distances. Without
refinement (``refine=False``, a one-shot iterator, or ``method="fcm"``) distances and memberships
are those of the reduced space. ``TaskGroups.centroids`` are always group centres in the reduced
space.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator

from stgmtl._checks import (
    RANDOM_STATE,
    Instance,
    Interval,
    Options,
    check_names,
    fail,
    seed_from,
    validate_params,
)
from stgmtl.features import FEATURE_KINDS, task_features
from stgmtl.grouping.groups import TaskGroups
from stgmtl.grouping.kmeans import (
    KMeansInit,
    kmeans,
    refine_block_size,
    refine_full_space,
    sq_distances,
)
from stgmtl.grouping.membership import fuzzy_cmeans, fuzzy_memberships
from stgmtl.grouping.reduce import (
    AUTO_MAX_COMPONENTS,
    Passes,
    ReduceMethod,
    as_float_matrix,
    distinct_rows,
    reduce_features,
)

__all__ = ["PROGRESS_MIN_VALUES", "GroupMethod", "TaskGrouper", "feature_matrix", "group"]

GroupMethod = Literal["kmeans", "fcm", "hard"]
#: Feature matrices smaller than this many values are grouped without progress bars (well
#: under a second of work: a bar would only flicker).
PROGRESS_MIN_VALUES = 2**24
_GROUP_METHODS = ("kmeans", "fcm", "hard")


def _old_kind_spelling(
    features: str | None, feature_kwargs: dict[str, Any] | None
) -> tuple[str | None, dict[str, Any] | None]:
    """Round 1's ``feature_kwargs={"kind": ...}`` as ``features=...``, with a
    ``DeprecationWarning`` (an error when both name a kind)."""
    if not feature_kwargs or "kind" not in feature_kwargs:
        return features, feature_kwargs
    rest = {k: v for k, v in feature_kwargs.items() if k != "kind"}
    kind = feature_kwargs["kind"]
    if features is not None:
        raise fail("feature_kwargs", "no 'kind' key (the kind is the features= argument, given "
                   f"here as {features!r})", feature_kwargs)  # fmt: skip
    warnings.warn(
        f"feature_kwargs={{'kind': {kind!r}}} is deprecated since stgmtl 0.2; use "
        f"features={kind!r} (see CHANGELOG.md)",
        DeprecationWarning,
        stacklevel=4,
    )
    return kind, rest or None


def feature_matrix(
    data: Any,
    n_groups: int | None,
    *,
    features: str | None = None,
    feature_kwargs: dict[str, Any] | None = None,
    task_names: Any = None,
) -> tuple[Any, Any]:
    """``(X, task_names)`` to group: features of a recorded signal, or ``data`` as it is.

    A recorded signal (an instance of a registered feature kind's input type, e.g.
    ``DataMaps`` or ``TaskAffinity``) goes through :func:`stgmtl.features.task_features` with
    kind ``features`` (default: the kind for its type, ``"datamap"`` or ``"affinity"``),
    options ``feature_kwargs`` and ``n_groups``; its task names are used unless given. Anything
    else is taken as a feature matrix (or column blocks).
    """
    features, feature_kwargs = _old_kind_spelling(features, feature_kwargs)
    inputs = tuple({k.input_type for k in FEATURE_KINDS.values()})
    if isinstance(data, inputs):
        names = list(getattr(data, "task_names")) if task_names is None else task_names  # noqa: B009
        return task_features(data, features, n_groups=n_groups, **(feature_kwargs or {})), names
    if features not in (None, "datamap") or feature_kwargs:
        raise fail(
            "features",
            "the default (no feature options) when data is already a feature matrix",
            features if features not in (None, "datamap") else feature_kwargs,
        )
    return data, task_names


def _is_sparse(x: Any) -> bool:
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


def _dense_real(x: Any) -> Any:
    """Refuse sparse and complex input, convert numeric object arrays (scikit-learn's rules)."""
    if _is_sparse(x):
        raise TypeError(
            "X: expected a dense (T, D) matrix, got a sparse matrix (Sparse data was passed, "
            "but dense data is required); call .toarray() or pass column blocks"
        )
    if x.is_complex() if hasattr(x, "is_complex") else np.iscomplexobj(x):
        raise ValueError(
            "X: expected real numbers, got complex values (Complex data not supported)"
        )
    if isinstance(x, np.ndarray) and x.dtype == object:
        try:
            return x.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise fail(
                "X", "numbers (argument must be a string or a number)", x.dtype, error=TypeError
            ) from exc
    if isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == 0:
        raise ValueError(
            f"X: expected at least one feature, got 0 feature(s) (shape={x.shape}) while a "
            "minimum of 1 is required."
        )
    return x


def _task_names(names: Any, n: int) -> list[str]:
    if names is None:
        width = len(str(n - 1))
        return [f"task_{i:0{width}d}" for i in range(n)]
    return check_names("task_names", names, n)


_SHARED_BLOCK_BYTES = 256 << 20  # largest float32 column block of a grouper's shared passes


def _shared_passes(X: Any, block_size: int | None, progress: bool) -> Any:
    """One :class:`Passes` for the reduction and the refinement, or ``X`` (a one-shot iterator).

    Shared, the first pass's statistics (column means, scales, per-task norms) are computed
    once per fit instead of once per stage. Array blocks follow the refinement's layout (at
    most ~16 blocks, each adds a ``(T, k)`` product there), capped at 256 MiB of float32.
    """
    if isinstance(X, np.ndarray):
        if block_size is None:
            cap = max(1, _SHARED_BLOCK_BYTES // (4 * max(int(X.shape[0]), 1)))
            block_size = min(refine_block_size(X.shape), cap)
        return Passes(X, block_size, progress)
    if callable(X):
        return Passes(X, block_size, progress)
    return X


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
    n_init : int or "auto"
        k-means restarts; the lowest inertia wins. ``"auto"`` (default): 10, fewer for large
        problems (:func:`~stgmtl.grouping.kmeans.auto_n_init`: one Lloyd iteration of all
        restarts within about 2**31 multiply-adds), where swap rounds repair the seeding.
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
    random_state : None, int, numpy Generator or RandomState
        Seed for the projection and the k-means restarts; the same int gives the same result
        (bitwise, for the same input, thread count and machine); ``None`` is not reproducible.
    n_threads : int, optional
        Threads for faiss (OpenMP) and BLAS during ``fit``. Default: BLAS as configured, faiss
        1 thread for small problems (``T * k * d < 2**24``) else all available cores.
    progress : bool
        Show progress bars over feature blocks (only for inputs of at least 2**24 values).
    device : {"cpu", "cuda", "auto"}
        Where faiss runs k-means: ``"cuda"`` needs faiss with GPU support (the ``stgmtl[gpu]``
        extra, ``faiss-gpu``) and a GPU, ``"auto"`` uses a GPU when faiss sees one. The
        reduction, seeding, swaps and memberships run on the CPU either way.

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
        n_init: int | Literal["auto"] = "auto",
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
        random_state: Any = 0,
        n_threads: int | None = None,
        progress: bool = True,
        device: Literal["cpu", "cuda", "auto"] = "cpu",
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
        self.random_state = random_state
        self.n_threads = n_threads
        self.progress = progress
        self.device = device

    _parameter_constraints: dict[str, list[Any]] = {
        "n_groups": [Interval(int, 1)],
        "method": [Options(_GROUP_METHODS)],
        "m": [Interval(float, 1.0, low_open=True)],
        "n_init": [Options(("auto",)), Interval(int, 1)],
        "max_iter": [Interval(int, 1)],
        "init": [Options(("greedy-k-means++", "k-means++", "faiss-random", "faiss-k-means++"))],
        "reduce": [Options(("auto", "none", "pca", "rpca", "projection"))],
        "n_components": [Options(("auto",)), Interval(int, 1)],
        "projection_dim": [Interval(int, 1)],
        "n_power_iter": [Interval(int, 0)],
        "block_size": [Options((None,)), Interval(int, 1)],
        "refine": [Options((True, False, "auto"))],
        "refine_max_iter": [Interval(int, 1)],
        "fcm_max_iter": [Interval(int, 1)],
        "tol": [Interval(float, 0.0)],
        "random_state": [RANDOM_STATE],
        "n_threads": [Options((None,)), Interval(int, 1)],
        "progress": [Instance((bool,), "True or False")],
        "device": [Options(("cpu", "cuda", "auto"))],
    }

    def _validate(self) -> int:
        validate_params(self.get_params(), self._parameter_constraints)
        if self.refine is True and self.method == "fcm":
            raise fail(
                "refine",
                "'auto' or False with method='fcm' (FCM runs in the reduced space)",
                self.refine,
            )
        return int(self.n_groups)

    def fit(self, X: Any, y: None = None, *, task_names: Any = None) -> TaskGrouper:
        """Group the tasks (rows) of the feature matrix ``X``.

        Parameters
        ----------
        X : array-like, torch.Tensor, callable or iterable of column blocks
            A ``(T, D)`` feature matrix, or column blocks ``(T, d_b)`` (see
            :mod:`stgmtl.grouping.reduce`). To group recorded signals such as ``DataMaps``,
            use :func:`stgmtl.group` or compute features with
            :func:`stgmtl.features.task_features` first.
        y : None
            Ignored (scikit-learn convention).
        task_names : sequence of str, optional
            One unique name per task; default ``task_0``, ``task_1``, ...

        Returns
        -------
        TaskGrouper
            ``self``, with the fitted attributes set.
        """
        k = self._validate()
        if isinstance(X, tuple({kind.input_type for kind in FEATURE_KINDS.values()})):
            raise fail(
                "X",
                "a (T, D) feature matrix or column blocks; group recorded signals with "
                "stgmtl.group(data, k) or compute stgmtl.features.task_features(data) first",
                type(X).__name__,
                error=TypeError,
            )
        seed = seed_from("random_state", self.random_state)
        if self.n_threads is None:
            return self._fit(X, k, task_names, seed)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=int(self.n_threads), user_api="blas"):
            return self._fit(X, k, task_names, seed)

    def _fit(self, X: Any, k: int, task_names: Any, seed: int) -> TaskGrouper:
        if isinstance(X, (np.ndarray, list, tuple)) or hasattr(X, "detach") or _is_sparse(X):
            X = as_float_matrix(_dense_real(X))  # once; float arrays are not copied
        progress = self.progress
        if hasattr(X, "shape") and len(X.shape) == 2:
            self._check_sizes(k, int(X.shape[0]))
            # a bar only for work long enough to watch (streamed blocks: size unknown, shown)
            progress = progress and int(X.shape[0]) * int(X.shape[1]) >= PROGRESS_MIN_VALUES
        passes = _shared_passes(X, self.block_size, progress)
        red = reduce_features(
            passes,
            method=self.reduce,
            n_components=self.n_components,
            min_components=min(AUTO_MAX_COMPONENTS, max(16, 2 * k)),
            projection_dim=self.projection_dim,
            n_power_iter=self.n_power_iter,
            block_size=self.block_size,
            random_state=seed,
            progress=progress,
        )
        emb = red.embedding
        n = emb.shape[0]
        self._check_sizes(k, n)
        names = _task_names(task_names, n)
        n_distinct = distinct_rows(emb)
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
            random_state=seed,
            n_threads=self.n_threads,
            device=self.device,
        )
        # distances in the reduced features' units (the embedding is reduced / red.scale)
        centers, n_iter = km.centroids.astype(np.float64), km.n_iter
        d2 = km.sq_distances if red.scale == 1.0 else km.sq_distances * red.scale**2
        labels = km.labels
        refined = self._should_refine(X, red.method, red.explained_variance_ratio)
        if refined:
            d2, labels, self.n_refine_iter_ = refine_full_space(
                passes,
                labels,
                k,
                max_iter=self.refine_max_iter,
                block_size=self.block_size,
                progress=progress,
            )
            counts = np.maximum(np.bincount(labels, minlength=k), 1)
            sums = np.zeros((k, emb.shape[1]))
            np.add.at(sums, labels, emb.astype(np.float64))
            centers = sums / counts[:, None]  # group means of the embedding
        if self.method == "fcm":
            centers, memb, obj, n_iter = fuzzy_cmeans(
                emb, centers, self.m, max_iter=self.fcm_max_iter, tol=self.tol
            )
            d2 = sq_distances(emb, centers) * red.scale**2
            self.objective_ = obj * red.scale**2
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
            raise ValueError(f"{what}need at least 2 tasks (rows) to group; got n_samples={n}")
        if k > n:
            raise ValueError(f"n_groups={k} exceeds the number of tasks T={n}; use 1 <= k <= T")

    def fit_predict(self, X: Any, y: None = None, *, task_names: Any = None) -> np.ndarray:
        """Fit and return ``labels_`` (the argmax group of every task)."""
        return self.fit(X, task_names=task_names).labels_


def group(
    data: Any,
    k: int = 10,
    *,
    features: str | None = None,
    feature_kwargs: dict[str, Any] | None = None,
    m: float = 1.07,
    random_state: Any = 0,
    task_names: Any = None,
    **kwargs: Any,
) -> TaskGroups:
    """Soft-group tasks into ``k`` groups: features, then ``TaskGrouper(n_groups=k, ...)``.

    Parameters
    ----------
    data : DataMaps, TaskAffinity, array-like, torch.Tensor, callable or column blocks
        Recorded signals (``DataMaps``, ``TaskAffinity``), whose task features are computed
        with :func:`stgmtl.features.task_features` (kind ``features``, ``n_groups=k``), or a
        ``(T, D)`` feature matrix / column blocks as :meth:`TaskGrouper.fit` takes.
    k : int
        Number of groups.
    features : str, optional
        Feature kind for recorded signals: ``"datamap"`` (STG-MTL's; the default for
        ``DataMaps``), ``"confusion"``, or ``"affinity"`` (the default for ``TaskAffinity``; see
        :data:`stgmtl.features.FEATURE_KINDS`).
    feature_kwargs : dict, optional
        Options of the feature kind.
    m : float
        Fuzzifier ``> 1`` (1.07 as in STG-MTL).
    random_state : None, int, numpy Generator or RandomState
        Seed; the same int gives the same groups.
    task_names : sequence of str, optional
        Task names (default: ``data.task_names`` for recorded signals).
    **kwargs
        Any other :class:`TaskGrouper` parameter (``method``, ``n_init``, ``reduce``, ...).

    Returns
    -------
    TaskGroups
    """
    grouper = TaskGrouper(n_groups=k, m=m, random_state=random_state, **kwargs)
    grouper._validate()
    x, names = feature_matrix(
        data, k, features=features, feature_kwargs=feature_kwargs, task_names=task_names
    )
    return grouper.fit(x, task_names=names).groups_
