"""Suites with a known answer: planted negative transfer of graded strength, and the exact null.

A user who wants to know whether the payoff harness would find a grouping on *their* data, and
how often it would claim one where none exists, can build three kinds of suite from their own
labelled tasks (any :class:`~stgmtl.payoff.splits.Splits` the harness takes) and run the harness
on them:

:func:`planted_suite` (``kind="planted"``)
    **Label noise on one side.** The tasks are dealt to two sides (seeded by ``instance``, or
    given). On the *noisy* side a fraction ``strength`` of every task's labels, in every split,
    is replaced by fair coins (exactly ``round(strength * N)`` samples per task and split, drawn
    per task). ``strength`` is the one knob: at 0 nothing is planted (the suite is the user's);
    at 1 the noisy side holds pure random-label tasks, which carry no information about the
    inputs and can only be fitted by memorising. A shared trunk spends capacity and gradient on
    them, so the *clean* side is served worse by one model than by a network of its own: the
    known answer is the split ``(clean, noisy)``, and a grouping that mixes the sides has
    nothing planted to gain. Whether that planted gain survives one model **at the same
    parameter budget** (and not only one model at 1x) is an empirical question per recipe; the
    study of ``docs/results/known-answers.md`` measures it. On the shipped CIFAR-10 (10 class
    tasks, 5 noisy; small CNN at width 0.25, 4 epochs) it does **not**: the planted grouping
    was 0.7 - 0.9 % worse than one model at 2x at strengths 0.5 and 1; on a small
    capacity-bound MLP it was 2 % better. Check :attr:`stgmtl.payoff.study.Trial.effect` on
    your own recipe before reading power from it.

    Which regime of the literature it reproduces: Standley et al. (2020, "Which tasks should be
    learned together?") report that grouping pays mostly at small budgets and for tasks that
    compete for a network's capacity; TAG (Fifty et al., 2021) and "It's a Match!" (Sherif et
    al.) look for tasks whose updates hurt each other's loss. Random-label and noisy tasks are
    the extreme of that competition: their gradients are noise to every other task, and their
    losses stay high, so part of the conflict is one of loss scale (a loss-balancing scheme such
    as uncertainty weighting, Kendall et al. 2018, would down-weight them: the harness's
    ``one_model_variants=("plain", "uncertainty")``). Note that such tasks are also found by
    difficulty alone (their single-task loss stays near chance), so a signal that finds them is
    not thereby shown to find transfer between real tasks.

:func:`two_image_suite` (``kind="planted"``, ``mechanism="two-images"``)
    **Two task families on two images in one input.** Every input carries two grey images
    (channel 0 the sample's own, channel 1 a partner's); the first side's tasks are about the
    own image, the second side's about the partner's; ``strength`` is the share of samples
    whose partner is another image (0: both channels hold the same image, nothing planted).
    At strength 1 nothing in one image predicts the other side's labels, so a shared trunk
    must carry two streams in the width that a network per side would give each alone
    (by design, not measured inside the network): the regime meant is that of Standley et
    al.'s small budgets and of Wu, Zhang and Re (2020, "Understanding and improving
    information transfer in multi-task learning", who argue from linear and ReLU models that
    tasks whose inputs are not aligned interfere in a shared module of limited capacity).
    Both sides are the same kind of task, so difficulty is not expected to separate them nor
    loss balancing to matter (expectations, not measured). The label statistic does find the
    split (within a side the labels of one image exclude each other). On the shipped CIFAR-10
    (5 + 5 class tasks, small CNN at width 0.25, 4 epochs) the planted grouping has about 5 %
    lower test loss than one model at 2x parameters at strength 1
    (``docs/results/known-answers.md``).

:func:`exact_null_suite` (``kind="null"``)
    **The exact null.** The user's suite unchanged, with no planted side. Its use is in
    :func:`stgmtl.payoff.study.exact_null_trial`: the candidates are *the same one model*
    retrained with other seeds, so no candidate is truly better than the reference and any
    "grouping" verdict is a false positive. (Suites of statistically alike tasks are not
    offered as nulls: they were not checked to behave as nulls.)

The returned :class:`PlantedSuite` is a :class:`~stgmtl.payoff.splits.Splits` (the harness takes
it as is) that records the planted sides, the mechanism, the strength and the instance;
:meth:`PlantedSuite.mixes` says whether a grouping mixes the two sides, and
:meth:`PlantedSuite.oracle_affinity` is a block affinity whose two-group partition is the
planted split (to train the planted grouping beside the signals' groupings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stgmtl._checks import check_float, check_int, fail
from stgmtl.affinity import TaskAffinity
from stgmtl.payoff.splits import MappedTargetsLoader, Splits
from stgmtl.specialise.data import make_loader, targets_of, task_names_of

__all__ = [
    "MECHANISMS",
    "PlantedSuite",
    "RelabelledData",
    "exact_null_suite",
    "noisy_targets",
    "planted_suite",
    "two_image_suite",
]

#: Planted mechanisms: ``"label-noise"`` (:func:`planted_suite`) and ``"two-images"``
#: (:func:`two_image_suite`); see the module docstring.
MECHANISMS = ("label-noise", "two-images")
#: What each mechanism's two sides are called (``PlantedSuite.sides`` order).
SIDE_NAMES = {
    "label-noise": ("clean", "noisy"),
    "two-images": ("first", "second"),
    "none": ("all", ""),
}
_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PlantedSuite(Splits):
    """A :class:`~stgmtl.payoff.splits.Splits` with its known answer recorded.

    Attributes
    ----------
    train, val, test
        The data (as :class:`~stgmtl.payoff.splits.Splits`).
    kind : {"planted", "null"}
    mechanism : str
        ``"label-noise"`` or ``"two-images"`` (planted), ``"none"`` (the exact null).
    strength : float
        The knob: the fraction of each noisy-side task's labels replaced by fair coins (label
        noise), or of the samples whose second image is another one (two images).
    sides : tuple of two tuples of str
        ``(clean, noisy)`` or ``(first, second)`` task names (the planted split;
        :attr:`side_names`); ``(all tasks, ())`` for the null.
    instance : int
        Which draw of the recipe (the sides, when drawn, and the noise).
    replaced : dict
        ``{split: {task: fraction of its labels replaced}}`` as realised (noisy or second side
        only).
    """

    kind: str = "planted"
    mechanism: str = "label-noise"
    strength: float = 0.0
    sides: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    instance: int = 0
    replaced: dict[str, dict[str, float]] | None = None

    @property
    def side_names(self) -> tuple[str, str]:
        """What the two sides are called: ``("clean", "noisy")`` for label noise, ``("first",
        "second")`` for two images (:data:`SIDE_NAMES`)."""
        return SIDE_NAMES.get(self.mechanism, ("0", "1"))

    @property
    def planted(self) -> bool:
        """Whether something is planted: a planted suite at ``strength > 0`` in which some
        label (label noise) or some image (two images) was actually replaced."""
        moved = self.replaced is None or any(
            v > 0 for split in self.replaced.values() for v in split.values()
        )
        return self.kind == "planted" and self.strength > 0 and bool(self.sides[1]) and moved

    def side_of(self, task: str) -> int:
        """0 for a task of the first side (clean), 1 for the second (noisy, second image)."""
        if task in self.sides[0]:
            return 0
        if task in self.sides[1]:
            return 1
        raise fail("task", f"one of the suite's tasks {list(self.sides[0] + self.sides[1])}", task)

    def mixes(self, groups: Sequence[Sequence[str]]) -> bool:
        """Whether any group holds tasks of both sides (never true on the null's one side)."""
        return any(len({self.side_of(t) for t in g}) > 1 for g in groups)

    def oracle_affinity(self) -> TaskAffinity:
        """A symmetric block affinity: 1 within a side, 0 across (NaN diagonal).

        Its two-group partition under the harness's selector is the planted split; pass it as a
        precomputed signal (``signals={"planted": suite.oracle_affinity()}``) to train the
        planted grouping. On the null (one side) it has no structure.
        """
        names = self.task_names()
        side = np.array([self.side_of(t) for t in names])
        v = (side[:, None] == side[None, :]).astype(np.float64)
        np.fill_diagonal(v, np.nan)
        return TaskAffinity(names, v, "planted", orientation="symmetric", meta={"kind": self.kind})

    def describe(self) -> str:
        """One sentence: what is planted, on which tasks."""
        if self.kind == "null":
            return (
                f"Exact null (instance {self.instance}): {len(self.sides[0])} tasks, nothing "
                "planted; candidates are the same model retrained with other seeds."
            )
        a, b = self.side_names
        return (
            f"Planted {self.mechanism} at strength {self.strength:g} (instance "
            f"{self.instance}): {a} side {list(self.sides[0])}, {b} side "
            f"{list(self.sides[1])}."
        )


class _RelabelledLoader(MappedTargetsLoader):
    """Batches whose targets are read from a replacement target matrix by sample position."""

    def __init__(self, inner: Any, targets: torch.Tensor, dataset: Any = None) -> None:
        super().__init__(inner, dataset)
        self.replacement = targets

    def targets(self, y: torch.Tensor, idx: Any) -> torch.Tensor:
        return self.replacement[torch.as_tensor(idx, dtype=torch.long)]


class RelabelledData:
    """A dataset with its ``(N, T)`` targets replaced (inputs, order and indices unchanged).

    Works for anything :func:`stgmtl.specialise.data.make_loader` takes whose batch indices are
    the samples' positions ``0 .. N-1`` (true of :class:`stgmtl.datasets.TaskSuite` and of
    datasets with ``(inputs, targets)`` items). ``images``, ``sample_ids``, ``split``,
    ``augment`` and ``seed`` pass through and ``name`` is tagged, so the harness's data
    fingerprint (:func:`~stgmtl.payoff.splits.data_fingerprint`) sees what the wrapped data
    shows and the new targets.
    """

    def __init__(
        self, data: Any, targets: torch.Tensor, task_names: Sequence[str], tag: str
    ) -> None:
        self.data = data
        self.targets = targets.float()
        self.task_names = list(task_names)
        self.name = f"{getattr(data, 'name', type(data).__name__)}|{tag}"
        for attr in ("images", "sample_ids", "split", "augment", "seed"):
            value = getattr(data, attr, None)
            if value is not None:
                setattr(self, attr, value)

    def __len__(self) -> int:
        """Number of samples."""
        return int(self.targets.shape[0])

    def loader(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> _RelabelledLoader:
        """The wrapped data's loader with the replaced targets."""
        return _RelabelledLoader(
            make_loader(self.data, batch_size, shuffle=shuffle, seed=seed), self.targets, self
        )


def _splits(data: Splits | Callable[[], Splits]) -> Splits:
    splits = data() if callable(data) and not isinstance(data, Splits) else data
    if not isinstance(splits, Splits):
        raise fail(
            "data", "Splits or a callable returning Splits", type(splits).__name__,
            error=TypeError,
        )  # fmt: skip
    return splits


def _checked(
    data: Splits | Callable[[], Splits], strength: float, instance: int
) -> tuple[float, int, Splits, list[str]]:
    """The planted suites' common checks: the knob, the instance, and a suite of 2+ tasks."""
    strength = check_float("strength", strength, low=0.0, high=1.0)
    instance = check_int("instance", instance, low=0)
    splits = _splits(data)
    names = splits.task_names()
    if len(names) < 2:
        raise fail("data", "a suite of at least 2 tasks", len(names))
    return strength, instance, splits, names


def _sides(
    names: list[str],
    noisy: Sequence[str] | None,
    n_noisy: int | None,
    instance: int,
    what: tuple[str, str] = ("noisy", "n_noisy"),
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if noisy is not None:
        chosen = [str(t) for t in noisy]
        unknown = [t for t in chosen if t not in names]
        if unknown or len(set(chosen)) != len(chosen):
            raise fail(what[0], f"distinct task names from {names}", list(noisy))
    else:
        n = len(names) // 2 if n_noisy is None else n_noisy
        check_int(what[1], n, low=1, high=len(names) - 1)
        rng = np.random.default_rng([instance, 25, 1])
        chosen = [names[i] for i in sorted(rng.choice(len(names), n, replace=False))]
    if not chosen or len(chosen) == len(names):
        raise fail(what[0], f"between 1 and {len(names) - 1} of the {len(names)} tasks", chosen)
    clean = tuple(t for t in names if t not in chosen)
    return clean, tuple(t for t in names if t in chosen)


def noisy_targets(
    targets: torch.Tensor, columns: Sequence[int], strength: float, seed: Sequence[int]
) -> tuple[torch.Tensor, list[float]]:
    """Targets with exactly ``round(strength * N)`` labels of each column replaced by coins.

    Parameters
    ----------
    targets : torch.Tensor
        ``(N, T)`` 0/1 targets (not modified).
    columns : sequence of int
        The columns (tasks) to corrupt.
    strength : float
        Fraction of each column's samples whose label is replaced, in ``[0, 1]``.
    seed : sequence of int
        Seed of the draws (one stream per column: ``[*seed, column]``).

    Returns
    -------
    targets : torch.Tensor
        A new ``(N, T)`` float32 tensor.
    replaced : list of float
        The fraction replaced per column (``round(strength * N) / N``).
    """
    out = targets.float().clone()
    n = int(out.shape[0])
    m = int(round(strength * n))
    fractions = []
    for c in columns:
        rng = np.random.default_rng([*seed, int(c)])
        pos = rng.choice(n, m, replace=False)
        coins = rng.random(m) < 0.5
        out[torch.from_numpy(pos), int(c)] = torch.from_numpy(coins.astype(np.float32))
        fractions.append(m / n if n else 0.0)
    return out, fractions


def planted_suite(
    data: Splits | Callable[[], Splits],
    *,
    strength: float,
    noisy: Sequence[str] | None = None,
    n_noisy: int | None = None,
    instance: int = 0,
    mechanism: str = "label-noise",
) -> PlantedSuite:
    """A suite with planted negative transfer of graded ``strength`` (module docstring).

    Parameters
    ----------
    data : Splits or callable
        The user's suite (train / validation / test with the same binary tasks), or a
        zero-argument callable returning it.
    strength : float
        The knob, in ``[0, 1]``: the fraction of each noisy-side task's labels replaced by fair
        coins, in every split (0: nothing planted; 1: random-label tasks).
    noisy : sequence of str, optional
        The noisy side's tasks (default: ``n_noisy`` tasks drawn with ``instance``).
    n_noisy : int, optional
        How many tasks to draw for the noisy side (default half, rounded down).
    instance : int
        The draw of the recipe: which tasks are noisy (unless given) and which labels.
    mechanism : {"label-noise"}
        The planted mechanism (:data:`MECHANISMS`).

    Returns
    -------
    PlantedSuite
        ``sides = (clean, noisy)``; ``replaced`` the realised fractions.
    """
    if mechanism != "label-noise":
        raise fail(
            "mechanism", "'label-noise' (for 'two-images' call two_image_suite; mechanisms: "
            f"{MECHANISMS})", mechanism,
        )  # fmt: skip
    strength, instance, splits, names = _checked(data, strength, instance)
    sides = _sides(names, noisy, n_noisy, instance)
    cols = [names.index(t) for t in sides[1]]
    tag = f"planted:{mechanism}:{strength:g}:{instance}:{','.join(sides[1])}"
    parts: list[RelabelledData] = []
    replaced: dict[str, dict[str, float]] = {}
    for i, (split, d) in enumerate(
        zip(_SPLITS, (splits.train, splits.val, splits.test), strict=True)
    ):
        y, frac = noisy_targets(targets_of(d), cols, strength, (instance, 25, 2, i))
        parts.append(RelabelledData(d, y, task_names_of(d, len(names)), tag))
        replaced[split] = dict(zip(sides[1], frac, strict=True))
    return PlantedSuite(
        parts[0], parts[1], parts[2], kind="planted", mechanism=mechanism, strength=strength,
        sides=sides, instance=instance, replaced=replaced,
    )  # fmt: skip


def exact_null_suite(data: Splits | Callable[[], Splits], *, instance: int = 0) -> PlantedSuite:
    """The exact null: the user's suite unchanged, every task on one side (module docstring).

    The trial that uses it, :func:`stgmtl.payoff.study.exact_null_trial`, trains the same one
    model on other seeds as the candidates, so nothing beats the reference but chance.
    """
    instance = check_int("instance", instance, low=0)
    splits = _splits(data)
    names = tuple(splits.task_names())
    return PlantedSuite(
        splits.train, splits.val, splits.test, kind="null", mechanism="none", strength=0.0,
        sides=(names, ()), instance=instance, replaced={s: {} for s in _SPLITS},
    )  # fmt: skip


#: ITU-R BT.601 luma weights: the grey level each image stream carries.
_LUMA = (0.299, 0.587, 0.114)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W)`` grey levels of uint8 ``(N, 3, H, W)`` images."""
    w = torch.tensor(_LUMA, dtype=torch.float64).view(1, 3, 1, 1)
    return (images.double() * w).sum(1).round().clamp(0, 255).to(torch.uint8)


def partner_indices(n: int, strength: float, seed: Sequence[int]) -> np.ndarray:
    """Each sample's partner image: itself, except for ``round(strength * n)`` samples drawn
    with ``seed``, which are given one another's images in one random cycle (no one keeps its
    own; with one drawn sample nothing can move and it keeps its own).

    Returns
    -------
    np.ndarray
        int64 ``(n,)``: ``partner[i]`` is the image whose labels the second side reads for
        sample ``i``.
    """
    partner = np.arange(n, dtype=np.int64)
    m = int(round(strength * n))
    if m >= 2:
        moved = np.random.default_rng([*seed]).choice(n, m, replace=False)
        partner[moved] = moved[np.roll(np.arange(m), 1)]
    return partner


def two_image_suite(
    data: Splits | Callable[[], Splits],
    *,
    strength: float,
    second: Sequence[str] | None = None,
    n_second: int | None = None,
    instance: int = 0,
) -> PlantedSuite:
    """Two task families that read two different images in one input: planted unrelated tasks.

    Every input carries two grey images in its channels: channel 0 is the sample's own image,
    channel 1 its *partner's*, channel 2 is blank. The tasks are dealt to two sides (seeded by
    ``instance``, or given): the *first* side's labels are those of the own image, the
    *second* side's those of the partner's. ``strength`` is the one knob: the fraction of
    samples (per split) whose partner is another image of the split (in one random cycle); the
    others are their own partner. At 0 both channels hold the same image and every task reads
    it (nothing is planted: the grey version of the suite); at 1 the two sides' tasks are about
    unrelated images, so no feature serves both sides, and a shared trunk must carry two
    streams in the width one network gives each side on its own. Whether that survives one
    model **at the same parameter budget** (wider, so with more room for both streams) is what
    :attr:`stgmtl.payoff.study.Trial.effect` measures.

    Parameters
    ----------
    data : Splits or callable
        Image suites (:class:`stgmtl.datasets.TaskSuite`: uint8 ``images (N, 3, 32, 32)``,
        ``targets``, ``sample_ids``) for train, validation and test, or a zero-argument
        callable returning them.
    strength : float
        The knob in ``[0, 1]``: the fraction of samples whose second-side labels and second
        channel come from another image.
    second : sequence of str, optional
        The second side's tasks (default ``n_second`` tasks drawn with ``instance``).
    n_second : int, optional
        How many tasks to draw for the second side (default half, rounded down).
    instance : int
        The draw: which tasks are on the second side (unless given) and the partners.

    Returns
    -------
    PlantedSuite
        ``mechanism="two-images"``, ``sides = (first, second)``; ``replaced`` holds, per split
        and second-side task, the fraction of samples whose label was taken from another image.
        Normalisation: the per-channel mean and std of the new training inputs (the blank
        channel: 0 and 1). The splits are new objects of each input split's class, built with
        :class:`~stgmtl.datasets.TaskSuite`'s constructor, with the original ``sample_ids``,
        ``augment``, ``seed`` and ``split``; ``labels``, ``class_names`` and
        ``task_superclass`` are not carried (two images per sample).

    Raises
    ------
    TypeError
        If a split has no uint8 ``images`` tensor of shape ``(N, 3, 32, 32)``, or its class
        cannot be built like :class:`~stgmtl.datasets.TaskSuite`.
    """
    strength, instance, splits, names = _checked(data, strength, instance)
    sides = _sides(names, second, n_second, instance, ("second", "n_second"))
    cols = torch.tensor([names.index(t) for t in sides[1]], dtype=torch.long)
    built: list[tuple[torch.Tensor, torch.Tensor, Any]] = []
    replaced: dict[str, dict[str, float]] = {}
    for i, (split, d) in enumerate(
        zip(_SPLITS, (splits.train, splits.val, splits.test), strict=True)
    ):
        images = getattr(d, "images", None)
        if (
            not isinstance(images, torch.Tensor)
            or images.dtype != torch.uint8
            or tuple(images.shape[1:]) != (3, 32, 32)
        ):
            raise fail(
                f"data.{split}", "an image suite with uint8 images (N, 3, 32, 32) "
                "(stgmtl.datasets.TaskSuite)", type(d).__name__, error=TypeError,
            )  # fmt: skip
        n = int(images.shape[0])
        partner = partner_indices(n, strength, (instance, 25, 3, i))
        p = torch.from_numpy(partner)
        grey = _grey(images)
        x = torch.stack([grey, grey[p], torch.zeros_like(grey)], 1)
        y = targets_of(d).float().clone()
        y[:, cols] = y[p][:, cols]
        moved = float((partner != np.arange(n)).mean()) if n else 0.0
        replaced[split] = {t: moved for t in sides[1]}
        built.append((x, y, d))
    pixels = built[0][0].permute(1, 0, 2, 3).reshape(3, -1).double() / 255.0
    mean = pixels.mean(1).numpy()
    std = pixels.std(1, unbiased=False).numpy()
    std = np.where(std > 0, std, 1.0)
    tag = f"two-images:{strength:g}:{instance}:{','.join(sides[1])}"
    parts = []
    for (x, y, d), split in zip(built, _SPLITS, strict=True):
        try:  # a new suite of the input's own class (stgmtl.datasets.TaskSuite's constructor)
            parts.append(
                type(d)(
                    x,
                    y,
                    names,
                    sample_ids=np.asarray(getattr(d, "sample_ids", np.arange(len(y)))),
                    mean=mean.tolist(),
                    std=std.tolist(),
                    augment=bool(getattr(d, "augment", False)),
                    seed=int(getattr(d, "seed", 0)),
                    name=f"{getattr(d, 'name', '')}|{tag}",
                    split=str(getattr(d, "split", split)),
                )  # fmt: skip
            )
        except TypeError as err:
            raise fail(
                f"data.{split}", "an image suite built like stgmtl.datasets.TaskSuite (images, "
                "targets, task_names, sample_ids=, mean=, std=, ...)", type(d).__name__,
                error=TypeError,
            ) from err  # fmt: skip
    return PlantedSuite(
        parts[0], parts[1], parts[2], kind="planted", mechanism="two-images", strength=strength,
        sides=sides, instance=instance, replaced=replaced,
    )  # fmt: skip
