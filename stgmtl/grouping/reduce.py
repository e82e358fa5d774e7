"""Reduce a per-task feature matrix ``(T, D)`` to a small embedding ``(T, d)`` before clustering.

Data-map features are wide: ``D = samples x snapshots x 2`` reaches millions. Clustering and the
membership step run on a reduced embedding instead, computed in streaming passes over column
blocks, so the ``(T, D)`` matrix is never held twice: a float32 array (or ``np.memmap``) is read
block by block through views, without a copy, and column blocks supplied by a callable or an
iterator are never held at all. Columns are centred block by block (a column's mean only needs that
column), by rank-one corrections rather than a centred copy.

Methods (``method=``)
---------------------
``"none"``
    Cluster the raw features (cast to float32). Chosen by ``"auto"`` when ``D <= n_components``
    (``D <= 128`` for ``n_components="auto"``).
``"pca"``
    Exact principal components. With ``T <= D`` the centred Gram matrix ``X_c X_c^T`` (``T x T``,
    float64) is accumulated over column blocks in one pass and eigendecomposed; with ``T > D`` the
    covariance is used. With an integer ``n_components >= T - 1`` this is *lossless*: ``T`` tasks
    span at most ``T - 1`` affine dimensions, so every task-task and task-centroid distance is
    preserved.
    Chosen by ``"auto"`` when ``T <= 256`` or ``D <= 256``. Costs ``T^2 D`` (one BLAS thread).
``"rpca"``
    Randomized PCA (Halko, Martinsson & Tropp 2011): pass 1 sketches ``Y = X_c Omega`` with a
    seeded Gaussian ``Omega`` (``D x projection_dim``); each further pass applies ``X_c X_c^T`` to
    an orthonormal basis ``Q`` of ``Y`` (``n_power_iter`` extra passes sharpen it); the
    Rayleigh-Ritz step ``eig(Q^T X_c X_c^T Q)`` gives the leading principal-component scores.
    Three passes by default (``n_power_iter=1``), ``5 T D projection_dim`` multiply-adds in
    float32 BLAS. Chosen by
    ``"auto"`` for many tasks *and* many features when the data can be read more than once
    (an array, or a callable returning a fresh iterator of blocks).
``"projection"``
    One pass: the Gaussian sketch ``Y / sqrt(projection_dim)`` (Johnson-Lindenstrauss: squared
    distances are preserved in expectation), then exact PCA of ``Y``. Chosen by ``"auto"`` for a
    one-shot iterator of many tasks. Cheaper but noisier than ``"rpca"``: the noise of all ``D``
    features is folded into the sketch instead of being projected out, so weak group structure
    that PCA recovers can be lost; pass a callable instead of an iterator to get ``"rpca"``.

Number of components: by default (``n_components="auto"``) the principal components whose
variance exceeds the Marchenko-Pastur edge of pure noise are kept (at least ``min_components``,
at most 128). Planted groups occupy about ``k - 1`` directions; keeping many more noise directions
blurs the distances (``benchmarks/grouping.py`` measures it).

The Gaussian matrix is generated in fixed chunks of 1,024 rows seeded by
``(random_state, chunk index)``, so it does not depend on the block size (results agree to
rounding). Distances within the embedding equal those of the full space for ``"none"`` and
lossless ``"pca"`` and approximate them otherwise; :class:`~stgmtl.grouping.grouper.TaskGrouper`
then refines the groups and takes the memberships in the full space (``refine="auto"``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from stgmtl._checks import PROGRESS_DELAY_S, check_choice, check_int, seed_from

__all__ = [
    "AUTO_MAX_COMPONENTS",
    "EXACT_PCA_MAX",
    "Passes",
    "ReduceMethod",
    "ReducedFeatures",
    "MAX_MAGNITUDE",
    "as_float_matrix",
    "check_magnitude",
    "distinct_rows",
    "reduce_features",
    "to_numpy",
]

ReduceMethod = Literal["auto", "none", "pca", "rpca", "projection"]
_METHODS = ("auto", "none", "pca", "rpca", "projection")
AUTO_MAX_COMPONENTS = 128  # upper bound of n_components="auto"
EXACT_PCA_MAX = 256  # "auto" uses exact PCA up to this many tasks or features
_R_CHUNK = 1024  # rows of the projection matrix generated per seed
_BLOCK_BYTES = 64 << 20  # target size of one float32 column block


@dataclass(frozen=True)
class ReducedFeatures:
    """The embedding that clustering runs on.

    Attributes
    ----------
    embedding : np.ndarray
        ``(T, d)`` float32, C-contiguous; centred unless the method is ``"none"``.
    method : str
        ``"none"``, ``"pca"``, ``"rpca"`` or ``"projection"`` (after resolving ``"auto"``).
    n_features_in : int
        ``D``, the number of input features.
    explained_variance_ratio : float
        Share of the variance kept by the PCA step (1.0 for ``"none"``); for ``"rpca"`` and
        ``"projection"`` it is measured within the sketched subspace.
    scale : float
        A power of two: the reduced features are ``scale * embedding``. 1.0 unless their
        magnitude lies outside ``[2**-60, 2**60]``, where float32 squares would underflow or
        overflow (distances in the embedding are then ``scale**2`` times too small).
    """

    embedding: np.ndarray
    method: str
    n_features_in: int
    explained_variance_ratio: float
    scale: float = 1.0


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array without copying when possible.

    Torch tensors are accepted by duck typing (anything with ``.detach`` and ``.cpu``); torch is
    never imported here. float16 / bfloat16 tensors are widened to float32.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        t = x.detach().cpu()
        if str(getattr(t, "dtype", "")) in ("torch.float16", "torch.bfloat16"):
            t = t.float()
        return t.numpy()
    return np.asarray(x)


def as_float_matrix(x: Any, name: str = "data") -> np.ndarray:
    arr = to_numpy(x)
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (tasks, features) matrix; got shape {arr.shape}. "
            "Reshape per-task features to one row per task."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); need at least one task and feature")
    return arr


# Magnitudes: every float32 product of the reduction works on column blocks divided by a power
# of two (exact) when their largest |value| lies outside [2**-40, 2**40], so that squares and
# sums of products stay far inside float32's range; float64 sums hold the true units. Inputs must
# lie within MAX_MAGNITUDE (float64 squares of larger values overflow): grouping is scale-
# invariant, so such features can be divided by a constant first.
MAX_MAGNITUDE = 1e100
_SAFE = (2.0**-40, 2.0**40)


def _block_scale(
    block: np.ndarray,
    col0: int,
    cmin: np.ndarray | None = None,
    cmax: np.ndarray | None = None,
) -> float:
    """Power of two to divide ``block`` by (1.0 when it is safe as it is); checks finiteness.

    ``cmin`` / ``cmax``: the block's column minima / maxima, when the caller has them.
    """
    lo = float(block.min() if cmin is None else cmin.min())  # NaN propagates; no temporary
    hi = float(block.max() if cmax is None else cmax.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        t, j = np.argwhere(~np.isfinite(block))[0]
        raise ValueError(
            f"data contains a non-finite value ({block[t, j]}) at task {t}, feature {col0 + j}; "
            "remove or impute NaN/inf features before grouping"
        )
    top = max(abs(lo), abs(hi))
    if top > MAX_MAGNITUDE:
        raise ValueError(
            f"data: expected feature values of magnitude at most {MAX_MAGNITUDE:g}, got "
            f"{top:g} (feature block from column {col0}); grouping is scale-invariant, so "
            "divide the features by a constant (e.g. their largest value) first"
        )
    if top == 0.0 or _SAFE[0] <= top <= _SAFE[1]:
        return 1.0
    return float(2.0 ** np.round(np.log2(top)))


def check_magnitude(x: np.ndarray, name: str = "data") -> None:
    """Raise a ValueError unless ``x`` is finite with ``max |x| <= MAX_MAGNITUDE``."""
    if x.size == 0:
        return
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    top = max(abs(lo), abs(hi))
    if top > MAX_MAGNITUDE:
        raise ValueError(
            f"{name}: expected feature values of magnitude at most {MAX_MAGNITUDE:g}, got "
            f"{top:g}; grouping is scale-invariant, so divide the features by a constant "
            "(e.g. their largest value) first"
        )


def distinct_rows(emb: np.ndarray, rel: float = 1e-6) -> int:
    """Rows of ``emb`` that differ by more than ``rel`` x its RMS spread (rounding aside).

    Identical tasks reach the embedding with rounding differences (blocked matrix products
    round rows at different positions differently), so exact comparison would count them as
    distinct.
    """
    x = np.asarray(emb, dtype=np.float64)
    xc = x - x.mean(axis=0)
    spread = float(np.sqrt(np.mean(np.einsum("ij,ij->i", xc, xc)))) if xc.size else 0.0
    if spread == 0.0:
        return 1 if len(x) else 0
    return len(np.unique(np.round(xc / (rel * spread)), axis=0))


def _scaled(block: np.ndarray, scale: float) -> np.ndarray:
    return block if scale == 1.0 else block * (1.0 / scale)


def _check_finite(block: np.ndarray, col0: int) -> None:
    _block_scale(block, col0)


def _default_block(n_rows: int) -> int:
    b = max(1, _BLOCK_BYTES // (4 * max(n_rows, 1)))
    return b - b % _R_CHUNK if b >= _R_CHUNK else b


def _iter_blocks(
    data: np.ndarray | Iterable[Any] | Callable[[], Iterable[Any]], block_size: int | None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first column, float block)`` over the columns of ``data``."""
    if isinstance(data, np.ndarray):
        b = block_size or _default_block(data.shape[0])
        for c0 in range(0, data.shape[1], b):
            yield c0, data[:, c0 : c0 + b]
        return
    source = data() if callable(data) else data
    col, n_rows = 0, None
    for i, raw in enumerate(source):
        block = as_float_matrix(raw, f"column block {i}")
        if n_rows is None:
            n_rows = block.shape[0]
        elif block.shape[0] != n_rows:
            raise ValueError(
                f"column block {i} has {block.shape[0]} rows, but earlier blocks had {n_rows}; "
                "every block must hold all tasks (rows) for a range of features (columns)"
            )
        yield col, block
        col += block.shape[1]
    if n_rows is None:
        raise ValueError("data is an empty iterator of column blocks; need at least one block")


def _projection_rows(seed: int, c0: int, c1: int, r: int) -> np.ndarray:
    """Rows ``c0:c1`` of the (unscaled) standard-normal projection matrix, float32."""
    first, last = c0 // _R_CHUNK, (c1 - 1) // _R_CHUNK
    chunks = [
        np.random.default_rng([seed, i]).standard_normal((_R_CHUNK, r), dtype=np.float32)
        for i in range(first, last + 1)
    ]
    rows = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    off = first * _R_CHUNK
    return rows[c0 - off : c1 - off]


def _top_components(
    sym: np.ndarray,
    n_components: int | str,
    *,
    edge: float = 0.0,
    min_components: int = 1,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Leading eigenpairs of a PSD matrix with a deterministic sign; drops null directions.

    With ``n_components="auto"`` the eigenvalues above ``edge`` are kept, clipped to
    ``[min_components, 128]``.
    """
    with threadpool_limits(limits=1, user_api="blas"):  # small: threads only add overhead
        vals, vecs = np.linalg.eigh((sym + sym.T) / 2)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    total = float(np.clip(vals, 0, None).sum())
    if total <= 0 or vals[0] <= 0:
        raise ValueError(
            "all tasks have identical features (every feature is constant across tasks), so "
            "there is no structure to group; check that the data maps were recorded per task"
        )
    keep = int(np.sum(vals > vals[0] * 1e-10))
    if n_components == "auto":
        want = min(max(int(np.sum(vals > edge)), min_components), AUTO_MAX_COMPONENTS)
    else:
        want = int(n_components)
    keep = max(1, min(keep, want))
    vals, vecs = vals[:keep], vecs[:, :keep]
    idx = np.argmax(np.abs(vecs), axis=0)
    signs = np.sign(vecs[idx, np.arange(keep)])
    signs[signs == 0] = 1
    return vals, vecs * signs, float(vals.sum() / total)


def _noise_edge(sumsq: float, n: int, dim: int) -> float:
    """Marchenko-Pastur upper edge ``sigma^2 (sqrt(D) + sqrt(T))^2`` of pure-noise eigenvalues.

    ``sigma^2`` is estimated as the mean squared centred entry (an overestimate when there is
    structure, so the count of eigenvalues above the edge errs on the small side).
    """
    return sumsq / (n * dim) * (np.sqrt(dim) + np.sqrt(n)) ** 2


class Passes:
    """Streaming passes over column blocks; a one-shot iterator allows a single pass.

    Blocks come divided by their power-of-two scale (see ``MAX_MAGNITUDE``): a pass yields
    ``(first column, scaled block, float64 column means of the scaled block, scale)``, and the
    true block is ``scale * scaled block``. The first complete pass also finds the scales, the
    column means, whether any feature varies and every task's centred squared norm
    (``row_norms``, ``sumsq`` their total); later passes reuse them instead of reading the
    blocks for them again. One ``Passes`` can serve several stages (the grouper shares one
    between :func:`reduce_features` and the full-space refinement), so the statistics are
    computed once per fit.
    """

    def __init__(self, data: Any, block_size: int | None, progress: bool) -> None:
        self.data, self.block_size, self.progress = data, block_size, progress
        self.one_shot = not isinstance(data, np.ndarray) and not callable(data)
        self.n_done, self.n_cols, self.varies = 0, 0, False
        self.scales: list[float] = []
        self.means: list[np.ndarray] = []
        self.row_norms: np.ndarray | None = None
        self.complete = False  # the first pass ran to its end: its statistics hold

    @property
    def sumsq(self) -> float:
        """Centred sum of squares of the data read so far: the total of ``row_norms``."""
        return float(self.row_norms.sum()) if self.row_norms is not None else 0.0

    def blocks(self, desc: str) -> Iterator[tuple[int, np.ndarray, np.ndarray, float]]:
        """Yield ``(first column, scaled block, float64 column means, scale)``."""
        if self.one_shot and self.n_done:
            raise RuntimeError("a one-shot iterator of blocks can be read once; pass a callable")
        first = not self.complete
        if first:  # (again, if an earlier first pass was not read to its end)
            self.n_cols, self.varies = 0, False
            self.scales, self.means, self.row_norms = [], [], None
        self.n_done += 1
        it = _iter_blocks(self.data, self.block_size)
        i = -1
        for i, (c0, raw) in enumerate(tqdm(it, desc=desc, unit="block", disable=not self.progress,
                                           leave=False, delay=PROGRESS_DELAY_S)):  # fmt: skip
            if first:
                cmin, cmax = raw.min(axis=0), raw.max(axis=0)  # per column: one pass, no temporary
                self.scales.append(_block_scale(raw, c0, cmin, cmax))
                self.n_cols = c0 + raw.shape[1]
                self.varies = self.varies or bool((cmax != cmin).any())
            elif i >= len(self.scales):
                raise ValueError("the column blocks changed between passes over the data")
            scale = self.scales[i]
            block = _scaled(raw, scale)
            if first:
                mean = block.mean(axis=0, dtype=np.float64)
                self.means.append(mean)
                # every task's centred squared norm, sum_j (x_j - mean_j)^2: the noise level of
                # n_components="auto" (their total) and the refinement's distances
                sq = np.einsum("ij,ij->i", block, block).astype(np.float64)  # scaled: safe
                sq -= 2.0 * (block @ mean.astype(block.dtype)).astype(np.float64)
                sq += float(mean @ mean)
                sq *= scale * scale
                self.row_norms = sq if self.row_norms is None else self.row_norms + sq
            else:
                mean = self.means[i]
            yield c0, block, mean, scale
        if first:
            self.complete = True
        elif i + 1 != len(self.scales):
            raise ValueError("the column blocks changed between passes over the data")


def _gram(passes: Passes) -> np.ndarray:
    gram = None
    # a (T <= projection_dim)-square output gains little from BLAS threads, and threads that
    # wait on each other cost 10x on a busy machine (measured); one thread is the safe choice
    with threadpool_limits(limits=1, user_api="blas"):
        for _, block, mean, scale in passes.blocks("reduce (gram)"):
            b64 = block - mean  # float64, centred
            part = b64 @ b64.T
            if scale != 1.0:
                part *= scale * scale
            gram = part if gram is None else gram + part
    assert gram is not None
    return gram


def _sketch(passes: Passes, seed: int, r: int) -> np.ndarray:
    y = None
    for c0, block, mean, scale in passes.blocks("reduce (sketch)"):
        omega = _projection_rows(seed, c0, c0 + block.shape[1], r)
        b32 = block if block.dtype == np.float32 else block.astype(np.float32)
        part = (b32 @ omega).astype(np.float64) - mean @ omega
        if scale != 1.0:
            part *= scale
        y = part if y is None else y + part
    assert y is not None
    return y


def _power(passes: Passes, q: np.ndarray, i: int) -> np.ndarray:
    """``X_c X_c^T q`` accumulated block by block."""
    q32 = q.astype(np.float32)
    colsum = q.sum(axis=0)
    y = np.zeros_like(q)
    for _, raw, mean, scale in passes.blocks(f"reduce (pass {i})"):
        block = raw if raw.dtype == np.float32 else raw.astype(np.float32)
        p = (block.T @ q32).astype(np.float64) - np.outer(mean, colsum)  # X_c^T q / scale
        part = (block @ p.astype(np.float32)).astype(np.float64) - mean @ p
        if scale != 1.0:
            part *= scale * scale
        y += part
    return y


def reduce_features(
    data: Any,
    *,
    method: ReduceMethod = "auto",
    n_components: int | Literal["auto"] = "auto",
    min_components: int = 16,
    projection_dim: int = 128,
    n_power_iter: int = 1,
    block_size: int | None = None,
    random_state: Any = 0,
    progress: bool = False,
) -> ReducedFeatures:
    """Reduce a ``(T, D)`` task-feature matrix to a ``(T, d)`` float32 embedding.

    Parameters
    ----------
    data : array-like, torch.Tensor, callable, iterable or Passes
        A ``(T, D)`` matrix (numpy, ``np.memmap``, torch; float32 is read without a copy); or a
        callable returning a fresh iterable of column blocks ``(T, d_b)`` (read once per pass);
        or a one-shot iterable of column blocks (read once). Blocks are never concatenated
        (except for ``method="none"``). A :class:`Passes` over a float32 array or a callable
        is used as it is (``block_size`` and ``progress`` are then its own), so a later stage
        given the same ``Passes`` reuses its statistics.
    method : {"auto", "none", "pca", "rpca", "projection"}
        See the module docstring. ``"auto"``: ``"none"`` if ``D <= n_components``; ``"pca"`` if
        ``T <= 256`` or ``D <= 256``; else ``"rpca"``, or ``"projection"``
        for a one-shot iterator.
    n_components : int or "auto"
        Dimension ``d`` kept by PCA (at most ``T - 1`` non-null directions exist). ``"auto"``
        keeps the components whose variance exceeds the Marchenko-Pastur edge of pure noise
        (``sigma^2 (sqrt(D) + sqrt(T))^2``, ``sigma^2`` the mean squared centred entry), at least
        ``min_components`` and at most 128: the group structure lives in a few directions, and
        every extra noise direction blurs the distances k-means sees. An integer
        ``>= T - 1`` makes ``"pca"`` lossless.
    min_components : int
        Lower bound of ``n_components="auto"`` (:class:`~stgmtl.grouping.grouper.TaskGrouper`
        passes ``max(16, 2 k)``).
    projection_dim : int
        Width of the Gaussian sketch (``"rpca"``, ``"projection"``); also caps the number of
        components these methods can return.
    n_power_iter : int
        Extra passes of ``"rpca"`` (power iterations). One is the default: on planted groups
        near the noise floor (``benchmarks/grouping.py``) a 128-wide sketch with one power
        iteration found the groups (ARI 1.0) where a 256-wide sketch without any did not.
    block_size : int, optional
        Columns per block for array input (default: about 64 MiB of float32 per block).
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        Seed of the Gaussian sketch (scikit-learn convention; an int is used as the seed itself).
    progress : bool
        Show a tqdm bar over column blocks.

    Returns
    -------
    ReducedFeatures
    """
    check_choice("method", method, _METHODS)
    check_int("min_components", min_components, low=1)
    check_int("projection_dim", projection_dim, low=1)
    if n_components != "auto":
        check_int("n_components", n_components, low=1)
    check_int("n_power_iter", n_power_iter, low=0)
    if block_size is not None:
        check_int("block_size", block_size, low=1)
    seed = seed_from("random_state", random_state)
    shared = data if isinstance(data, Passes) else None
    if shared is not None:
        data = shared.data
    if isinstance(data, (np.ndarray, list, tuple)) or hasattr(data, "detach"):
        data = as_float_matrix(data)
    n_rows = None
    if shared is not None and shared.one_shot:
        raise ValueError("reduce_features: a Passes over a one-shot iterator cannot be shared")
    if not isinstance(data, np.ndarray):  # peek at the first block for T
        it = iter(data() if callable(data) else data)
        first = next(it, None)
        if first is not None:
            n_rows = as_float_matrix(first, "column block 0").shape[0]
            if not callable(data):
                data = itertools.chain([first], it)
    passes = shared if shared is not None else Passes(data, block_size, progress)
    if method == "auto":
        raw_max = AUTO_MAX_COMPONENTS if n_components == "auto" else int(n_components)
        method = _auto_method(data, n_rows, passes.one_shot, raw_max)
    if method == "rpca" and passes.one_shot:
        raise ValueError(
            "method='rpca' reads the data more than once, but a one-shot iterator of blocks "
            "allows one pass: pass a callable returning a fresh iterator, or method='projection'"
        )

    def kw(edge: float) -> dict[str, Any]:
        return {"edge": edge, "min_components": int(min_components)}

    if method == "none":
        parts = [(block, scale) for _, block, _, scale in passes.blocks("reduce")]
        if all(scale == 1.0 for _, scale in parts):
            x = np.hstack([b for b, _ in parts]) if len(parts) > 1 else parts[0][0]
        else:
            x = np.hstack([b.astype(np.float64) * scale for b, scale in parts])
        if not passes.varies:
            _top_components(np.zeros((1, 1)), 1)  # raises the "identical features" error
        return _reduced(x, "none", x.shape[1], 1.0)

    if method == "pca":
        if isinstance(data, np.ndarray) and data.shape[0] > data.shape[1]:
            _check_finite(data, 0)  # T > D: covariance route, D is small by construction
            xc = data - data.mean(axis=0, dtype=np.float64)
            edge = _noise_edge(float((xc**2).sum()), *data.shape)
            vals, vecs, ratio = _top_components(xc.T @ xc, n_components, **kw(edge))
            return _reduced(xc @ vecs, "pca", data.shape[1], ratio)
        gram = _gram(passes)
        if not passes.varies:
            gram[:] = 0.0  # rounding aside, every task is the same
        edge = _noise_edge(float(np.trace(gram)), gram.shape[0], passes.n_cols)
        vals, vecs, ratio = _top_components(gram, n_components, **kw(edge))
        return _reduced(vecs * np.sqrt(vals), "pca", passes.n_cols, ratio)

    y = _sketch(passes, seed, projection_dim)
    if not passes.varies:
        _top_components(np.zeros((1, 1)), 1)  # raises the "identical features" error
    if method == "projection":
        y /= np.sqrt(projection_dim)
        y -= y.mean(axis=0)
        edge = _noise_edge(passes.sumsq, y.shape[0], passes.n_cols)
        vals, vecs, ratio = _top_components(y.T @ y, n_components, **kw(edge))
        return _reduced(y @ vecs, "projection", passes.n_cols, ratio)
    for i in range(n_power_iter + 1):
        with threadpool_limits(limits=1, user_api="blas"):
            q = np.linalg.qr(y)[0]
        y = _power(passes, q, i + 2)
    edge = _noise_edge(passes.sumsq, y.shape[0], passes.n_cols)
    vals, vecs, ratio = _top_components(q.T @ y, n_components, **kw(edge))  # raises if constant
    return _reduced(q @ (vecs * np.sqrt(vals)), "rpca", passes.n_cols, ratio)


def _auto_method(data: Any, n_rows: int | None, one_shot: bool, n_components: int) -> ReduceMethod:
    if isinstance(data, np.ndarray):
        n, dim = data.shape
        if dim <= n_components:
            return "none"
        if n <= EXACT_PCA_MAX or dim <= EXACT_PCA_MAX:
            return "pca"
        return "rpca"
    if n_rows is not None and n_rows <= EXACT_PCA_MAX:  # blocks: D is unknown until read
        return "pca"
    return "projection" if one_shot else "rpca"


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _reduced(emb: np.ndarray, method: str, n_in: int, ratio: float) -> ReducedFeatures:
    """The float32 embedding, divided by a power of two if float32 squares would misbehave."""
    top = float(np.max(np.abs(emb))) if emb.size else 0.0
    scale = 1.0
    if top > 0.0 and not 2.0**-60 <= top <= 2.0**60:
        scale = float(2.0 ** np.round(np.log2(top)))
        emb = emb / scale
    return ReducedFeatures(_f32(emb), method, n_in, ratio, scale)
