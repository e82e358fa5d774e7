"""Task suites: labels against their definitions, flips, seeding, normalisation, loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stgmtl.datasets import cifar10_15_suite, cifar10_suite, cifar100_suite, load_cifar10
from stgmtl.datasets.suites import (
    CIFAR10_15_TASKS,
    CIFAR100_MEAN,
    CIFAR100_STD,
    TaskSuite,
    channel_stats,
)


def _toy_suite(n: int = 10, augment: bool = False) -> TaskSuite:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    targets = (torch.arange(n)[:, None] % torch.tensor([2, 3]) == 0).float()
    return TaskSuite(
        images,
        targets,
        ["a", "b"],
        sample_ids=np.arange(n) + 100,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
        augment=augment,
        seed=3,
    )


def test_item_and_batch_agree_and_normalise() -> None:
    s = _toy_suite()
    x, y, i = s[4]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and i == 4
    ref = (s.images[4].double() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.3]
    ).view(3, 1, 1)
    torch.testing.assert_close(x.double(), ref, rtol=1e-5, atol=1e-5)
    xb, yb, pb = s.batch(torch.tensor([4, 7]))
    torch.testing.assert_close(xb[0], x)
    assert yb.tolist() == [s.targets[4].tolist(), s.targets[7].tolist()] and pb.tolist() == [4, 7]


def test_loader_covers_every_sample_once_and_is_seeded() -> None:
    s = _toy_suite(n=23)
    loader = s.loader(5, shuffle=True, seed=1)
    assert len(loader) == 5
    epoch0 = torch.cat([p for _, _, p in loader])
    epoch1 = torch.cat([p for _, _, p in loader])
    assert sorted(epoch0.tolist()) == list(range(23)) and not torch.equal(epoch0, epoch1)
    again = torch.cat([p for _, _, p in s.loader(5, shuffle=True, seed=1)])
    assert torch.equal(epoch0, again)
    assert len(s.loader(5, drop_last=True)) == 4


def test_augmentation_is_seeded_crop_and_flip() -> None:
    s = _toy_suite(n=6, augment=True)
    a = s.batch(torch.arange(6), epoch=0)[0]
    b = s.batch(torch.arange(6), epoch=0)[0]
    c = s.batch(torch.arange(6), epoch=1)[0]
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    # every augmented image is a (possibly flipped) window of the zero-padded original
    plain = _toy_suite(n=6).batch(torch.arange(6))[0]
    pad_value = (0 - s.mean) / s.std  # a zero pixel after normalisation
    for k in range(6):
        padded = pad_value[0].expand(3, 40, 40).clone()
        padded[:, 4:36, 4:36] = plain[k]
        found = any(
            torch.allclose(w, a[k]) or torch.allclose(w.flip(2), a[k])
            for w in (padded[:, r : r + 32, q : q + 32] for r in range(9) for q in range(9))
        )
        assert found


def test_pos_weight_and_subset() -> None:
    s = _toy_suite(n=12)
    pos = s.targets.sum(0)
    torch.testing.assert_close(s.pos_weight(), (12 - pos) / pos)
    sub = s.subset([1, 3])
    assert len(sub) == 2 and sub.sample_ids.tolist() == [101, 103]
    torch.testing.assert_close(sub.targets, s.targets[[1, 3]])


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="uint8"):
        TaskSuite(
            torch.zeros(2, 3, 32, 32),
            torch.zeros(2, 1),
            ["a"],
            sample_ids=np.arange(2),
            mean=(0, 0, 0),
            std=(1, 1, 1),
        )
    with pytest.raises(ValueError, match="targets: expected shape"):
        TaskSuite(
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            torch.zeros(2, 2),
            ["a"],
            sample_ids=np.arange(2),
            mean=(0, 0, 0),
            std=(1, 1, 1),
        )


# -- real data ------------------------------------------------------------------------------
def test_cifar100_suite(cifar_root: Path) -> None:
    s = cifar100_suite("test", root=cifar_root, limit=300)
    assert len(s) == 300 and s.num_tasks == 100 and s.task_names[0] == "apple"
    np.testing.assert_array_equal(s.targets.argmax(1).numpy(), s.labels)
    assert (s.targets.sum(1) == 1).all()
    assert s.task_superclass is not None and s.task_superclass[0] == "fruit_and_vegetables"
    assert s.task_superclass[s.task_names.index("whale")] == "aquatic_mammals"


def test_cifar100_splits_task_subsets(cifar_root: Path) -> None:
    from stgmtl.datasets import cifar100_splits
    from stgmtl.payoff.splits import data_fingerprint

    kw = {"root": cifar_root, "train_limit": 400, "val_size": 100, "test_limit": 200}
    full = cifar100_splits(**kw)
    sub = cifar100_splits(superclasses=["people", "flowers"], **kw)
    names = sub.task_names()
    supers = full.train.task_superclass
    # the superclasses' fine classes, in the data's order, five each
    pairs = zip(full.train.task_names, supers, strict=True)
    want = [t for t, c in pairs if c in ("people", "flowers")]
    assert names == want and len(names) == 10
    for a, b in ((sub.train, full.train), (sub.val, full.val), (sub.test, full.test)):
        cols = [full.train.task_names.index(t) for t in names]
        torch.testing.assert_close(a.targets, b.targets[:, cols])  # every image, kept columns
        x, y, idx = next(iter(a.loader(64, shuffle=True, seed=3)))
        x2, y2, idx2 = next(iter(b.loader(64, shuffle=True, seed=3)))
        torch.testing.assert_close(x, x2)
        torch.testing.assert_close(y, y2[:, cols])
    picked = cifar100_splits(tasks=["woman", "rose"], **kw)
    assert picked.task_names() == ["woman", "rose"]
    # a view's fingerprint sees the images of its source, and differs from the full suite's
    assert data_fingerprint(sub) != data_fingerprint(full)
    assert data_fingerprint(sub) == data_fingerprint(
        cifar100_splits(superclasses=["people", "flowers"], **kw)
    )
    with pytest.raises(ValueError, match="superclasses"):
        cifar100_splits(superclasses=["peoples"], **kw)
    with pytest.raises(ValueError, match="tasks"):
        cifar100_splits(tasks=["woman", "woman"], **kw)
    with pytest.raises(ValueError, match="not both"):
        cifar100_splits(tasks=["woman"], superclasses=["people"], **kw)


def test_cifar100_train_stats_match_constants(cifar_root: Path) -> None:
    from stgmtl.datasets import load_cifar100

    mean, std = channel_stats(load_cifar100("train", root=cifar_root).images)
    np.testing.assert_allclose(mean, CIFAR100_MEAN, atol=1e-7)
    np.testing.assert_allclose(std, CIFAR100_STD, atol=1e-7)


def test_train_val_split_by_official_index(cifar_root: Path) -> None:
    val = cifar10_suite("val5k", root=cifar_root)
    tr = cifar10_suite("train45k", root=cifar_root)
    full = cifar10_suite("train", root=cifar_root)
    assert (val.sample_ids >= 45_000).all() and (tr.sample_ids < 45_000).all()
    assert len(tr) + len(val) == len(full) == 4_000


def test_cifar10_15_labels_match_definitions(cifar_root: Path) -> None:
    s = cifar10_15_suite("train", root=cifar_root, limit=500, seed=5)
    y = s.targets.numpy().astype(bool)
    c = s.labels
    col = {t: y[:, i] for i, t in enumerate(s.task_names)}
    assert s.task_names == list(CIFAR10_15_TASKS)
    for k in range(10):
        np.testing.assert_array_equal(col[CIFAR10_15_TASKS[k]], c == k)
    np.testing.assert_array_equal(col["living_being"], np.isin(c, [2, 3, 4, 5, 6, 7]))
    np.testing.assert_array_equal(col["not_living_being"], ~col["living_being"])
    np.testing.assert_array_equal(col["odd_class_id"], c % 2 == 1)
    # the upside-down target is exactly the vertical flip applied to the pixels
    raw = torch.from_numpy(load_cifar10("train", root=cifar_root).images[:500])
    flipped = col["upside_down"]
    assert torch.equal(s.images[flipped], raw[flipped].flip(2))
    assert torch.equal(s.images[~flipped], raw[~flipped])
    assert 0.4 < flipped.mean() < 0.6 and 0.4 < col["random"].mean() < 0.6


def test_cifar10_15_seeding_and_subsets(cifar_root: Path) -> None:
    a = cifar10_15_suite("train", root=cifar_root, seed=1)
    b = cifar10_15_suite("train", root=cifar_root, seed=1, limit=50)
    c = cifar10_15_suite("train", root=cifar_root, seed=2, limit=50)
    torch.testing.assert_close(a.targets[:50], b.targets)  # labels do not depend on limit
    assert not torch.equal(b.targets[:, -2:], c.targets[:, -2:])
    # no flips when the task is not in the suite
    d = cifar10_15_suite("train", root=cifar_root, tasks=["cat", "random"], limit=50, seed=1)
    raw = torch.from_numpy(load_cifar10("train", root=cifar_root).images[:50])
    assert torch.equal(d.images, raw) and d.task_names == ["cat", "random"]
    torch.testing.assert_close(d.targets[:, 1], b.targets[:, -1])
    with pytest.raises(ValueError, match="tasks: expected distinct names"):
        cifar10_15_suite("train", root=cifar_root, tasks=["dragon"])
