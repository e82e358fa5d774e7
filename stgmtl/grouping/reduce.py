"""Reduce a per-task feature matrix ``(T, D)`` to a small embedding ``(T, d)`` before clustering.

Data-map features are wide: ``D = samples x snapshots x 2`` reaches millions. Clustering and the
membership step run on a reduced embedding instead, computed in one streaming pass over column
blocks, so the ``(T, D)`` matrix is never held twice (a float32 array is read block by block without
a copy; an iterator of column blocks is never held at all).

Methods (``method=``)
---------------------
``"none"``
    Cluster the raw features (cast to float32). Chosen by ``"auto"`` when ``D <= n_components``.
``"pca"``
    Exact principal components. With ``T <= D`` the centred Gram matrix ``X_c X_c^T`` (``T x T``,
    float64) is accumulated over column blocks and eigendecomposed; with ``T > D`` the covariance is
    used. When ``n_components >= T - 1`` this is *lossless*: the ``T`` tasks span at most ``T - 1``
    affine dimensions, so every distance between tasks and every centroid is preserved exactly.
    Chosen by ``"auto"`` when ``T <= projection_dim`` or ``D <= projection_dim``.
``"projection"``
    A seeded Gaussian random projection to ``projection_dim`` columns (Johnson-Lindenstrauss;
    squared distances are preserved in expectation), accumulated over column blocks in float32,
    followed by exact PCA of the projected matrix to ``n_components``. Chosen by ``"auto"``
    otherwise (many tasks *and* many features). The projection matrix is generated in fixed
    chunks of 1,024 rows seeded by ``(random_state, chunk index)``, so the result does not depend
    on the block size.

Distances, centroids and memberships are computed in the reduced space: they equal those of the
full space for ``"none"`` and for lossless ``"pca"``, and approximate them otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

ReduceMethod = Literal["auto", "none", "pca", "projection"]
_METHODS = ("auto", "none", "pca", "projection")
_R_CHUNK = 1024  # rows of the projection matrix generated per seed
_BLOCK_BYTES = 64 << 20  # target size of one float32 column block


@dataclass(frozen=True)
class ReducedFeatures:
    """The embedding that clustering runs on.

    Attributes
    ----------
    embedding : np.ndarray
        ``(T, d)`` float32, C-contiguous; centred for ``"pca"`` and ``"projection"``.
    method : str
        ``"none"``, ``"pca"`` or ``"projection"`` (the method used, after resolving ``"auto"``).
    n_features_in : int
        ``D``, the number of input features.
    explained_variance_ratio : float
        Share of the variance kept by the PCA step (1.0 for ``"none"``); for ``"projection"`` it
        is measured in the projected space.
    """

    embedding: np.ndarray
    method: str
    n_features_in: int
    explained_variance_ratio: float


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


def _float_matrix(x: Any, name: str = "data") -> np.ndarray:
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


def _check_finite(block: np.ndarray, col0: int) -> None:
    if not np.isfinite(block).all():
        t, j = np.argwhere(~np.isfinite(block))[0]
        raise ValueError(
            f"data contains a non-finite value ({block[t, j]}) at task {t}, feature {col0 + j}; "
            "remove or impute NaN/inf features before grouping"
        )


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
        block = _float_matrix(raw, f"column block {i}")
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


def _centred32(block: np.ndarray) -> np.ndarray:
    mean = block.mean(axis=0, dtype=np.float64)
    return np.subtract(block, mean, dtype=np.float32)


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


def _top_components(sym: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Leading eigenpairs of a PSD matrix with a deterministic sign; drops null directions."""
    with threadpool_limits(limits=1, user_api="blas"):  # small: threads only add overhead
        vals, vecs = np.linalg.eigh(sym)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    total = float(np.clip(vals, 0, None).sum())
    if total <= 0 or vals[0] <= 0:
        raise ValueError(
            "all tasks have identical features (every feature is constant across tasks), so "
            "there is no structure to group; check that the data maps were recorded per task"
        )
    keep = int(np.sum(vals > vals[0] * 1e-10))
    keep = max(1, min(keep, n_components))
    vals, vecs = vals[:keep], vecs[:, :keep]
    idx = np.argmax(np.abs(vecs), axis=0)
    signs = np.sign(vecs[idx, np.arange(keep)])
    signs[signs == 0] = 1
    return vals, vecs * signs, float(vals.sum() / total)


def reduce_features(
    data: Any,
    *,
    method: ReduceMethod = "auto",
    n_components: int = 128,
    projection_dim: int = 256,
    block_size: int | None = None,
    random_state: int = 0,
    progress: bool = False,
) -> ReducedFeatures:
    """Reduce a ``(T, D)`` task-feature matrix to a ``(T, d)`` float32 embedding.

    Parameters
    ----------
    data : array-like, torch.Tensor, iterable or callable
        A ``(T, D)`` matrix (numpy, ``np.memmap``, torch; float32 is read without a copy), or an
        iterable of column blocks ``(T, d_b)`` (or a callable returning one), for inputs too large
        to hold: blocks are consumed once and never concatenated (except for ``method="none"``).
    method : {"auto", "none", "pca", "projection"}
        See the module docstring. ``"auto"``: ``"none"`` if ``D <= n_components``; ``"pca"`` if
        ``T <= projection_dim`` or ``D <= projection_dim``; else ``"projection"``.
    n_components : int
        Dimension ``d`` kept by PCA (at most ``T - 1`` non-null directions exist).
    projection_dim : int
        Width of the random projection, and the size threshold of ``"auto"``.
    block_size : int, optional
        Columns per block for array input (default: about 64 MiB of float32 per block).
    random_state : int
        Seed of the random projection.
    progress : bool
        Show a tqdm bar over column blocks.

    Returns
    -------
    ReducedFeatures
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
    for name, val in (("n_components", n_components), ("projection_dim", projection_dim)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be a positive integer; got {val!r}")
    if block_size is not None and (not isinstance(block_size, (int, np.integer)) or block_size < 1):
        raise ValueError(f"block_size must be a positive integer or None; got {block_size!r}")
    streaming = not (isinstance(data, (np.ndarray, list, tuple)) or hasattr(data, "detach"))
    if not streaming:
        data = _float_matrix(data)
    if method == "auto":
        if streaming:
            method = "projection"  # refined to "pca" below once T is known
        else:
            n, dim = data.shape
            method = (
                "none"
                if dim <= n_components
                else "pca"
                if (n <= projection_dim or dim <= projection_dim)
                else "projection"
            )
        auto = True
    else:
        auto = False
    blocks = _iter_blocks(data, block_size)
    bar = tqdm(blocks, desc="reduce", unit="block", disable=not progress, leave=False)

    if method == "none":
        parts = []
        for c0, block in bar:
            _check_finite(block, c0)
            parts.append(np.asarray(block, dtype=np.float32))
        x = np.ascontiguousarray(np.hstack(parts) if len(parts) > 1 else parts[0])
        _check_not_constant(x)
        return ReducedFeatures(x, "none", x.shape[1], 1.0)

    if method == "pca" and not streaming and data.shape[0] > data.shape[1]:
        _check_finite(data, 0)  # T > D: covariance route, D is small by construction
        xc = data - data.mean(axis=0, dtype=np.float64)
        vals, vecs, ratio = _top_components(xc.T @ xc, n_components)
        emb = xc @ vecs
        return ReducedFeatures(_f32(emb), "pca", data.shape[1], ratio)

    gram: np.ndarray | None = None
    proj: np.ndarray | None = None
    n_cols = 0
    for c0, block in bar:
        _check_finite(block, c0)
        n_rows = block.shape[0]
        n_cols = c0 + block.shape[1]
        if gram is None and proj is None:
            if auto and streaming and n_rows <= projection_dim:
                method = "pca"
            if method == "pca":
                gram = np.zeros((n_rows, n_rows))
            else:
                proj = np.zeros((n_rows, projection_dim))
        bc = _centred32(block)
        if gram is not None:
            b64 = bc.astype(np.float64)
            gram += b64 @ b64.T
        else:
            r = _projection_rows(random_state, c0, n_cols, projection_dim)
            proj += bc @ r
    if gram is not None:
        vals, vecs, ratio = _top_components(gram, n_components)
        return ReducedFeatures(_f32(vecs * np.sqrt(vals)), "pca", n_cols, ratio)
    assert proj is not None
    proj /= np.sqrt(projection_dim)
    proj -= proj.mean(axis=0)
    vals, vecs, ratio = _top_components(proj.T @ proj, n_components)
    return ReducedFeatures(_f32(proj @ vecs), "projection", n_cols, ratio)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_not_constant(x: np.ndarray) -> None:
    if np.all(x == x[:1]):
        raise ValueError(
            "all tasks have identical features (every feature is constant across tasks), so "
            "there is no structure to group; check that the data maps were recorded per task"
        )
