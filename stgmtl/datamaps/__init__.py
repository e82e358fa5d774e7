"""Data maps: the :class:`DataMaps` object, its one statistics formula, parquet and Cartography I/O.

Modules: :mod:`~stgmtl.datamaps.core` (the object), :mod:`~stgmtl.datamaps.stats` (sums to
statistics), :mod:`~stgmtl.datamaps.io` (parquet + manifest), :mod:`~stgmtl.datamaps.cartography`
(Dataset Cartography JSONL). Nothing here imports torch, features, grouping or plotting.
"""

from stgmtl.datamaps.core import RECORDINGS, STATS, DataMaps
from stgmtl.datamaps.stats import moments_to_stats

__all__ = ["RECORDINGS", "STATS", "DataMaps", "moments_to_stats"]
