"""Figures of the payoff harness: one per table of a :class:`~stgmtl.payoff.PayoffResult`.

* :func:`truth_figure`: the measured pair gains (source rows, recipient columns), pairs within
  the noise floor faded;
* :func:`signal_scores_figure`: each signal's rank correlation with the gains (bootstrap
  interval), top-1 partner accuracy and sign accuracy, controls in grey;
* :func:`payoff_figure`: each source's test payoff against one model per ``(k, architecture)``;
* :func:`soft_hard_figure`: soft minus hard membership weighting;
* :func:`selection_figure`: the budgeted selection's validation and test gain per budget.

Each returns a standalone :class:`matplotlib.figure.Figure`; nothing is computed here that the
tables do not hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stgmtl.plots.figure import new_figure

__all__ = [
    "payoff_figure",
    "selection_figure",
    "signal_scores_figure",
    "soft_hard_figure",
    "truth_figure",
]

_GREY = "0.6"


def _need(table: pl.DataFrame, cols: Sequence[str], name: str) -> None:
    missing = [c for c in cols if c not in table.columns]
    if missing or table.height == 0:
        raise ValueError(
            f"{name}: expected a non-empty table with columns {list(cols)}, got "
            f"{table.height} rows missing {missing}"
        )


def truth_figure(truth: pl.DataFrame, task_names: Sequence[str], *, split: str = "test") -> Figure:
    """Heatmap of the mean pair gains on ``split``; undecided pairs (within the floor) faded."""
    _need(truth, ("source", "target", "gain", "decided", "split"), "truth")
    rows = truth.filter(pl.col("split") == split)
    names = list(task_names)
    pos = {n: i for i, n in enumerate(names)}
    t = len(names)
    g = np.full((t, t), np.nan)
    d = np.zeros((t, t), dtype=bool)
    for s, r, v, dec in rows.select("source", "target", "gain", "decided").iter_rows():
        g[pos[s], pos[r]] = v
        d[pos[s], pos[r]] = dec
    lim = float(np.nanmax(np.abs(g))) if np.isfinite(g).any() else 1.0
    fig = new_figure((max(4.5, 0.35 * t + 2.5), max(4.0, 0.35 * t + 1.8)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(g, cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest")
    faded = np.where(np.isfinite(g) & ~d, 1.0, np.nan)
    ax.imshow(faded, cmap="Greys", vmin=0, vmax=1.6, alpha=0.55, interpolation="nearest")
    if t <= 40:
        ax.set_xticks(range(t), names, rotation=90, fontsize=7)
        ax.set_yticks(range(t), names, fontsize=7)
    ax.set_xlabel("recipient task")
    ax.set_ylabel("partner (source) task")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="relative loss decrease")
    ax.set_title(
        f"pair gain over single-task training ({split}); grey: within the noise floor", fontsize=9
    )
    fig.tight_layout()
    return fig


def signal_scores_figure(scores: pl.DataFrame) -> Figure:
    """Per signal: Spearman with its interval; top-1 and sign accuracy. Controls in grey."""
    _need(
        scores,
        ("signal", "spearman", "spearman_lo", "spearman_hi", "top1", "sign_accuracy"),
        "scores",
    )
    s = scores.sort("spearman", descending=True, nulls_last=True)
    names = s["signal"].to_list()
    control = s["control"].to_list() if "control" in s.columns else [False] * len(names)
    colors = [_GREY if c else colormaps["tab10"](0) for c in control]
    y = np.arange(len(names))
    fig = new_figure((9.0, 0.45 * len(names) + 1.6))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    rho = np.asarray(s["spearman"].to_list(), dtype=float)
    lo = np.asarray(s["spearman_lo"].to_list(), dtype=float)
    hi = np.asarray(s["spearman_hi"].to_list(), dtype=float)
    ax1.barh(y, rho, color=colors)
    ax1.errorbar(
        rho,
        y,
        xerr=[np.maximum(rho - lo, 0), np.maximum(hi - rho, 0)],
        fmt="none",
        ecolor="k",
        capsize=3,
        lw=0.8,
    )
    ax1.axvline(0, color="k", lw=0.6)
    ax1.set_yticks(y, names)
    ax1.invert_yaxis()
    ax1.set_xlabel("Spearman rho with measured gains (95% bootstrap interval)")
    width = 0.38
    ax2.barh(y - width / 2, s["top1"].to_list(), height=width, label="top-1 partner", color="C2")
    ax2.barh(
        y + width / 2,
        s["sign_accuracy"].fill_nan(None).fill_null(0.0).to_list(),
        height=width,
        label="sign accuracy",
        color="C1",
    )
    ax2.axvline(0.5, color="k", lw=0.6, ls=":")
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("accuracy")
    ax2.legend(fontsize=8, loc="lower right")
    fig.suptitle("How well each signal predicts training-together gains (grey: controls)")
    fig.tight_layout()
    return fig


def payoff_figure(
    summary: pl.DataFrame, *, split: str = "test", metric: str = "gain_vs_one"
) -> Figure:
    """Per ``(architecture, k)`` panel: each source's mean (+- std over seeds) ``metric``."""
    _need(summary, ("source", "k", "architecture", "split", metric), "summary")
    s = summary.filter(
        (pl.col("split") == split) & (pl.col("k") > 1) & ~pl.col("source").is_in(["single-task"])
    )
    if s.height == 0:
        raise ValueError("summary: no grouped partitions to draw")
    panels = s.select("architecture", "k").unique().sort("architecture", "k").rows()
    fig = new_figure((4.0 * min(len(panels), 3), 3.6 * int(np.ceil(len(panels) / 3))))
    axes = np.atleast_1d(fig.subplots(int(np.ceil(len(panels) / 3)), min(len(panels), 3)))
    axes = axes.ravel()
    std_col = f"{metric}_std"
    for ax, (arch, k) in zip(axes, panels, strict=False):
        p = s.filter((pl.col("architecture") == arch) & (pl.col("k") == k)).sort(metric)
        y = np.arange(p.height)
        vals = np.asarray(p[metric].to_list(), dtype=float)
        err = (
            np.nan_to_num(np.asarray(p[std_col].to_list(), dtype=float))
            if std_col in p.columns
            else None
        )
        ax.barh(
            y,
            vals,
            xerr=err,
            color=[_color(n) for n in p["source"].to_list()],
            capsize=2,
        )
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.axvline(0, color="k", lw=0.6)
        ax.set_yticks(y, p["source"].to_list(), fontsize=7)
        ax.set_title(f"{arch}, k = {k}", fontsize=9)
        ax.set_xlabel(metric.replace("_", " ") + f" ({split})", fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(
        "Payoff of each grouping against one model for all tasks (0 = one model; "
        "grey: controls, green: validation truth, orange: exhaustive)"
    )
    fig.tight_layout()
    return fig


def _color(source: str) -> str:
    if source in ("random", "label", "random partition"):
        return _GREY
    if source.startswith("truth"):
        return "C2"
    if source.startswith("exhaustive"):
        return "C1"
    return "C0"


def soft_hard_figure(table: pl.DataFrame) -> Figure:
    """Soft minus hard payoff per source and k, on validation and test."""
    _need(table, ("source", "k", "split", "soft_minus_hard"), "table")
    labels = [
        f"{s} k={k}"
        for s, k in table.filter(pl.col("split") == "test").select("source", "k").rows()
    ]
    fig = new_figure((6.5, 0.35 * len(labels) + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(labels))
    for i, split in enumerate(("val", "test")):
        v = table.filter(pl.col("split") == split)["soft_minus_hard"].to_list()
        if len(v) == len(labels):
            ax.barh(y + (i - 0.5) * 0.38, v, height=0.38, label=split, color=f"C{i}")
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("gain vs one model: soft minus hard memberships")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def selection_figure(per_budget: pl.DataFrame) -> Figure:
    """Validation and test gain of the budgeted selection at each budget level."""
    _need(per_budget, ("budget", "val_gain", "test_gain"), "per_budget")
    fig = new_figure((5.0, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    b = per_budget["budget"].to_list()
    ax.plot(b, per_budget["val_gain"].to_list(), "o-", label="validation (chooses)")
    ax.plot(b, per_budget["test_gain"].to_list(), "s--", label="test (reports)")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("budget (parameters of one model)")
    ax.set_ylabel("mean relative loss decrease vs one model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
