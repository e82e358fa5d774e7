"""Figures: functions that take stgmtl's objects (or arrays) and return a matplotlib ``Figure``.

Save any of them with :func:`save_figure` (atomic; format from the suffix). Presentation only:
plots read results and never compute them (no reduction or grouping is re-run here).
"""

from stgmtl.plots.affinity import affinity_figure, affinity_order
from stgmtl.plots.datamap import datamap_figure, datamap_grid
from stgmtl.plots.evaluation import method_comparison_figure
from stgmtl.plots.figure import new_figure, save_figure
from stgmtl.plots.groups import group_order, membership_figure, memberships_figure, task_map_figure
from stgmtl.plots.payoff import (
    payoff_figure,
    selection_figure,
    signal_scores_figure,
    soft_hard_figure,
    truth_figure,
)

__all__ = [
    "affinity_figure",
    "affinity_order",
    "datamap_figure",
    "datamap_grid",
    "group_order",
    "membership_figure",
    "memberships_figure",
    "method_comparison_figure",
    "new_figure",
    "payoff_figure",
    "save_figure",
    "selection_figure",
    "signal_scores_figure",
    "soft_hard_figure",
    "task_map_figure",
    "truth_figure",
]
