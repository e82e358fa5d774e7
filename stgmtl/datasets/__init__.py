"""CIFAR data: archive and ``.npz`` readers (:mod:`.cifar`), task suites (:mod:`.suites`,
:mod:`.pairs`) and train / validation / test splits for the payoff harness (:mod:`.splits`)."""

from stgmtl.datasets.cifar import (
    CifarSplit,
    download_cifar,
    load_cifar,
    load_cifar10,
    load_cifar100,
    resolve_data_root,
)
from stgmtl.datasets.pairs import cifar100_pairs_suite, class_pairs
from stgmtl.datasets.splits import cifar10_15_splits, cifar10_planted_splits, cifar100_splits
from stgmtl.datasets.suites import (
    CIFAR10_15_TASKS,
    SuiteLoader,
    TaskSuite,
    channel_stats,
    cifar10_15_suite,
    cifar10_suite,
    cifar100_suite,
)

__all__ = [
    "CIFAR10_15_TASKS",
    "CifarSplit",
    "SuiteLoader",
    "TaskSuite",
    "channel_stats",
    "cifar10_15_splits",
    "cifar10_planted_splits",
    "cifar100_splits",
    "cifar10_15_suite",
    "cifar10_suite",
    "cifar100_pairs_suite",
    "cifar100_suite",
    "class_pairs",
    "download_cifar",
    "load_cifar",
    "load_cifar10",
    "load_cifar100",
    "resolve_data_root",
]
