"""The registry of feature kinds and :func:`task_features`, the one way features are computed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stgmtl._checks import fail
from stgmtl.affinity import TaskAffinity
from stgmtl.datamaps import DataMaps
from stgmtl.features.affinity import affinity_features
from stgmtl.features.confusion import confusion_features
from stgmtl.features.datamap import datamap_features, standardize_columns

__all__ = [
    "FEATURE_KINDS",
    "FeatureKind",
    "default_kind",
    "get_kind",
    "register_feature_kind",
    "task_features",
]


@dataclass(frozen=True)
class FeatureKind:
    """One kind of task feature.

    Attributes
    ----------
    name : str
        Registry key.
    compute : callable
        ``compute(data, **options) -> (T, D)`` float array; with ``uses_n_groups`` it also
        receives ``n_groups=``.
    input_type : type
        The type of ``data`` it reads (``DataMaps`` for the built-in kinds).
    uses_n_groups : bool
        Whether the feature depends on the number of groups it is for.
    description : str
        One line for ``--help`` texts and error messages.
    """

    name: str
    compute: Callable[..., np.ndarray]
    input_type: type
    uses_n_groups: bool
    description: str


#: The registry of feature kinds: name -> :class:`FeatureKind`.
FEATURE_KINDS: dict[str, FeatureKind] = {
    "datamap": FeatureKind(
        "datamap", datamap_features, DataMaps, False,
        "STG-MTL's flattened [confidence, variability] per sample and snapshot",
    ),
    "confusion": FeatureKind(
        "confusion", confusion_features, DataMaps, True,
        "spectral embedding of cross-task confusion (binary tasks)",
    ),
    "affinity": FeatureKind(
        "affinity", affinity_features, TaskAffinity, True,
        "spectral embedding of a task-affinity matrix (TaskAffinity)",
    ),
}  # fmt: skip


def register_feature_kind(kind: FeatureKind, *, replace: bool = False) -> FeatureKind:
    """Add a feature kind to :data:`FEATURE_KINDS` (``replace=True`` to overwrite a name)."""
    if not isinstance(kind, FeatureKind):
        raise fail("kind", "a FeatureKind", kind, error=TypeError)
    if kind.name in FEATURE_KINDS and not replace:
        raise fail("kind.name", "a name not yet registered (or replace=True)", kind.name)
    FEATURE_KINDS[kind.name] = kind
    return kind


def default_kind(data: Any) -> str:
    """The first registered kind that reads ``data`` (``"datamap"`` for ``DataMaps``,
    ``"affinity"`` for ``TaskAffinity``); ``"datamap"`` for anything else."""
    for name, kind in FEATURE_KINDS.items():
        if isinstance(data, kind.input_type):
            return name
    return "datamap"


def get_kind(name: str) -> FeatureKind:
    """The registered kind ``name``."""
    kind = FEATURE_KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise fail("kind", f"one of {sorted(FEATURE_KINDS)}", name)
    return kind


def task_features(
    data: Any,
    kind: str | None = None,
    *,
    n_groups: int | None = None,
    standardize: bool = False,
    **options: Any,
) -> np.ndarray:
    """Per-task feature matrix ``(T, D)`` of kind ``kind``, computed from ``data``.

    Parameters
    ----------
    data : DataMaps or TaskAffinity
        The recorded signal the kind reads (see :data:`FEATURE_KINDS`).
    kind : str, optional
        A registered kind: ``"datamap"``, ``"confusion"`` (both read ``DataMaps``) or
        ``"affinity"`` (reads a ``TaskAffinity``). Default: :func:`default_kind` of ``data``.
    n_groups : int, optional
        The number of groups the features are for; passed to kinds that depend on it (and
        required by them unless they have a default).
    standardize : bool
        Z-score every feature column across tasks (columns with zero spread are centred).
    **options
        Options of the kind (see its function's docstring).

    Returns
    -------
    np.ndarray
        ``(T, D)`` float32 (C-contiguous).
    """
    if kind is None:
        kind = default_kind(data)
    spec = get_kind(kind)
    if not isinstance(data, spec.input_type):
        raise fail(
            "data",
            f"a {spec.input_type.__name__} for feature kind {kind!r}",
            type(data).__name__,
            error=TypeError,
        )
    if spec.uses_n_groups and n_groups is not None:
        options["n_groups"] = n_groups
    out = spec.compute(data, **options)
    if standardize:
        standardize_columns(out)
    return out
