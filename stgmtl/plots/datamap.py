"""The classic data-map scatter: variability (x) against confidence (y), coloured by correctness."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stgmtl._checks import check_random_state
from stgmtl.datamaps import DataMaps
from stgmtl.plots.figure import new_figure

__all__ = ["datamap_figure", "datamap_grid"]


def datamap_figure(
    datamaps: DataMaps,
    *,
    tasks: Sequence[str | int] | str | int | None = None,
    snapshot: int | str = "final",
    max_points: int = 20_000,
    max_tasks: int = 16,
    ncols: int = 4,
    cmap: str = "coolwarm",
    point_size: float = 4.0,
    random_state: Any = 0,
) -> Figure:
    """One data map per task in a grid (save it with :func:`stgmtl.plots.save_figure`).

    Parameters
    ----------
    datamaps : DataMaps
        The data maps to draw.
    tasks : task name, task position, or a list of them, optional
        Tasks to draw (default: all tasks, at most the first ``max_tasks``).
    snapshot : int or "final"
        Draw a snapshot epoch instead of the final state.
    max_points : int
        Draw at most this many samples per task (a seeded random subset).
    max_tasks : int
        Panel limit when ``tasks`` is not given.
    ncols : int
        Panels per row.
    cmap : str
        Matplotlib colour map for correctness in [0, 1].
    point_size : float
        Marker size.
    random_state : None, int, numpy Generator or RandomState
        Seed of the subsampling.

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = list(datamaps.task_names)
    if tasks is None:
        chosen = list(range(min(len(names), max_tasks)))
    else:
        items = [tasks] if isinstance(tasks, str | int) else list(tasks)
        chosen = []
        for item in items:
            if isinstance(item, str):
                if item not in names:
                    raise ValueError(f"tasks: unknown task {item!r}; tasks are {names[:10]}...")
                chosen.append(names.index(item))
            elif 0 <= int(item) < len(names):
                chosen.append(int(item))
            else:
                raise ValueError(f"tasks: position {item} out of range [0, {len(names)})")
    if not chosen:
        raise ValueError("tasks: expected at least one task")
    conf = datamaps.stat("confidence", snapshot)
    var = datamaps.stat("variability", snapshot)
    corr = datamaps.stat("correctness", snapshot)
    n = datamaps.num_samples
    rng = check_random_state("random_state", random_state)
    cols = np.sort(rng.choice(n, size=max_points, replace=False)) if n > max_points else slice(None)

    panels = []
    for t in chosen:
        x, y, c = var[t, cols], conf[t, cols], corr[t, cols]
        ok = np.isfinite(x) & np.isfinite(y)
        panels.append((names[t], x[ok], y[ok], c[ok]))
    when = "final" if snapshot == "final" else f"epoch {snapshot}"
    return datamap_grid(
        panels,
        ncols=ncols,
        cmap=cmap,
        point_size=point_size,
        title=f"Data maps ({when}, "
        f"{datamaps.snapshot_kind if snapshot != 'final' else 'all epochs'})",
    )


def datamap_grid(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    *,
    ncols: int = 4,
    cmap: str = "coolwarm",
    point_size: float = 4.0,
    title: str | None = None,
    panel_size: tuple[float, float] = (2.6, 2.4),
    dpi: int = 100,
) -> Figure:
    """A grid of data-map panels on shared axes, one colour bar for correctness.

    The layout uses fixed margins in inches (no constrained layout, which took half the
    drawing time of a report with many panels).

    Parameters
    ----------
    panels : sequence of (title, variability, confidence, correctness)
        One panel per entry: the 1-D arrays of the samples to draw.
    ncols : int
        Panels per row.
    cmap : str
        Colour map of correctness in [0, 1].
    point_size : float
        Marker size.
    title : str, optional
        Figure title.
    panel_size : (float, float)
        Width and height of one panel in inches.
    dpi : int
        Figure resolution.

    Returns
    -------
    matplotlib.figure.Figure
        Panels first in ``fig.axes`` (unused grid cells hidden), then the colour bar.
    """
    if not panels:
        raise ValueError("panels: expected at least one panel")
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    top = 0.3 + (0.35 if title else 0.0)
    width, height = panel_size[0] * ncols + 1.3, panel_size[1] * nrows + 0.4 + top
    fig = new_figure((width, height), dpi=dpi)
    axes = fig.subplots(
        nrows, ncols, squeeze=False, sharex=True, sharey=True,
        gridspec_kw={"left": 0.55 / width, "right": 1 - 0.95 / width, "bottom": 0.5 / height,
                     "top": 1 - top / height, "wspace": 0.12, "hspace": 0.3},
    ).ravel()  # fmt: skip
    mappable = None
    for ax, (name, x, y, c) in zip(axes, panels, strict=False):
        mappable = ax.scatter(
            x, y, c=c, s=point_size, cmap=cmap, vmin=0.0, vmax=1.0, alpha=0.6, linewidths=0
        )
        ax.set_title(name, fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=6)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.text(0.5, 0.1 / height, "variability", ha="center", fontsize=8)
    fig.text(0.1 / width, 0.5, "confidence", va="center", rotation="vertical", fontsize=8)
    if title:
        fig.suptitle(title, y=1 - 0.08 / height, va="top", fontsize=10)
    if mappable is not None:
        cax = fig.add_axes((1 - 0.75 / width, 0.5 / height, 0.12 / width, 1 - (0.5 + top) / height))
        fig.colorbar(mappable, cax=cax).set_label("correctness", fontsize=8)
        cax.tick_params(labelsize=6)
    return fig
