"""Plots of task groups: a membership heatmap and a 2-D map of the tasks coloured by group.

Each function returns a standalone :class:`matplotlib.figure.Figure` (Agg; pyplot's global state
is never touched); save it with :func:`stgmtl.plots.save_figure`. Nothing here re-runs a
reduction or a grouping: the task map draws the embedding stored in the groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from stgmtl.grouping import TaskGroups
from stgmtl.plots.figure import new_figure

__all__ = ["group_order", "membership_figure", "memberships_figure", "task_map_figure"]


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
    fig = new_figure((max(4.0, 0.45 * k + 3.0), height))
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


def memberships_figure(
    groups: TaskGroups,
    *,
    max_labels: int = 150,
    cmap: str = "viridis",
    title: str | None = None,
) -> Figure:
    """Heatmap of a grouping's ``(T, k)`` memberships, rows ordered by group, with task names.

    Parameters
    ----------
    groups : TaskGroups
    max_labels : int
        Task names are written on the rows when ``T <= max_labels``.
    cmap : str
        Matplotlib colormap.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    title = title or f"Task memberships (k={groups.n_groups}, m={groups.m:g}, {groups.method})"
    return membership_figure(
        groups.membership, groups.labels, groups.task_names,
        max_labels=max_labels, cmap=cmap, title=title,
    )  # fmt: skip


def _pca2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D PCA scores of ``x``, with the mean and the axes to project other points."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = vt[:2].T
    if axes.shape[1] < 2:
        axes = np.hstack([axes, np.zeros((axes.shape[0], 2 - axes.shape[1]))])
    return (x - mean) @ axes, mean, axes


def task_map_figure(
    groups: TaskGroups,
    *,
    annotate: bool | None = None,
    title: str | None = None,
) -> Figure:
    """2-D map of the tasks (first two principal components of the stored embedding, or of the
    memberships when there is none), coloured by group, with the centroids.

    Parameters
    ----------
    groups : TaskGroups
    annotate : bool, optional
        Write task names next to the points (default: when ``T <= 60``).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    centroids = None
    if groups.embedding is not None:
        x, centroids, space = groups.embedding, groups.centroids, "reduced features"
    else:
        x, space = groups.membership, "memberships"
    xy, mean, axes = _pca2(x)
    fig = new_figure((7.0, 6.0))
    ax = fig.add_subplot(1, 1, 1)
    k = groups.n_groups
    palette = colormaps["tab10" if k <= 10 else "tab20"]
    strength = groups.membership.max(axis=1)
    for j in range(k):
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
    if k <= 20:
        ax.legend(loc="best", fontsize=7, markerscale=0.8)
    if annotate if annotate is not None else groups.num_tasks <= 60:
        for (px, py), name in zip(xy, groups.task_names, strict=True):
            ax.annotate(name, (px, py), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or f"Tasks by group (PCA of {space}, k={k})")
    fig.tight_layout()
    return fig
