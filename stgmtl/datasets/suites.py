"""Multi-task suites on CIFAR: binary tasks over one preloaded image tensor.

A :class:`TaskSuite` is a ``torch.utils.data.Dataset`` yielding ``(image, targets, index)``:
``image`` float32 ``(3, 32, 32)`` normalised with the per-channel train mean/std, ``targets``
float32 ``(T,)`` in {0, 1}, ``index`` the sample's position in the suite (0..N-1; the official
image index is in :attr:`TaskSuite.sample_ids`). For speed use :meth:`TaskSuite.loader`, a
re-iterable batch loader that slices the preloaded uint8 tensor (no per-item collate).

Suites:

- :func:`cifar100_suite`: the 100 one-vs-rest fine-class tasks (task superclass in
  :attr:`TaskSuite.task_superclass`);
- :func:`cifar10_suite`: the 10 one-vs-rest class tasks;
- :func:`cifar10_15_suite`: STG-MTL's 15 tasks: the 10 classes, ``living_being`` (bird, cat,
  deer, dog, frog, horse), ``not_living_being`` (its exact complement), ``odd_class_id``,
  ``upside_down`` (each image flipped vertically with probability 0.5; the target says whether
  it was) and ``random`` (random labels). Flips and random labels are seeded per official image
  index, so they do not depend on ``limit`` or the split subset.

Split names: ``"train"`` (all official train images present), ``"train45k"`` (official train
index < 45,000, STG-MTL's training set), ``"val5k"`` (index >= 45,000, its validation set),
``"test"`` (official test split).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from stgmtl.datasets.cifar import CifarSplit, load_cifar

__all__ = [
    "CIFAR10_15_TASKS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "SUITE_SPLITS",
    "SuiteLoader",
    "TaskSuite",
    "channel_stats",
    "cifar10_15_suite",
    "cifar10_suite",
    "cifar100_suite",
]

#: Per-channel train mean/std of the /255 pixels (CIFAR-100: all 50,000 train images).
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)
#: Published CIFAR-10 train statistics (the shared partial copy agrees to about 1e-3).
CIFAR10_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR10_STD = (0.24703223, 0.24348513, 0.26158784)

SUITE_SPLITS = ("train", "train45k", "val5k", "test")
VAL_START = 45_000

LIVING_CLASSES = (2, 3, 4, 5, 6, 7)  # bird, cat, deer, dog, frog, horse
CIFAR10_15_TASKS = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
    "living_being",
    "not_living_being",
    "odd_class_id",
    "upside_down",
    "random",
)
_STREAM = {"upside_down": 1, "random": 2, "augment": 3, "shuffle": 4}


def channel_stats(images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images ``(N, 3, H, W)`` scaled to [0, 1].

    Returns
    -------
    mean, std : np.ndarray
        float64 ``(3,)`` each (population std, over all pixels of all images).
    """
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images: expected shape (N, 3, H, W), got {tuple(x.shape)}")
    x = x.permute(1, 0, 2, 3).reshape(3, -1).double() / 255.0
    return x.mean(1).numpy(), x.std(1, unbiased=False).numpy()


class TaskSuite(Dataset):
    """Binary tasks on a fixed set of images, all held as one uint8 tensor.

    Parameters
    ----------
    images : torch.Tensor
        uint8 ``(N, 3, 32, 32)``, already carrying any task-defined transform (upside-down flips).
    targets : torch.Tensor
        float32 ``(N, T)`` with values in {0, 1}.
    task_names : sequence of str
        ``T`` task names.
    sample_ids : np.ndarray
        int64 ``(N,)`` official image indices.
    mean, std : sequence of float
        Per-channel normalisation (of the /255 pixels).
    labels : np.ndarray, optional
        int64 ``(N,)`` the underlying class ids.
    class_names : sequence of str, optional
    task_superclass : sequence of str, optional
        A superclass name per task (CIFAR-100), for evaluating groupings.
    augment : bool, default False
        Random crop (4-pixel zero padding) + horizontal flip, seeded by ``(seed, epoch, index)``.
    seed : int, default 0
        Seed of augmentation and of :class:`SuiteLoader` shuffling.
    name, split : str
        Descriptive.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        task_names: Sequence[str],
        *,
        sample_ids: np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
        labels: np.ndarray | None = None,
        class_names: Sequence[str] | None = None,
        task_superclass: Sequence[str] | None = None,
        augment: bool = False,
        seed: int = 0,
        name: str = "",
        split: str = "",
    ) -> None:
        if (
            images.dtype != torch.uint8
            or images.ndim != 4
            or tuple(images.shape[1:])
            != (
                3,
                32,
                32,
            )
        ):
            raise ValueError(
                f"images: expected uint8 (N, 3, 32, 32), got {images.dtype} {tuple(images.shape)}"
            )
        n = images.shape[0]
        if targets.ndim != 2 or targets.shape[0] != n or targets.shape[1] != len(task_names):
            raise ValueError(
                f"targets: expected shape ({n}, {len(task_names)}), got {tuple(targets.shape)}"
            )
        self.images = images
        self.targets = targets.float()
        self.task_names = list(task_names)
        self.sample_ids = np.asarray(sample_ids, dtype=np.int64)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.class_names = None if class_names is None else list(class_names)
        self.task_superclass = None if task_superclass is None else list(task_superclass)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * self.std)
        self._shift = self.mean / self.std
        self.augment = bool(augment)
        self.seed = int(seed)
        self.name = name
        self.split = split
        self.epoch = 0
        self._aug_cache: tuple[int, torch.Tensor, torch.Tensor] | None = None

    # -- Dataset protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a suite of {len(self)} samples")
        i %= len(self)
        x = self.batch(torch.tensor([i]), epoch=self.epoch)[0][0]
        return x, self.targets[i], i

    @property
    def num_tasks(self) -> int:
        """Number of tasks ``T``."""
        return len(self.task_names)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used by ``__getitem__`` for augmentation."""
        self.epoch = int(epoch)

    # -- batches ----------------------------------------------------------------------------
    def _augmentation(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._aug_cache is None or self._aug_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, _STREAM["augment"], epoch])
            offsets = torch.from_numpy(rng.integers(0, 9, size=(len(self), 2)))
            flips = torch.from_numpy(rng.random(len(self)) < 0.5)
            self._aug_cache = (epoch, offsets, flips)
        return self._aug_cache[1], self._aug_cache[2]

    def batch(
        self, positions: torch.Tensor, epoch: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images, targets and positions for the given suite positions.

        Parameters
        ----------
        positions : torch.Tensor
            int64 ``(B,)`` positions in the suite.
        epoch : int, default 0
            Selects the augmentation draw (ignored without augmentation).

        Returns
        -------
        images : torch.Tensor
            float32 ``(B, 3, 32, 32)``, normalised.
        targets : torch.Tensor
            float32 ``(B, T)``.
        positions : torch.Tensor
            int64 ``(B,)``.
        """
        positions = torch.as_tensor(positions, dtype=torch.long)
        x = self.images[positions]
        if self.augment:
            offsets, flips = self._augmentation(epoch)
            x = _crop_flip(x, offsets[positions], flips[positions])
        x = x.float().mul_(self._scale).sub_(self._shift)  # (x / 255 - mean) / std
        return x, self.targets[positions], positions

    def loader(
        self,
        batch_size: int = 256,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
    ) -> SuiteLoader:
        """A re-iterable batch loader; each pass over it is one epoch (see :class:`SuiteLoader`)."""
        return SuiteLoader(
            self,
            batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=self.seed if seed is None else seed,
        )

    # -- helpers ----------------------------------------------------------------------------
    def pos_weight(self) -> torch.Tensor:
        """Per-task ``negatives / positives``, float32 ``(T,)`` (1.0 where no positives)."""
        pos = self.targets.sum(0)
        neg = self.targets.shape[0] - pos
        return torch.where(pos > 0, neg / pos.clamp(min=1), torch.ones_like(pos))

    def subset(self, positions: Sequence[int] | np.ndarray | torch.Tensor) -> TaskSuite:
        """A new suite holding the given positions (same tasks, normalisation and seed)."""
        pos = torch.as_tensor(np.asarray(positions), dtype=torch.long)
        return TaskSuite(
            self.images[pos],
            self.targets[pos],
            self.task_names,
            sample_ids=self.sample_ids[pos.numpy()],
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
            labels=None if self.labels is None else self.labels[pos.numpy()],
            class_names=self.class_names,
            task_superclass=self.task_superclass,
            augment=self.augment,
            seed=self.seed,
            name=self.name,
            split=self.split,
        )

    def __repr__(self) -> str:
        return (
            f"TaskSuite(name={self.name!r}, split={self.split!r}, samples={len(self)}, "
            f"tasks={self.num_tasks}, augment={self.augment})"
        )


class SuiteLoader:
    """Re-iterable mini-batch loader over a :class:`TaskSuite` (a fast DataLoader stand-in).

    Each ``iter()`` is one epoch: shuffling and augmentation are drawn from
    ``(seed, epoch)``, and the epoch counter advances. Batches are
    ``(images, targets, positions)`` tensors made by slicing the preloaded uint8 tensor.

    Parameters
    ----------
    suite : TaskSuite
    batch_size : int
    shuffle : bool, default False
    drop_last : bool, default False
    seed : int, default 0
    """

    def __init__(
        self,
        suite: TaskSuite,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.suite = suite
        self.dataset = suite  # DataLoader-style attribute (``len(loader.dataset)``)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.suite)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next pass."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        n = len(self.suite)
        if self.shuffle:
            g = torch.Generator().manual_seed(
                int(np.random.default_rng([self.seed, _STREAM["shuffle"], epoch]).integers(2**62))
            )
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        for b in range(len(self)):
            yield self.suite.batch(order[b * self.batch_size : (b + 1) * self.batch_size], epoch)


def _crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Random 32x32 crops of the 4-pixel zero-padded images, then horizontal flips."""
    b, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    rows = offsets[:, 0, None] + torch.arange(h)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(3)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


# -- builders -------------------------------------------------------------------------------
def _select(data: CifarSplit, split: str, limit: int | None) -> np.ndarray:
    if split not in SUITE_SPLITS:
        raise ValueError(f"split: expected one of {SUITE_SPLITS}, got {split!r}")
    keep = np.arange(len(data))
    if split == "train45k":
        keep = keep[data.index < VAL_START]
    elif split == "val5k":
        keep = keep[data.index >= VAL_START]
    if limit is not None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit: expected a positive int or None, got {limit!r}")
        keep = keep[:limit]
    return keep


def _load(
    name: str, split: str, root: str | os.PathLike[str] | None, download: bool, limit: int | None
) -> tuple[CifarSplit, np.ndarray]:
    official = "test" if split == "test" else "train"
    data = load_cifar(name, official, root=root, download=download)
    return data, _select(data, split, limit)


def _one_vs_rest(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    return torch.from_numpy(np.eye(num_classes, dtype=np.float32)[labels])


def cifar100_suite(
    split: str = "train45k",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    limit: int | None = None,
    augment: bool = False,
    seed: int = 0,
) -> TaskSuite:
    """CIFAR-100's 100 one-vs-rest tasks (task names = fine labels).

    Parameters
    ----------
    split : {"train", "train45k", "val5k", "test"}, default "train45k"
    root, download
        Where the data is; see :func:`stgmtl.datasets.cifar.load_cifar`.
    limit : int, optional
        Keep only the first ``limit`` images of the split (official order).
    augment : bool, default False
        Random crop + horizontal flip (seeded).
    seed : int, default 0

    Returns
    -------
    TaskSuite
        With ``task_superclass`` set to each fine class's superclass name.
    """
    data, keep = _load("cifar100", split, root, download, limit)
    labels = data.labels[keep]
    f2c = data.fine_to_coarse
    assert f2c is not None and data.coarse_label_names is not None
    return TaskSuite(
        torch.from_numpy(data.images[keep]),
        _one_vs_rest(labels, 100),
        data.label_names,
        sample_ids=data.index[keep],
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        labels=labels,
        class_names=data.label_names,
        task_superclass=[data.coarse_label_names[c] for c in f2c],
        augment=augment,
        seed=seed,
        name="cifar100",
        split=split,
    )


def cifar10_suite(
    split: str = "train45k",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    limit: int | None = None,
    augment: bool = False,
    seed: int = 0,
) -> TaskSuite:
    """CIFAR-10's 10 one-vs-rest class tasks; arguments as :func:`cifar100_suite`."""
    data, keep = _load("cifar10", split, root, download, limit)
    labels = data.labels[keep]
    return TaskSuite(
        torch.from_numpy(data.images[keep]),
        _one_vs_rest(labels, 10),
        data.label_names,
        sample_ids=data.index[keep],
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        labels=labels,
        class_names=data.label_names,
        augment=augment,
        seed=seed,
        name="cifar10",
        split=split,
    )


def _seeded_bits(seed: int, stream: str, split: str, ids: np.ndarray) -> np.ndarray:
    """One fair coin per official image index, independent of which images are kept."""
    official = 1 if split == "test" else 0
    rng = np.random.default_rng([seed, _STREAM[stream], official])
    return rng.random(50_000 if official == 0 else 10_000)[ids] < 0.5


def cifar10_15_suite(
    split: str = "train45k",
    *,
    tasks: Sequence[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    limit: int | None = None,
    augment: bool = False,
    seed: int = 0,
) -> TaskSuite:
    """STG-MTL's 15-task CIFAR-10 suite (or a subset of its tasks).

    Tasks, in this order: the 10 one-vs-rest classes, ``living_being`` (class in
    {2, 3, 4, 5, 6, 7}), ``not_living_being`` (its complement), ``odd_class_id``,
    ``upside_down`` and ``random``. Images are flipped vertically (probability 0.5, seeded)
    only when ``upside_down`` is among ``tasks``; ``random`` labels are fair coins (seeded).

    Parameters
    ----------
    tasks : sequence of str, optional
        Which of :data:`CIFAR10_15_TASKS` to include (default all 15, in the order given).
    split, root, download, limit, augment, seed
        As :func:`cifar100_suite`.

    Returns
    -------
    TaskSuite
    """
    tasks = list(CIFAR10_15_TASKS if tasks is None else tasks)
    unknown = [t for t in tasks if t not in CIFAR10_15_TASKS]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks: expected distinct names from {CIFAR10_15_TASKS}, got {tasks!r}")
    data, keep = _load("cifar10", split, root, download, limit)
    labels = data.labels[keep]
    ids = data.index[keep]
    images = torch.from_numpy(data.images[keep])
    living = np.isin(labels, LIVING_CLASSES)
    columns: dict[str, np.ndarray] = {n: labels == c for c, n in enumerate(CIFAR10_15_TASKS[:10])}
    columns["living_being"] = living
    columns["not_living_being"] = ~living
    columns["odd_class_id"] = labels % 2 == 1
    if "upside_down" in tasks:
        flipped = _seeded_bits(seed, "upside_down", split, ids)
        sel = torch.from_numpy(np.flatnonzero(flipped))
        images[sel] = images[sel].flip(2)
        columns["upside_down"] = flipped
    if "random" in tasks:
        columns["random"] = _seeded_bits(seed, "random", split, ids)
    targets = torch.from_numpy(np.stack([columns[t] for t in tasks], 1).astype(np.float32))
    return TaskSuite(
        images,
        targets,
        tasks,
        sample_ids=ids,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        labels=labels,
        class_names=data.label_names,
        augment=augment,
        seed=seed,
        name="cifar10_15",
        split=split,
    )
