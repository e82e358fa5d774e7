"""A many-task CIFAR-100 suite with a ground-truth grouping by construction (scale benchmarks).

:func:`cifar100_pairs_suite` makes ``n_groups * tasks_per_group`` binary tasks on real
CIFAR-100 images. The 100 fine classes are paired at random (seeded) into ``n_groups`` disjoint
pairs ``{a, b}``; every task of group ``g`` asks "is the image one of the classes ``{a_g, b_g}``",
as labelled by its own annotator, who misses a seeded random ``miss_rate`` share of the positives
(labelled 0). Tasks of one group therefore share one concept and differ in which positives they
miss; tasks of different groups share no positive class. The ground truth (``task_group``, and
``task_superclass`` holding the pair's name for the existing evaluation helpers) is known by
construction. The default, 50 groups of 20 tasks, is a 1,000-task suite
(``benchmarks/end_to_end_1000.py``).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from stgmtl._checks import check_float, check_int
from stgmtl.datasets.cifar import load_cifar
from stgmtl.datasets.suites import CIFAR100_MEAN, CIFAR100_STD, SUITE_SPLITS, TaskSuite

__all__ = ["cifar100_pairs_suite", "class_pairs"]


def class_pairs(n_groups: int, seed: int = 0, num_classes: int = 100) -> np.ndarray:
    """``(n_groups, 2)`` disjoint pairs of class ids, drawn at random (seeded)."""
    check_int("n_groups", n_groups, low=1, high=num_classes // 2)
    order = np.random.default_rng([seed, 7]).permutation(num_classes)
    return order[: 2 * n_groups].reshape(n_groups, 2)


def cifar100_pairs_suite(
    split: str = "train45k",
    *,
    n_groups: int = 50,
    tasks_per_group: int = 20,
    miss_rate: float = 0.2,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    limit: int | None = None,
    augment: bool = False,
) -> TaskSuite:
    """``n_groups * tasks_per_group`` "one of {a, b}" tasks with a known grouping.

    Parameters
    ----------
    split : {"train", "train45k", "val5k", "test"}
    n_groups : int
        Number of class pairs (at most 50: the pairs are disjoint).
    tasks_per_group : int
        Tasks (annotators) per pair.
    miss_rate : float
        Share of a task's positives it labels 0, drawn per task and official image index
        (seeded), in ``[0, 1)``.
    seed : int
        Seed of the pairing and of the missed positives.
    root, download, limit, augment
        As for :func:`stgmtl.datasets.cifar100_suite`.

    Returns
    -------
    TaskSuite
        With ``task_superclass`` the pair's name per task (``"apple|bear"``) and an extra
        attribute ``task_group``, the int64 ``(T,)`` ground-truth group of every task.
    """
    check_int("tasks_per_group", tasks_per_group, low=1)
    check_float("miss_rate", miss_rate, low=0.0, high=0.999)
    if split not in SUITE_SPLITS:
        raise ValueError(f"split: expected one of {SUITE_SPLITS}, got {split!r}")
    pairs = class_pairs(n_groups, seed)
    official = "test" if split == "test" else "train"
    data = load_cifar("cifar100", official, root=root, download=download)
    keep = np.arange(len(data.labels))
    if split == "train45k":
        keep = keep[data.index < 45_000]
    elif split == "val5k":
        keep = keep[data.index >= 45_000]
    if limit is not None:
        keep = keep[: check_int("limit", limit, low=1)]
    labels, ids = data.labels[keep], data.index[keep]
    n_total = 50_000 if official == "train" else 10_000
    names = list(data.label_names)
    t = n_groups * tasks_per_group
    targets = np.zeros((len(keep), t), dtype=np.float32)
    task_names, pair_names, groups = [], [], []
    for g, (a, b) in enumerate(pairs):
        positive = (labels == a) | (labels == b)
        for j in range(tasks_per_group):
            task = g * tasks_per_group + j
            rng = np.random.default_rng([seed, 11, task, int(official == "test")])
            missed = (rng.random(n_total) < miss_rate)[ids]  # per official index
            targets[:, task] = positive & ~missed
            task_names.append(f"{names[a]}|{names[b]}/{j:02d}")
            pair_names.append(f"{names[a]}|{names[b]}")
            groups.append(g)
    suite = TaskSuite(
        torch.from_numpy(data.images[keep]),
        torch.from_numpy(targets),
        task_names,
        sample_ids=ids,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        labels=labels,
        class_names=names,
        task_superclass=pair_names,
        augment=augment,
        seed=seed,
        name="cifar100_pairs",
        split=split,
    )
    suite.task_group = np.asarray(groups, dtype=np.int64)  # type: ignore[attr-defined]
    return suite
