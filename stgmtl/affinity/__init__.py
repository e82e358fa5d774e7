"""Task-affinity matrices: the :class:`TaskAffinity` object and its verified save/load.

Every affinity signal (TAG lookahead, gradient cosine, Grad-TAG, label statistics, data-map and
confusion affinities) hands over a ``TaskAffinity`` with one convention: ``values[i, j]`` is the
effect of task ``i`` on task ``j``, larger meaning more helpful.
"""

from stgmtl.affinity.core import ORIENTATIONS, TaskAffinity

__all__ = ["ORIENTATIONS", "TaskAffinity"]
