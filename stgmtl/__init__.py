"""stgmtl: decide which classification tasks should be trained together.

Pipeline, one plain object handed to the next: record (:class:`DataMapRecorder`,
:func:`fit_datamaps`) -> :class:`DataMaps` -> task features (:mod:`stgmtl.features`) -> soft task
groups (:func:`group`, :class:`TaskGrouper`, :class:`TaskGroups`) or selected networks from a
task affinity (:func:`select`, :class:`TaskSelection`) -> grouped training and honest
evaluation (:mod:`stgmtl.specialise`) -> figures, report, command line.

Names are imported lazily, so that ``import stgmtl`` is cheap and grouping never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stgmtl._lazy import lazy_exports
from stgmtl._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "DataMapRecorder": "stgmtl.record",
    "fit_datamaps": "stgmtl.record",
    "record_affinity": "stgmtl.record",
    "IndexedDataset": "stgmtl.record",
    "distributed_valid_mask": "stgmtl.record",
    "DataMaps": "stgmtl.datamaps",
    "task_features": "stgmtl.features",
    "group": "stgmtl.grouping",
    "TaskGrouper": "stgmtl.grouping",
    "TaskGroups": "stgmtl.grouping",
    "TaskAffinity": "stgmtl.affinity",
    "choose_k": "stgmtl.grouping",
    "fuzzy_memberships": "stgmtl.grouping",
    # selection (begin)
    "select": "stgmtl.grouping.selection",
    "TaskSelection": "stgmtl.grouping.selection",
    "tag_select": "stgmtl.grouping.selection",
    "standley_select": "stgmtl.grouping.selection",
    "best_partition": "stgmtl.grouping.selection",
    # selection (end)
    # the payoff harness (issue 12)
    "run_payoff": "stgmtl.payoff",
    "recommend": "stgmtl.payoff",
    "Recommendation": "stgmtl.payoff",
    "PayoffResult": "stgmtl.payoff",
    "Splits": "stgmtl.payoff",
}

__all__ = [
    "DataMapRecorder",
    "DataMaps",
    "IndexedDataset",
    "PayoffResult",
    "Recommendation",
    "Splits",
    "TaskAffinity",
    "TaskGrouper",
    "TaskGroups",
    "TaskSelection",
    "__version__",
    "best_partition",
    "choose_k",
    "distributed_valid_mask",
    "fit_datamaps",
    "fuzzy_memberships",
    "group",
    "recommend",
    "record_affinity",
    "run_payoff",
    "select",
    "standley_select",
    "tag_select",
    "task_features",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from stgmtl.affinity import TaskAffinity
    from stgmtl.datamaps import DataMaps
    from stgmtl.features import task_features
    from stgmtl.grouping import TaskGrouper, TaskGroups, choose_k, fuzzy_memberships, group
    from stgmtl.grouping.selection import (
        TaskSelection,
        best_partition,
        select,
        standley_select,
        tag_select,
    )
    from stgmtl.payoff import PayoffResult, Recommendation, Splits, recommend, run_payoff
    from stgmtl.record import (
        DataMapRecorder,
        IndexedDataset,
        distributed_valid_mask,
        fit_datamaps,
        record_affinity,
    )
