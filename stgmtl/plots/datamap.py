"""The classic data-map scatter: variability (x) against confidence (y), coloured by correctness."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from stgmtl.datamaps import DataMaps

__all__ = ["plot_datamap"]


def plot_datamap(
    datamaps: DataMaps,
    path: str | Path,
    *,
    tasks: Sequence[str | int] | str | int | None = None,
    snapshot: int | str = "final",
    max_points: int = 20_000,
    max_tasks: int = 16,
    ncols: int = 4,
    cmap: str = "coolwarm",
    point_size: float = 4.0,
    random_state: int = 0,
    dpi: int = 120,
) -> Figure:
    """Draw one data map per task in a grid and save it to ``path``.

    Parameters
    ----------
    datamaps : DataMaps
        The data maps to draw.
    path : str or Path
        Output image file (format from the suffix, e.g. ``.png``, ``.pdf``).
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
    random_state : int
        Seed of the subsampling.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure  # no pyplot: Agg canvas, no global state

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
    rng = np.random.default_rng(random_state)
    cols = np.sort(rng.choice(n, size=max_points, replace=False)) if n > max_points else slice(None)

    ncols = max(1, min(ncols, len(chosen)))
    nrows = math.ceil(len(chosen) / ncols)
    fig = Figure(figsize=(3.6 * ncols + 0.8, 3.3 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    mappable = None
    for ax, t in zip(axes, chosen, strict=False):
        x, y, c = var[t, cols], conf[t, cols], corr[t, cols]
        ok = np.isfinite(x) & np.isfinite(y)
        mappable = ax.scatter(
            x[ok], y[ok], c=c[ok], s=point_size, cmap=cmap, vmin=0.0, vmax=1.0, linewidths=0
        )
        ax.set_title(names[t], fontsize=9)
        ax.set_xlabel("variability")
        ax.set_ylabel("confidence")
        ax.set_ylim(-0.02, 1.02)
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[: len(chosen)].tolist(), label="correctness")
    when = "final" if snapshot == "final" else f"epoch {snapshot}"
    fig.suptitle(
        f"Data maps ({when}, {datamaps.snapshot_kind if snapshot != 'final' else 'all epochs'})"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return fig
