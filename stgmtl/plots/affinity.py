"""Heatmap of a task-affinity matrix: rows are sources, columns recipients.

``values[i, j]`` (row ``i``, column ``j``) is the effect of task ``i`` on task ``j``, larger =
more helpful; a diverging colour map centred on 0 shows help (red) and harm (blue). The
diagonal (self-affinity, often far larger than any pair) is masked by default so that it does
not set the colour scale; unobserved pairs (NaN) are grey. Given groups (``TaskGroups`` or a
``TaskSelection``: anything with ``task_names`` and ``labels``), tasks are ordered by group and
the groups are framed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from stgmtl.plots.figure import new_figure

__all__ = ["affinity_figure", "affinity_order"]


def affinity_order(task_names: list[str], groups: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``(order, labels_in_order)``: task indices grouped by ``groups.labels`` (stable), or
    task order and ``None`` without groups."""
    t = len(task_names)
    if groups is None:
        return np.arange(t), None
    names = [str(n) for n in getattr(groups, "task_names", [])]
    labels = np.asarray(getattr(groups, "labels", []))
    if sorted(names) != sorted(task_names) or labels.shape != (len(names),):
        raise ValueError(
            f"groups: expected groups (task_names, labels) of the affinity's {t} tasks, got "
            f"{len(names)} tasks"
        )
    label_of = dict(zip(names, labels.tolist(), strict=True))
    lab = np.array([label_of[n] for n in task_names])
    order = np.argsort(lab, kind="stable")
    return order, lab[order]


def affinity_figure(
    affinity: Any,
    groups: Any = None,
    *,
    diagonal: bool = False,
    max_labels: int = 60,
    cmap: str = "RdBu_r",
    title: str | None = None,
) -> Figure:
    """Heatmap figure of a ``(T, T)`` affinity (sources in rows, recipients in columns).

    Parameters
    ----------
    affinity : TaskAffinity
        Or anything with ``task_names`` and a ``(T, T)`` ``values``; ``signal`` is used in the
        default title when present.
    groups : TaskGroups or TaskSelection, optional
        Order the tasks by group (``labels``; for a selection, the serving network) and frame
        the groups.
    diagonal : bool
        Draw the diagonal (self-affinity) too; by default it is masked.
    max_labels : int
        Most tasks whose names are written on the axes.
    cmap : str
        Diverging colour map, centred on 0.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = [str(n) for n in affinity.task_names]
    values = np.array(affinity.values, dtype=np.float64)
    t = len(names)
    if values.shape != (t, t):
        raise ValueError(f"affinity: expected values of shape ({t}, {t}), got {values.shape}")
    order, labels = affinity_order(names, groups)
    shown = values[np.ix_(order, order)]
    if not diagonal:
        np.fill_diagonal(shown, np.nan)
    finite = shown[np.isfinite(shown)]
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    side = min(14.0, max(4.0, 0.22 * t + 2.5)) if t <= max_labels else 9.0
    fig = new_figure((side + 1.2, side))
    ax = fig.add_subplot(1, 1, 1)
    colours = colormaps[cmap].with_extremes(bad="#d9d9d9")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=colours, vmin=-vmax, vmax=vmax,
                   interpolation="nearest")  # fmt: skip
    if t <= max_labels:
        size = 7 if t <= 30 else 5
        ax.set_xticks(range(t), [names[i] for i in order], rotation=90, fontsize=size)
        ax.set_yticks(range(t), [names[i] for i in order], fontsize=size)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if labels is not None:
        for b in np.flatnonzero(np.diff(labels)) + 0.5:
            ax.axhline(b, color="black", lw=1.0)
            ax.axvline(b, color="black", lw=1.0)
    ax.set_xlabel("recipient task j")
    ax.set_ylabel("source task i")
    signal = getattr(affinity, "signal", None)
    ax.set_title(title or f"{signal + ' ' if signal else ''}affinity: effect of row i on column j",
                 fontsize=10)  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="affinity (larger = more helpful)")
    fig.tight_layout()
    return fig
