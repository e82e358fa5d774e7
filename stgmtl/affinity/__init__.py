"""Task-affinity matrices: the :class:`TaskAffinity` object, its verified save/load, and the free
signals read from data maps (:mod:`stgmtl.affinity.signals`).

Every affinity signal (TAG lookahead, gradient cosine, Grad-TAG, label statistics, data-map and
confusion affinities) hands over a ``TaskAffinity`` with one convention: ``values[i, j]`` is the
effect of task ``i`` on task ``j``, larger meaning more helpful.
"""

from stgmtl.affinity.core import ORIENTATIONS, UNOBSERVED_RULE, TaskAffinity, fill_unobserved
from stgmtl.affinity.signals import (
    FREE_SIGNALS,
    LABEL_STATISTICS,
    colearning_signal,
    confusion_matrix,
    confusion_signal,
    datamap_signal,
    free_signals,
    label_signal,
    says_yes,
)

__all__ = [
    "FREE_SIGNALS",
    "LABEL_STATISTICS",
    "ORIENTATIONS",
    "TaskAffinity",
    "UNOBSERVED_RULE",
    "colearning_signal",
    "confusion_matrix",
    "confusion_signal",
    "datamap_signal",
    "fill_unobserved",
    "free_signals",
    "label_signal",
    "says_yes",
]
