"""Specialised models: grouped training (:mod:`.training`), baselines (:mod:`.baselines`),
per-task metrics (:mod:`.metrics`) and the method comparison (:mod:`.study`)."""

from stgmtl.specialise.baselines import (
    group_width,
    random_groups,
    train_one_model,
    train_random_groups,
)
from stgmtl.specialise.metrics import grouping_agreement, summarise, task_metrics
from stgmtl.specialise.study import METHODS, compare_methods
from stgmtl.specialise.training import (
    GroupedModels,
    TrainConfig,
    ensemble_logits,
    membership_weighted_bce,
    predict_logits,
    train_group_models,
    train_model,
)

__all__ = [
    "METHODS",
    "GroupedModels",
    "TrainConfig",
    "compare_methods",
    "ensemble_logits",
    "group_width",
    "grouping_agreement",
    "membership_weighted_bce",
    "predict_logits",
    "random_groups",
    "summarise",
    "task_metrics",
    "train_group_models",
    "train_model",
    "train_one_model",
    "train_random_groups",
]
