"""The feature stage: from recorded signals to one ``(T, D)`` task-feature matrix for grouping.

Feature kinds live in an explicit registry, :data:`FEATURE_KINDS` (name -> :class:`FeatureKind`),
filled here by listing the built-in kinds; nothing registers itself on import and no signature
is inspected. :func:`task_features` computes a kind; :func:`stgmtl.group` and
:func:`stgmtl.choose_k` both call it with the same explicit arguments (``n_groups`` included),
so the number of groups that ``choose_k`` picks belongs to the feature space that ``group``
clusters.

Built-in kinds:

``"datamap"``
    STG-MTL's feature (:func:`~stgmtl.features.datamap.datamap_features`): each task's
    (confidence, variability) per sample and snapshot, flattened.
``"confusion"``
    The spectral embedding of how strongly each task fires on the other tasks' positives
    (:func:`~stgmtl.features.confusion.confusion_features`); its dimension is the number of
    groups.
"""

from stgmtl.features.confusion import (
    choose_neighbors,
    confusion_affinity,
    confusion_features,
    confusion_matrix,
    neighbor_candidates,
    neighbor_stability,
    says_yes,
)
from stgmtl.features.datamap import datamap_features, standardize_columns
from stgmtl.features.registry import (
    FEATURE_KINDS,
    FeatureKind,
    get_kind,
    register_feature_kind,
    task_features,
)

__all__ = [
    "FEATURE_KINDS",
    "FeatureKind",
    "choose_neighbors",
    "confusion_affinity",
    "confusion_features",
    "confusion_matrix",
    "datamap_features",
    "get_kind",
    "neighbor_candidates",
    "neighbor_stability",
    "register_feature_kind",
    "says_yes",
    "standardize_columns",
    "task_features",
]
