"""stgmtl: decide which classification tasks should be trained together.

Pipeline: record data maps during one multi-task run (:class:`DataMapRecorder`,
:func:`fit_datamaps`) -> :class:`DataMaps` -> soft task groups (:func:`group`,
:class:`TaskGrouper`) -> grouped training and honest evaluation.

Names are imported lazily, so that ``import stgmtl`` is cheap and grouping never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "DataMapRecorder": "stgmtl.recorder",
    "fit_datamaps": "stgmtl.fit",
    "IndexedDataset": "stgmtl.fit",
    "DataMaps": "stgmtl.datamaps",
    "group": "stgmtl.grouping.grouper",
    "TaskGrouper": "stgmtl.grouping.grouper",
    "TaskGroups": "stgmtl.grouping.groups",
    "choose_k": "stgmtl.grouping.choose_k",
    "fuzzy_memberships": "stgmtl.grouping.membership",
}

__all__ = [
    "DataMapRecorder",
    "DataMaps",
    "IndexedDataset",
    "TaskGrouper",
    "TaskGroups",
    "__version__",
    "choose_k",
    "fit_datamaps",
    "fuzzy_memberships",
    "group",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stgmtl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from stgmtl.datamaps import DataMaps
    from stgmtl.fit import IndexedDataset, fit_datamaps
    from stgmtl.grouping.choose_k import choose_k
    from stgmtl.grouping.grouper import TaskGrouper, group
    from stgmtl.grouping.groups import TaskGroups
    from stgmtl.grouping.membership import fuzzy_memberships
    from stgmtl.recorder import DataMapRecorder
