"""Recording: the data-map recorder, its declared state, and :func:`fit_datamaps`.

Modules: :mod:`~stgmtl.record.state` (fields declared once with their reductions),
:mod:`~stgmtl.record.checks` and :mod:`~stgmtl.record.update` (validated, chunked updates),
:mod:`~stgmtl.record.native` (the optional fused C++ update of binary CPU batches),
:mod:`~stgmtl.record.recorder` (:class:`DataMapRecorder`), :mod:`~stgmtl.record.fit`
(:func:`fit_datamaps` on :func:`stgmtl.loop.train_loop`). Nothing here imports faiss, features,
grouping or plotting.
"""

from stgmtl.record.fit import RECORDER_SETTINGS, DataMapHook, IndexedDataset, fit_datamaps
from stgmtl.record.native import native_status
from stgmtl.record.recorder import DataMapRecorder, datamap_state, distributed_valid_mask

__all__ = [
    "RECORDER_SETTINGS",
    "DataMapHook",
    "DataMapRecorder",
    "IndexedDataset",
    "datamap_state",
    "distributed_valid_mask",
    "fit_datamaps",
    "native_status",
]
