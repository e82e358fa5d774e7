"""Train / validation / test splits of the CIFAR task suites for the payoff harness.

Validation images always come out of the official *training* images, so no run ever trains or
chooses on a test image:

* :func:`cifar10_15_splits`: STG-MTL's 15-task CIFAR-10 suite. The shared CIFAR-10 copy has
  4,000 training images (400 per class): a seeded, class-stratified ``val_size`` of them is the
  validation split, the rest trains; the official test split (9,966 images there) tests.
* :func:`cifar10_planted_splits`: the 10 CIFAR-10 class tasks with a known answer: planted label
  noise of graded strength on half of them, or the exact null
  (:mod:`stgmtl.payoff.planted`).
* :func:`cifar100_splits`: CIFAR-100's 100 one-vs-rest tasks: the first ``train_limit`` of the
  first 45,000 training images train, the first ``val_size`` of the last 5,000 (STG-MTL's
  validation set) validate, the official test split tests.

Both are plain functions of their arguments, so ``functools.partial(cifar10_15_splits, ...)`` is
a picklable data factory that remote workers call to load the data themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from stgmtl._checks import check_choice, fail
from stgmtl.datasets.suites import CIFAR10_15_TASKS, cifar10_15_suite, cifar100_suite
from stgmtl.payoff.planted import (
    MECHANISMS,
    PlantedSuite,
    exact_null_suite,
    planted_suite,
    two_image_suite,
)
from stgmtl.payoff.splits import Splits, TaskColumns

__all__ = ["cifar10_15_splits", "cifar100_splits", "cifar10_planted_splits", "stratified_split"]


def stratified_split(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(rest, held_out)``: ``size`` held out, proportionally per class, seeded."""
    lab = np.asarray(labels)
    if not 0 < size < lab.size:
        raise ValueError(f"val_size: expected an int in (0, {lab.size}), got {size!r}")
    rng = np.random.default_rng([seed, 31])
    classes, counts = np.unique(lab, return_counts=True)
    share = counts * size / lab.size
    take = np.floor(share).astype(int)
    rest = size - take.sum()
    take[np.argsort(-(share - take), kind="stable")[:rest]] += 1
    held = np.concatenate(
        [
            rng.choice(np.flatnonzero(lab == c), n, replace=False)
            for c, n in zip(classes, take, strict=True)
        ]
    )
    held = np.sort(held)
    return np.setdiff1d(np.arange(lab.size), held), held


def cifar10_15_splits(
    *,
    tasks: Sequence[str] | None = None,
    val_size: int = 800,
    test_limit: int | None = None,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Splits:
    """The 15-task CIFAR-10 suite (or ``tasks`` of it) as train / validation / test.

    Parameters
    ----------
    tasks : sequence of str, optional
        Tasks of :data:`stgmtl.datasets.CIFAR10_15_TASKS` (default all 15).
    val_size : int
        Training images held out for validation (class-stratified, seeded by ``seed``).
    test_limit : int, optional
        Test on the first ``test_limit`` official test images only.
    root : path, optional
        Data folder (default ``$STGMTL_DATA`` or ``data/``).
    seed : int
        Seed of the suite's random labels and flips, and of the validation draw.

    Returns
    -------
    Splits
    """
    full = cifar10_15_suite("train", tasks=tasks, root=root, seed=seed)
    assert full.labels is not None
    rest, held = stratified_split(full.labels, val_size, seed)
    train, val = full.subset(rest), full.subset(held)
    train.split, val.split = "train-minus-val", "val"
    test = cifar10_15_suite("test", tasks=tasks, root=root, seed=seed, limit=test_limit)
    return Splits(train, val, test)


def cifar10_planted_splits(
    *,
    strength: float = 1.0,
    instance: int = 0,
    kind: str = "planted",
    n_noisy: int = 5,
    val_size: int = 800,
    test_limit: int | None = 2000,
    root: str | os.PathLike[str] | None = None,
    mechanism: str = "label-noise",
) -> PlantedSuite:
    """CIFAR-10's 10 one-vs-rest class tasks as a suite with a known answer.

    ``kind="planted"``: :func:`stgmtl.payoff.planted_suite` with ``n_noisy`` classes drawn per
    ``instance`` for the noisy side, a fraction ``strength`` of their labels replaced by fair
    coins in every split. ``kind="null"``: :func:`stgmtl.payoff.exact_null_suite` (the 10 tasks
    unchanged). The images and the validation draw are those of :func:`cifar10_15_splits`
    (3,200 training, 800 validation images; the first ``test_limit`` test images).

    Parameters
    ----------
    strength : float
        The knob in ``[0, 1]`` (for the null: ignored with label noise; with two images the
        null is that of the two-image suite at this strength).
    instance : int
        Which draw: the noisy classes and the noise.
    kind : {"planted", "null"}
    n_noisy : int
        Classes on the noisy side (the second side for ``"two-images"``).
    val_size, test_limit, root
        As :func:`cifar10_15_splits`.
    mechanism : {"label-noise", "two-images"}
        What is planted: label noise (:func:`stgmtl.payoff.planted_suite`) or two images per
        input, ``strength`` the fraction of samples whose second side reads another image
        (:func:`stgmtl.payoff.two_image_suite`).

    Returns
    -------
    PlantedSuite
    """
    check_choice("mechanism", mechanism, MECHANISMS)
    check_choice("kind", kind, ("planted", "null"))
    base = cifar10_15_splits(
        tasks=CIFAR10_15_TASKS[:10], val_size=val_size, test_limit=test_limit, root=root
    )
    if mechanism == "two-images":  # its null is the exact null of the two-image suite
        suite = two_image_suite(base, strength=strength, n_second=n_noisy, instance=instance)
        return exact_null_suite(suite, instance=instance) if kind == "null" else suite
    if kind == "null":
        return exact_null_suite(base, instance=instance)
    return planted_suite(
        base, strength=strength, n_noisy=n_noisy, instance=instance, mechanism=mechanism
    )


def cifar100_splits(
    *,
    train_limit: int | None = 10_000,
    val_size: int | None = 5_000,
    test_limit: int | None = None,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    tasks: Sequence[str] | None = None,
    superclasses: Sequence[str] | None = None,
) -> Splits:
    """CIFAR-100's 100 one-vs-rest tasks as train / validation / test (module docstring).

    Every image stays (a task's negatives are the other 99 classes); ``tasks`` or
    ``superclasses`` keep only some tasks' target columns (a
    :class:`~stgmtl.payoff.splits.TaskColumns` view per split), e.g. the 20 tasks of four
    superclasses for settings where every pair of 100 tasks is out of reach.

    Parameters
    ----------
    train_limit : int, optional
        The first ``train_limit`` of the first 45,000 training images (default 10,000).
    val_size : int, optional
        The first ``val_size`` of the last 5,000 training images (default all 5,000).
    test_limit : int, optional
        The first ``test_limit`` official test images (default all 10,000).
    root : path, optional
    seed : int
        The suites' seed (shuffling defaults).
    tasks : sequence of str, optional
        Fine-class tasks to keep, in this order (default all 100).
    superclasses : sequence of str, optional
        Keep the fine classes of these superclasses (in the data's task order); not with
        ``tasks``.

    Returns
    -------
    Splits

    Raises
    ------
    ValueError
        Unknown task or superclass names, or both selections given.
    """
    full = Splits(
        cifar100_suite("train45k", root=root, limit=train_limit, seed=seed),
        cifar100_suite("val5k", root=root, limit=val_size, seed=seed),
        cifar100_suite("test", root=root, limit=test_limit, seed=seed),
    )
    if tasks is None and superclasses is None:
        return full
    if tasks is not None and superclasses is not None:
        raise fail("tasks", "either tasks or superclasses, not both", "both given")
    names = list(full.train.task_names)
    coarse = list(full.train.task_superclass)
    if superclasses is not None:
        unknown = sorted(set(superclasses) - set(coarse))
        if unknown or not superclasses:
            raise fail("superclasses", f"a non-empty subset of {sorted(set(coarse))}", unknown)
        keep = [n for n, c in zip(names, coarse, strict=True) if c in set(superclasses)]
    else:
        keep = list(tasks or [])
        unknown = sorted(set(keep) - set(names))
        if unknown or not keep or len(set(keep)) != len(keep):
            raise fail("tasks", "distinct CIFAR-100 fine-class names", unknown or keep)
    cols = [names.index(t) for t in keep]
    return Splits(*(TaskColumns(d, cols, keep) for d in (full.train, full.val, full.test)))
