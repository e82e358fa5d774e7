"""Plot comparing methods (grouped models vs baselines) from a per-task metrics table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.figure import Figure

from stgmtl.plots.figure import new_figure
from stgmtl.specialise.metrics import seed_means

__all__ = ["method_comparison_figure"]

_LABELS = {
    "f1": "F1",
    "balanced_accuracy": "balanced accuracy",
    "roc_auc": "ROC AUC",
    "accuracy": "accuracy",
}


def method_comparison_figure(
    table: pl.DataFrame,
    *,
    metrics: Sequence[str] = ("f1", "balanced_accuracy", "roc_auc"),
    methods: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """One panel per metric: per-task values as boxes, per-seed task means as dots.

    Parameters
    ----------
    table : polars.DataFrame
        Columns ``method, seed, task`` and the metrics (as made by
        :func:`stgmtl.specialise.metrics.task_metrics` / ``compare_methods``).
    metrics : sequence of str
        Metric columns, one panel each.
    methods : sequence of str, optional
        Methods in plotting order (default: order of first appearance).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    missing = [c for c in ("method", "seed", *metrics) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    if table.height == 0:
        raise ValueError("table is empty")
    if methods is None:
        methods = list(dict.fromkeys(table["method"].to_list()))
    fig = new_figure((1.0 + (0.9 * len(methods) + 0.6) * len(metrics), 3.8))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    colors = [colormaps["tab10"](i) for i in range(10)]
    means = seed_means(table, metrics)
    for ax, metric in zip(axes[0], metrics, strict=True):
        values = [
            table.filter(pl.col("method") == m)[metric].drop_nans().drop_nulls().to_numpy()
            for m in methods
        ]
        ax.boxplot(values, widths=0.55, showfliers=False, medianprops={"color": "0.3"})
        for i, m in enumerate(methods):
            per_seed = means.filter(pl.col("method") == m)[metric].drop_nulls().to_numpy()
            jitter = np.linspace(-0.12, 0.12, len(per_seed)) if len(per_seed) > 1 else [0.0]
            ax.scatter(
                i + 1 + np.asarray(jitter),
                per_seed,
                color=colors[i % 10],
                zorder=3,
                s=28,
                edgecolor="k",
                linewidth=0.5,
                label="seed mean" if i == 0 else None,
            )
            if len(per_seed):
                ax.text(
                    i + 1,
                    ax.get_ylim()[0],
                    f"{np.mean(per_seed):.3f}",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right")
        ax.set_ylabel(_LABELS.get(metric, metric))
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="upper left", fontsize=8, frameon=False)
    seeds = table["seed"].n_unique()
    fig.suptitle(title or f"per-task test metrics (boxes: tasks; dots: {seeds} seed mean(s))")
    fig.tight_layout()
    return fig
