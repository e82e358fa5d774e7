"""Recording: the data-map recorder, its declared state, and :func:`fit_datamaps`.

Modules: :mod:`~stgmtl.record.state` (fields declared once with their reductions),
:mod:`~stgmtl.record.compact` (the default 8-byte state layout and its error bound),
:mod:`~stgmtl.record.checks` and :mod:`~stgmtl.record.update` (validated, chunked updates),
:mod:`~stgmtl.record.native` (the optional fused C++ update of binary CPU batches),
:mod:`~stgmtl.record.recorder` (:class:`DataMapRecorder`), :mod:`~stgmtl.record.fit`
(:func:`fit_datamaps` on :func:`stgmtl.loop.train_loop`); the affinity probes
(:mod:`~stgmtl.record.probe` protocol, :mod:`~stgmtl.record.tag`, :mod:`~stgmtl.record.cosine`,
:mod:`~stgmtl.record.ptg`, :mod:`~stgmtl.record.gradtag`, :mod:`~stgmtl.record.functional`) and
:func:`record_affinity` (:mod:`~stgmtl.record.affinity`). Nothing here imports faiss, features,
grouping or plotting.
"""

from stgmtl.record.affinity import PROBE_SIGNALS, SIGNALS, make_probe, record_affinity
from stgmtl.record.cosine import GradCosineProbe, RepCosineProbe
from stgmtl.record.fit import RECORDER_SETTINGS, DataMapHook, IndexedDataset, fit_datamaps
from stgmtl.record.gradtag import GradTAGCollector, grad_tag_affinity
from stgmtl.record.native import native_status
from stgmtl.record.probe import AFFINITY_STATE, AffinityProbe
from stgmtl.record.ptg import PTGProbe
from stgmtl.record.recorder import DataMapRecorder, datamap_state, distributed_valid_mask
from stgmtl.record.tag import TAGProbe, preview_step

__all__ = [
    "AFFINITY_STATE",
    "PROBE_SIGNALS",
    "RECORDER_SETTINGS",
    "SIGNALS",
    "AffinityProbe",
    "DataMapHook",
    "DataMapRecorder",
    "GradCosineProbe",
    "GradTAGCollector",
    "IndexedDataset",
    "PTGProbe",
    "RepCosineProbe",
    "TAGProbe",
    "datamap_state",
    "distributed_valid_mask",
    "fit_datamaps",
    "grad_tag_affinity",
    "make_probe",
    "native_status",
    "preview_step",
    "record_affinity",
]
