"""Task grouping: reduce features, seeded k-means, fuzzy memberships, choosing k.

Modules: :mod:`~stgmtl.grouping.reduce`, :mod:`~stgmtl.grouping.kmeans`,
:mod:`~stgmtl.grouping.membership`, :mod:`~stgmtl.grouping.grouper`,
:mod:`~stgmtl.grouping.groups`, :mod:`~stgmtl.grouping.choose_k`, and
:mod:`~stgmtl.grouping.selection` (TAG, Standley and exhaustive selection from a task affinity).
Nothing here imports torch training code or plotting.
"""

from stgmtl.grouping.choose_k import ChooseKResult, choose_k
from stgmtl.grouping.grouper import TaskGrouper, feature_matrix, group
from stgmtl.grouping.groups import TaskGroups
from stgmtl.grouping.membership import fuzzy_memberships
from stgmtl.grouping.selection import TaskSelection, select

__all__ = [
    "ChooseKResult",
    "TaskGrouper",
    "TaskGroups",
    "TaskSelection",
    "choose_k",
    "feature_matrix",
    "fuzzy_memberships",
    "group",
    "select",
]
