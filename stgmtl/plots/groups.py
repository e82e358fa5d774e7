"""Plots of task groups: a membership heatmap and a 2-D map of the tasks coloured by group.

Figures are drawn on a standalone :class:`matplotlib.figure.Figure` (Agg; pyplot's global state is
never touched) and written atomically to ``path``; the format follows the file suffix.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from stgmtl.grouping.grouper import TaskGroups


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".") or "png"
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        fig.savefig(tmp, format=fmt, bbox_inches="tight", dpi=120)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def group_order(groups: TaskGroups) -> np.ndarray:
    """Task indices ordered by group, then by decreasing membership in that group."""
    return _order(groups.membership, groups.labels)


def _order(membership: np.ndarray, labels: np.ndarray) -> np.ndarray:
    own = membership[np.arange(membership.shape[0]), labels]
    return np.lexsort((-own, labels))


def membership_figure(
    membership: np.ndarray,
    labels: np.ndarray,
    task_names: Sequence[str],
    *,
    max_labels: int = 150,
    cmap: str = "viridis",
    title: str | None = None,
) -> Figure:
    """Heatmap figure of ``(T, k)`` memberships, rows ordered by group (see :func:`group_order`).

    Parameters
    ----------
    membership : np.ndarray
        ``(T, k)`` memberships.
    labels : np.ndarray
        ``(T,)`` group of each task.
    task_names : sequence of str
        Row labels, written when ``T <= max_labels``.
    max_labels : int
        Most rows that get their task's name.
    cmap : str
        Matplotlib colormap.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    membership = np.asarray(membership)
    labels = np.asarray(labels)
    order = _order(membership, labels)
    t, k = membership.shape
    height = min(40.0, max(3.0, 0.18 * t + 1.5)) if t <= max_labels else 8.0
    fig = _new_figure((max(4.0, 0.45 * k + 3.0), height))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(
        membership[order], aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest"
    )
    sizes = np.bincount(labels, minlength=k)
    ax.set_xticks(range(k), [f"{j}\n(n={sizes[j]})" for j in range(k)], fontsize=7)
    if t <= max_labels:
        ax.set_yticks(range(t), [task_names[i] for i in order], fontsize=6)
    else:
        ax.set_ylabel(f"{t} tasks (ordered by group)")
        ax.set_yticks([])
    for b in np.flatnonzero(np.diff(labels[order])) + 0.5:
        ax.axhline(b, color="white", lw=0.8)
    ax.set_xlabel("group")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, label="membership", fraction=0.05)
    fig.tight_layout()
    return fig


def plot_memberships(
    groups: TaskGroups,
    path: str | os.PathLike[str],
    *,
    max_labels: int = 150,
    cmap: str = "viridis",
    title: str | None = None,
) -> Path:
    """Heatmap of the ``(T, k)`` memberships, rows ordered by group, with task names.

    Parameters
    ----------
    groups : TaskGroups
    path : str or PathLike
        Output file (``.png``, ``.pdf``, ``.svg``, ...).
    max_labels : int
        Task names are written on the rows when ``T <= max_labels``.
    cmap : str
        Matplotlib colormap.
    title : str, optional

    Returns
    -------
    Path
        The file written.
    """
    title = title or f"Task memberships (k={groups.k}, m={groups.m:g}, {groups.method})"
    fig = membership_figure(
        groups.membership, groups.labels, groups.task_names,
        max_labels=max_labels, cmap=cmap, title=title,
    )  # fmt: skip
    return _save(fig, path)


def _pca2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D PCA scores of ``x``, with the mean and the axes to project other points."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = vt[:2].T
    if axes.shape[1] < 2:
        axes = np.hstack([axes, np.zeros((axes.shape[0], 2 - axes.shape[1]))])
    return (x - mean) @ axes, mean, axes


def plot_task_map(
    groups: TaskGroups,
    path: str | os.PathLike[str],
    features: Any = None,
    *,
    annotate: bool | None = None,
    title: str | None = None,
    random_state: int = 0,
) -> Path:
    """2-D map of the tasks (first two principal components) coloured by group.

    Parameters
    ----------
    groups : TaskGroups
    path : str or PathLike
        Output file.
    features : array-like or DataMaps, optional
        Features to map instead of the stored reduced embedding (reduced with
        :func:`~stgmtl.grouping.reduce.reduce_features` first). Without features or embedding,
        the memberships themselves are mapped.
    annotate : bool, optional
        Write task names next to the points (default: when ``T <= 60``).
    title : str, optional
    random_state : int
        Seed of the reduction of ``features``.

    Returns
    -------
    Path
        The file written.
    """
    from stgmtl.grouping.grouper import unpack_data
    from stgmtl.grouping.reduce import reduce_features

    centroids = None
    if features is not None:
        x, _ = unpack_data(features, None, None)
        x = reduce_features(x, random_state=random_state).embedding
        if x.shape[0] != groups.num_tasks:
            raise ValueError(f"features has {x.shape[0]} rows; groups has {groups.num_tasks} tasks")
        space = "features"
    elif groups.embedding is not None:
        x, centroids, space = groups.embedding, groups.centroids, "reduced features"
    else:
        x, space = groups.membership, "memberships"
    xy, mean, axes = _pca2(x)
    fig = _new_figure((7.0, 6.0))
    ax = fig.add_subplot(1, 1, 1)
    from matplotlib import colormaps

    palette = colormaps["tab10" if groups.k <= 10 else "tab20"]
    strength = groups.membership.max(axis=1)
    for j in range(groups.k):
        sel = groups.labels == j
        ax.scatter(
            xy[sel, 0],
            xy[sel, 1],
            color=palette(j % palette.N),
            s=18 + 30 * strength[sel],
            alpha=0.85,
            edgecolors="none",
            label=f"group {j} (n={int(sel.sum())})",
        )
    if centroids is not None:
        cxy = (np.asarray(centroids, dtype=np.float64) - mean) @ axes
        ax.scatter(cxy[:, 0], cxy[:, 1], marker="X", s=120, c="black", label="centroids")
    if groups.k <= 20:
        ax.legend(loc="best", fontsize=7, markerscale=0.8)
    if annotate if annotate is not None else groups.num_tasks <= 60:
        for (px, py), name in zip(xy, groups.task_names, strict=True):
            ax.annotate(name, (px, py), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or f"Tasks by group (PCA of {space}, k={groups.k})")
    return _save(fig, path)
