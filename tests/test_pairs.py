"""The CIFAR-100 pairs suite: tasks, ground truth and missed positives by construction."""

from __future__ import annotations

import numpy as np
import pytest

from stgmtl.datasets import cifar100_pairs_suite, class_pairs


def test_class_pairs_are_disjoint_and_seeded():
    p = class_pairs(50, seed=3)
    assert p.shape == (50, 2) and len(np.unique(p)) == 100
    np.testing.assert_array_equal(p, class_pairs(50, seed=3))
    assert not np.array_equal(p, class_pairs(50, seed=4))
    with pytest.raises(ValueError, match="n_groups: expected an int in \\[1, 50\\]"):
        class_pairs(51)


def test_pairs_suite_targets_follow_the_construction(cifar_root):
    suite = cifar100_pairs_suite("train", n_groups=5, tasks_per_group=4, miss_rate=0.25,
                                 limit=3000, root=cifar_root, seed=1)  # fmt: skip
    assert suite.num_tasks == 20 and len(suite) == 3000
    np.testing.assert_array_equal(suite.task_group, np.repeat(np.arange(5), 4))
    pairs = class_pairs(5, seed=1)
    y = suite.targets.numpy()
    for task in range(20):
        a, b = pairs[task // 4]
        positive = (suite.labels == a) | (suite.labels == b)
        assert not y[~positive, task].any()  # no positive outside the pair
        kept = y[positive, task].mean()
        assert 0.6 < kept < 0.9  # 25% of the positives missed
        assert suite.task_names[task].startswith(f"{suite.class_names[a]}|{suite.class_names[b]}/")
    # annotators of one pair miss different positives; the same seed gives the same suite
    assert not np.array_equal(y[:, 0], y[:, 1])
    again = cifar100_pairs_suite("train", n_groups=5, tasks_per_group=4, miss_rate=0.25,
                                 limit=3000, root=cifar_root, seed=1)  # fmt: skip
    np.testing.assert_array_equal(again.targets.numpy(), y)
    # missed positives follow the official image index, not the subset
    small = cifar100_pairs_suite("train", n_groups=5, tasks_per_group=4, miss_rate=0.25,
                                 limit=1000, root=cifar_root, seed=1)  # fmt: skip
    np.testing.assert_array_equal(small.targets.numpy(), y[:1000])
