"""Specialised models: grouped training (:mod:`.training`), baselines (:mod:`.baselines`),
per-task metrics (:mod:`.metrics`), the method comparison (:mod:`.study`), the data protocol
(:mod:`.data`), selective task-group updates (:mod:`.selective`, a training strategy with its
own proximal affinity), the shared-trunk architecture (:mod:`.branched`), and the payoff harness
(:mod:`.payoff`, with :mod:`.splits`, :mod:`.runs`, :mod:`.worker`, :mod:`.execution`,
:mod:`.truth`, :mod:`.recording`, :mod:`.scoring`, :mod:`.selection`, :mod:`.softness`,
:mod:`.payoff_tables` and :mod:`.recommendation`). Every model is made by the user's
``factory(num_tasks, width)`` and trained by :func:`stgmtl.loop.train_loop`; nothing here
imports the CIFAR suites or models."""

from __future__ import annotations

from stgmtl._lazy import lazy_exports

# public name -> module; imported on first use, so that the metrics (numpy / polars only) can be
# used without importing torch
_EXPORTS: dict[str, str] = {
    # the payoff harness (issue 12)
    "BranchedModel": "stgmtl.specialise.branched",
    "TrunkBranchFactory": "stgmtl.specialise.branched",
    "branch_width_for_budget": "stgmtl.specialise.branched",
    "count_macs": "stgmtl.specialise.branched",
    "Splits": "stgmtl.specialise.splits",
    "RunSpec": "stgmtl.specialise.runs",
    "run_all": "stgmtl.specialise.execution",
    "GroundTruth": "stgmtl.specialise.truth",
    "ground_truth": "stgmtl.specialise.truth",
    "score_signals": "stgmtl.specialise.scoring",
    "select_networks": "stgmtl.specialise.selection",
    "partition_from_affinity": "stgmtl.specialise.selection",
    "m_for_entropy": "stgmtl.specialise.softness",
    "PayoffResult": "stgmtl.specialise.payoff_tables",
    "run_payoff": "stgmtl.specialise.payoff",
    "recommend": "stgmtl.specialise.recommendation",
    "Recommendation": "stgmtl.specialise.recommendation",
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
    "width_for_budget": "stgmtl.specialise.baselines",
}

__all__ = [
    "METHODS",
    "BranchedModel",
    "GroundTruth",
    "GroupedModels",
    "ModelFactory",
    "PayoffResult",
    "Recommendation",
    "RunSpec",
    "SelectiveResult",
    "Splits",
    "TrainConfig",
    "TrunkBranchFactory",
    "branch_width_for_budget",
    "compare_methods",
    "count_macs",
    "count_parameters",
    "ensemble_logits",
    "ground_truth",
    "group_width",
    "grouping_agreement",
    "m_for_entropy",
    "make_loader",
    "membership_weighted_bce",
    "partition_from_affinity",
    "pos_weight_of",
    "predict_logits",
    "random_groups",
    "recommend",
    "run_all",
    "run_payoff",
    "score_signals",
    "seed_means",
    "select_networks",
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
