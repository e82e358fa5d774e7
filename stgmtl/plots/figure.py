"""The two helpers every plot shares: a standalone Agg figure, and one atomic save.

Plots never touch pyplot's global state: each builds a :class:`matplotlib.figure.Figure` with
its own Agg canvas (:func:`new_figure`) and returns it; the caller saves it with
:func:`save_figure` (or embeds it, as the HTML report does).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stgmtl._io import atomic_file

__all__ = ["new_figure", "save_figure"]


def new_figure(figsize: tuple[float, float], dpi: int = 100) -> Figure:
    """A standalone figure on an Agg canvas (no pyplot, no global state)."""
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(
    fig: Figure, path: str | os.PathLike[str], *, dpi: int = 120, **kwargs: Any
) -> Path:
    """Write ``fig`` to ``path`` atomically; the format follows the suffix (PNG without one).

    The folder is created. Extra keyword arguments go to ``Figure.savefig``.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, **kwargs)
    return path
