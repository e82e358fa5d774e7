"""Specialised models: grouped training (:mod:`.training`), baselines (:mod:`.baselines`),
per-task metrics (:mod:`.metrics`), the method comparison (:mod:`.study`), the data protocol
(:mod:`.data`), selective task-group updates (:mod:`.selective`, a training strategy with its
own proximal affinity) and the shared-trunk architecture (:mod:`.branched`). Every model is made
by the user's ``factory(num_tasks, width)`` and trained by :func:`stgmtl.loop.train_loop`;
nothing here imports the CIFAR suites or models. The payoff harness moved to
:mod:`stgmtl.payoff`."""

from __future__ import annotations

from typing import Any

from stgmtl._lazy import lazy_exports

# public name -> module; imported on first use, so that the metrics (numpy / polars only) can be
# used without importing torch
_EXPORTS: dict[str, str] = {
    "BranchedModel": "stgmtl.specialise.branched",
    "TrunkBranchFactory": "stgmtl.specialise.branched",
    "branch_width_for_budget": "stgmtl.specialise.branched",
    "branch_widths_for_budget": "stgmtl.specialise.branched",
    "count_macs": "stgmtl.specialise.branched",
    "GroupedModels": "stgmtl.specialise.training",
    "METHODS": "stgmtl.specialise.study",
    "ModelFactory": "stgmtl.specialise.training",
    "TrainConfig": "stgmtl.specialise.training",
    "compare_methods": "stgmtl.specialise.study",
    "count_parameters": "stgmtl.specialise.training",
    "ensemble_logits": "stgmtl.specialise.training",
    "group_width": "stgmtl.specialise.baselines",
    "grouping_agreement": "stgmtl.specialise.metrics",
    "make_loader": "stgmtl.specialise.data",
    "membership_weighted_bce": "stgmtl.specialise.training",
    "pos_weight_of": "stgmtl.specialise.data",
    "predict_logits": "stgmtl.specialise.training",
    "random_groups": "stgmtl.specialise.baselines",
    "SelectiveResult": "stgmtl.specialise.selective",
    "train_selective": "stgmtl.specialise.selective",
    "seed_means": "stgmtl.specialise.metrics",
    "summarise": "stgmtl.specialise.metrics",
    "targets_of": "stgmtl.specialise.data",
    "task_metrics": "stgmtl.specialise.metrics",
    "train_group_models": "stgmtl.specialise.training",
    "train_model": "stgmtl.specialise.training",
    "train_one_model": "stgmtl.specialise.baselines",
    "train_random_groups": "stgmtl.specialise.baselines",
    "UncertaintyWeighting": "stgmtl.specialise.training",
    "width_for_budget": "stgmtl.specialise.baselines",
}

__all__ = [
    "METHODS",
    "BranchedModel",
    "GroupedModels",
    "ModelFactory",
    "SelectiveResult",
    "TrainConfig",
    "TrunkBranchFactory",
    "UncertaintyWeighting",
    "branch_width_for_budget",
    "branch_widths_for_budget",
    "compare_methods",
    "count_macs",
    "count_parameters",
    "ensemble_logits",
    "group_width",
    "grouping_agreement",
    "make_loader",
    "membership_weighted_bce",
    "pos_weight_of",
    "predict_logits",
    "random_groups",
    "seed_means",
    "summarise",
    "targets_of",
    "task_metrics",
    "train_group_models",
    "train_model",
    "train_one_model",
    "train_random_groups",
    "train_selective",
    "width_for_budget",
]


#: names that moved to :mod:`stgmtl.payoff` (0.4): an old spelling fails with the new one
_MOVED = (
    "GroundTruth", "PayoffResult", "Recommendation", "RunSpec", "Splits", "ground_truth",
    "m_for_entropy", "partition_from_affinity", "recommend", "run_all", "run_payoff",
    "score_signals", "select_networks",
)  # fmt: skip

_getattr, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        raise AttributeError(
            f"stgmtl.specialise.{name} moved to stgmtl.payoff.{name}: "
            f"use `from stgmtl.payoff import {name}` (see CHANGELOG.md)"
        )
    return _getattr(name)
