"""Grouped training: one model per task group, membership-weighted task losses, ensembles.

STG-MTL's rule: given a membership matrix ``W`` (``T`` tasks x ``k`` groups, rows summing to
1), model ``c`` has one logit per task (all ``T``) and is trained on

    loss_c = sum_t W[t, c] * mean_b BCEWithLogits(logit[b, t], y[b, t]; pos_weight_t)

A task is then predicted by the membership-weighted sum of the group models' logits,
``sum_c W[t, c] * logit_c[:, t]`` (``mode="weighted"``), or by its own group's model only,
``logit_{argmax_c W[t, c]}[:, t]`` (``mode="own"``).

Models are trained one after another on the same seeded data order; nothing here imports the
grouping code: the membership is a plain ``(T, k)`` array.

Loss balancing (``TrainConfig(loss_weighting="uncertainty")``): Kendall, Gal & Cipolla's (2018)
uncertainty weighting learns one log-variance ``s_t`` per task beside the model and trains on
``sum_t W[t, c] * (exp(-s_t) * L_t + s_t)`` instead (:class:`UncertaintyWeighting`).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from stgmtl._checks import check_choice, check_float, check_int, fail
from stgmtl.batches import forward, task_losses
from stgmtl.loop import make_scheduler, train_loop
from stgmtl.specialise.data import make_loader, pos_weight_of, targets_of, task_names_of

__all__ = [
    "LOSS_WEIGHTINGS",
    "GroupedModels",
    "ModelFactory",
    "PredictMode",
    "TrainConfig",
    "UncertaintyWeighting",
    "check_membership",
    "count_parameters",
    "ensemble_logits",
    "largest_fitting",
    "membership_weighted_bce",
    "predict_logits",
    "resolve_pos_weight",
    "seed_task_heads",
    "stream_seed",
    "train_group_models",
    "train_model",
]

PredictMode = Literal["weighted", "own"]
#: ``factory(num_tasks, width) -> nn.Module`` returning ``(B, num_tasks)`` logits; ``width``
#: scales the model (parameter budgets search over it).
ModelFactory = Callable[[int, float], nn.Module]
#: How the per-task losses are combined: ``"none"`` (their (membership-)weighted sum) or
#: ``"uncertainty"`` (:class:`UncertaintyWeighting`).
LOSS_WEIGHTINGS = ("none", "uncertainty")


@dataclass(frozen=True)
class TrainConfig:
    """How each model is trained (the same for every method, so budgets stay comparable).

    Attributes
    ----------
    width : float
        Width of the one-model baseline (group models may get a smaller one; see
        :func:`stgmtl.specialise.baselines.group_width`).
    epochs, batch_size, lr, weight_decay
        Adam training schedule (STG-MTL: 5 epochs, batch 256, lr 1e-3).
    scheduler : {"constant", "onecycle"}
        Learning-rate schedule per step: constant ``lr`` (STG-MTL) or one-cycle peaking at
        ``lr`` (see :func:`stgmtl.loop.make_scheduler`).
    pos_weight : "auto", float or None
        ``"auto"``: per task ``negatives / positives`` on the training data (99 for a
        balanced 100-class one-vs-rest suite); a float: the same for every task; None: none.
    seed : int
        Seeds model initialisation and data order.
    device : str
        Torch device.
    loss_weighting : {"none", "uncertainty"}
        ``"none"``: the loss is the (membership-)weighted sum of the per-task losses.
        ``"uncertainty"``: Kendall et al.'s (2018) uncertainty weighting, one learned
        log-variance per task (:class:`UncertaintyWeighting`), trained by the same optimizer
        and schedule as the model (without weight decay). A loss-balancing baseline: it removes
        conflicts that come from the tasks' loss scales alone.
    """

    width: float = 1.0
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "constant"
    pos_weight: str | float | None = "auto"
    seed: int = 0
    device: str = "cpu"
    loss_weighting: str = "none"

    def __post_init__(self) -> None:
        check_float("width", self.width, low=0.0, low_open=True)
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_float("lr", self.lr, low=0.0, low_open=True)
        check_float("weight_decay", self.weight_decay, low=0.0)
        check_choice("scheduler", self.scheduler, ("constant", "onecycle"))
        if isinstance(self.pos_weight, str) or self.pos_weight is None:
            if self.pos_weight not in ("auto", None):
                raise fail("pos_weight", "'auto', a float > 0 or None", self.pos_weight)
        else:
            check_float("pos_weight", self.pos_weight, low=0.0, low_open=True)
        check_int("seed", self.seed, low=0)
        check_choice("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)

    def key_fields(self) -> dict[str, Any]:
        """The fields that decide what a run of this recipe computes, for cache keys.

        Every field but ``seed`` and ``device`` (the run's own); ``loss_weighting`` only when it
        is not ``"none"``, so that the keys of recipes without it stay as they were before the
        field existed.
        """
        out = asdict(self)
        out.pop("seed")
        out.pop("device")
        if out["loss_weighting"] == "none":
            del out["loss_weighting"]
        return out


class UncertaintyWeighting(nn.Module):
    """Kendall, Gal & Cipolla's (2018) uncertainty weighting of per-task losses.

    Holds one learned log-variance ``s_t = log sigma_t^2`` per task (``log_variances``,
    initialised to 0) and combines the ``(T,)`` per-task losses ``L_t`` (each the batch mean
    of the task's BCE, ``pos_weight`` included) with the ``(T,)`` task weights ``w_t``
    (membership weights; all ones for plain multi-task training) into

        loss = sum_t w_t * (exp(-s_t) * L_t + s_t)

    This is the form commonly used for Kendall et al.'s objective with ``s = log sigma^2``:
    each task's loss is scaled by its precision ``exp(-s_t) = 1 / sigma_t^2`` and ``s_t``
    penalises large variances. (The paper's classification form ``L_t / sigma_t^2 + log
    sigma_t`` would have ``s_t / 2``; we use ``s_t``.) For fixed ``L_t``, ``s_t`` is pulled to
    ``log L_t``, where every task's weighted loss ``exp(-s_t) L_t`` is 1: a task whose loss
    scale is 100 times another's ends with ``s_t`` larger by ``log 100``. With ``s = 0`` the
    loss is the plain weighted sum. A task with weight 0 (not in this group) gives its ``s_t``
    no gradient. The weights multiply the whole term, so a soft membership is well defined:
    ``s_t`` still goes to ``log L_t`` for every task with ``w_t > 0``.

    Parameters
    ----------
    num_tasks : int
        ``T``.
    """

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        check_int("num_tasks", num_tasks, low=1)
        self.log_variances = nn.Parameter(torch.zeros(num_tasks))

    def forward(
        self, per_task: torch.Tensor, task_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_t w_t * (exp(-s_t) * per_task[t] + s_t)`` (a scalar)."""
        s = self.log_variances
        if per_task.shape != s.shape:
            raise fail("per_task", f"{s.shape[0]} per-task losses", tuple(per_task.shape))
        terms = torch.exp(-s) * per_task + s
        return (terms if task_weights is None else terms * task_weights).sum()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fitting_bounds(
    fits: Callable[[float], bool], start: float, cap: float | None = None
) -> tuple[float, float]:
    """``(lo, hi)`` around the largest ``x`` with ``fits(x)``: ``fits(lo)``, and ``hi`` does not
    fit (or is ``cap`` / the search's ceiling), ``hi - lo`` after 40 halvings.

    ``fits`` must be monotone (true below a threshold, false above it). The bracket starts at
    ``start``, halving ``lo`` while it does not fit (down to 1e-4) and doubling ``hi`` while it
    does (up to ``cap``, or 1e4). The one bisection of every width search of stgmtl (a model's
    width for a parameter budget, a branch width, one more unit per branch).
    """
    lo = hi = float(start) if cap is None else min(float(start), float(cap))
    while not fits(lo) and lo > 1e-4:
        lo /= 2.0
    limit = 1e4 if cap is None else float(cap)
    while hi < limit and fits(hi):
        hi = min(hi * 2.0, limit)
    if hi <= lo:  # start is at the cap and fits: nothing larger is allowed
        return lo, lo
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, hi


def largest_fitting(fits: Callable[[float], bool], start: float, cap: float | None = None) -> float:
    """The largest ``x <= cap`` with ``fits(x)``, to 40 halvings (see :func:`fitting_bounds`).

    Parameters
    ----------
    fits : callable
        ``fits(x) -> bool``, monotone: true for every ``x`` below a threshold.
    start : float
        Where the search starts (e.g. the reference width).
    cap : float, optional
        The largest value allowed.

    Returns
    -------
    float
        ``fits`` of it is true unless nothing down to 1e-4 fits (callers check).
    """
    lo, hi = fitting_bounds(fits, start, cap)
    if cap is not None and fits(float(cap)):
        return float(cap)
    return lo


def check_membership(membership: np.ndarray, num_tasks: int) -> np.ndarray:
    """Validate a ``(T, k)`` membership matrix: finite, non-negative, rows summing to 1.

    Returns
    -------
    np.ndarray
        The membership as float64.
    """
    w = np.asarray(membership, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != num_tasks or w.shape[1] < 1:
        raise fail("membership", f"shape ({num_tasks}, k) with k >= 1", w.shape)
    if not np.isfinite(w).all() or (w < 0).any():
        raise fail("membership", "finite, non-negative values", "NaN, inf or negative values")
    rows = w.sum(1)
    if not np.allclose(rows, 1.0, atol=1e-6):
        bad = int(np.argmax(np.abs(rows - 1.0)))
        raise fail("membership", "rows summing to 1", f"row {bad} summing to {rows[bad]:.6g}")
    return w


def membership_weighted_bce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    task_weights: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sum_t task_weights[t] * mean_b BCEWithLogits(logits[b, t], targets[b, t])``.

    The loss :func:`stgmtl.loop.train_loop` minimises with ``task_weights`` (one column of the
    membership matrix); given here for use in your own loop.

    Parameters
    ----------
    logits, targets : torch.Tensor
        ``(B, T)``.
    task_weights : torch.Tensor
        ``(T,)`` loss weight per task.
    pos_weight : torch.Tensor, optional
        ``(T,)`` weight of the positive term per task.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise fail("logits", f"shape (B, T) equal to the targets' {tuple(targets.shape)}",
                   tuple(logits.shape))  # fmt: skip
    return (task_losses(logits, targets, None, pos_weight) * task_weights).sum()


def resolve_pos_weight(
    config: TrainConfig, num_tasks: int, targets: torch.Tensor | Callable[[], torch.Tensor]
) -> torch.Tensor | None:
    """The ``(T,)`` positive-class weights of ``config.pos_weight`` (the one place it is read).

    ``"auto"``: ``negatives / positives`` per task of ``targets`` (a ``(N, T)`` tensor, or a
    zero-argument callable returning it, read only then); a float: that value for every task;
    None: None.
    """
    if config.pos_weight is None:
        return None
    if config.pos_weight == "auto":
        return pos_weight_of(targets() if callable(targets) else targets)
    return torch.full((num_tasks,), float(config.pos_weight))


def stream_seed(seed: int, *keys: str | int) -> int:
    """A 63-bit seed for one random stream of a run: ``seed`` mixed with ``keys``.

    Streams of one run seed are independent of each other and identical across the runs of that
    seed, whatever they train (``stream_seed(s, "dropout")``, ``stream_seed(s, "head", task)``).
    """
    words = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _output_layer(model: nn.Module, num_tasks: int) -> nn.Linear | None:
    """The last ``nn.Linear`` with ``num_tasks`` outputs (the task heads), if any."""
    found = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.out_features == num_tasks:
            found = m
    return found


@torch.no_grad()
def seed_task_heads(model: nn.Module, task_names: Sequence[str], seed: int) -> bool:
    """Re-initialise each task's output row from a stream seeded by ``(seed, task)``.

    The output layer is the model's last ``nn.Linear`` with one output per task. Row ``i``
    (weights and bias) is redrawn from PyTorch's default ``nn.Linear`` initialisation,
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, with a generator seeded by
    ``stream_seed(seed, "head", task_names[i])``: a task's head starts alike in every network
    of the seed that carries it, whichever other tasks share the network and in which order.

    Returns
    -------
    bool
        False (and nothing changed) when the model has no such layer (e.g. a branched model,
        whose heads sit in several branches).
    """
    layer = _output_layer(model, len(task_names))
    if layer is None:
        return False
    bound = 1.0 / math.sqrt(layer.in_features)
    for i, name in enumerate(task_names):
        gen = torch.Generator().manual_seed(stream_seed(seed, "head", name))
        row = torch.empty(layer.in_features + 1, dtype=torch.float64).uniform_(
            -bound, bound, generator=gen
        )
        layer.weight[i].copy_(row[:-1].to(layer.weight.dtype))
        if layer.bias is not None:
            layer.bias[i] = row[-1].to(layer.bias.dtype)
    return True


def train_model(
    factory: ModelFactory,
    data: Any,
    config: TrainConfig,
    task_weights: np.ndarray | None = None,
    *,
    num_tasks: int | None = None,
    progress: bool = True,
    desc: str = "train",
    checkpoint_path: str | Path | None = None,
    task_names: Sequence[str] | None = None,
    extras: dict[str, Any] | None = None,
) -> nn.Module:
    """Train one model ``factory(T, config.width)`` on all tasks with per-task loss weights.

    Pairing: every model trained with the same ``config.seed`` starts from
    ``torch.manual_seed(seed)`` (equal-shape models share every initial weight), sees the same
    batch order (the loader's generator is seeded by ``seed``) and the same dropout stream
    (reseeded with ``stream_seed(seed, "dropout")`` after the model is built, so it does not
    depend on how many random numbers the model's initialisation drew). With ``task_names``,
    each task's head row is also seeded by task (:func:`seed_task_heads`).

    Parameters
    ----------
    factory : callable
        ``factory(num_tasks, width) -> nn.Module`` (see :data:`ModelFactory`).
    data : Dataset or object with ``loader()``
        Training data (see :mod:`stgmtl.specialise.data`).
    config : TrainConfig
    task_weights : np.ndarray, optional
        ``(T,)`` non-negative weights (default all ones: plain multi-task training).
    num_tasks : int, optional
        ``T`` (default: from the data's targets).
    progress : bool, default True
    desc : str
        Progress bar label.
    checkpoint_path : path, optional
        Checkpoint after every epoch and resume from it (see :func:`stgmtl.loop.train_loop`).
    task_names : sequence of str, optional
        Names of the ``T`` outputs: seed each task's head row by name (see above).
    extras : dict, optional
        Filled with what training learned beside the model: with
        ``config.loss_weighting="uncertainty"``, ``extras["log_variances"]``, the ``(T,)``
        learned ``s_t`` (float64; see :class:`UncertaintyWeighting`).

    Returns
    -------
    torch.nn.Module
        The trained model, in eval mode, on ``config.device``. With
        ``config.loss_weighting="uncertainty"`` the log-variances are trained beside it (one
        more parameter group of the same Adam optimizer, without weight decay, under the same
        schedule) and are not part of it.
    """
    t = num_tasks if num_tasks is not None else int(targets_of(data).shape[1])
    w = np.ones(t) if task_weights is None else np.asarray(task_weights, dtype=np.float64)
    if w.shape != (t,) or (w < 0).any():
        raise fail("task_weights", f"non-negative weights of shape ({t},)", w.shape)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = factory(t, config.width)
    if task_names is not None:
        if len(task_names) != t:
            raise fail("task_names", f"{t} names", len(task_names))
        seed_task_heads(model, task_names, config.seed)
    model = model.to(device)
    weighting = None
    if config.loss_weighting == "uncertainty":
        weighting = UncertaintyWeighting(t).to(device)
        groups: list[dict[str, Any]] = [
            {"params": list(model.parameters())},
            {"params": list(weighting.parameters()), "weight_decay": 0.0},
        ]
        opt = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader = make_loader(data, config.batch_size, shuffle=True, seed=config.seed)
    sched = make_scheduler(config.scheduler, opt, config.lr, config.epochs * len(loader))  # type: ignore[arg-type]
    train_loop(
        model, loader, epochs=config.epochs, optimizer=opt, scheduler=sched,
        pos_weight=resolve_pos_weight(config, t, lambda: targets_of(data)), task_weights=w,
        device=device,
        progress=progress, desc=desc, random_state=stream_seed(config.seed, "dropout"),
        checkpoint_path=checkpoint_path, loss_weighting=weighting,
    )  # fmt: skip
    if weighting is not None and extras is not None:
        extras["log_variances"] = weighting.log_variances.detach().cpu().double().numpy()
    return model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, data: Any, batch_size: int = 1000) -> np.ndarray:
    """Logits of ``model`` on every sample of ``data`` in order, float32 ``(N, T)``."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        forward(model, x.to(device) if isinstance(x, torch.Tensor) else x).float().cpu()
        for x, _, _ in make_loader(data, batch_size, shuffle=False, seed=0)
    ]
    return torch.cat(out).numpy()


def ensemble_logits(
    group_logits: np.ndarray, membership: np.ndarray, mode: PredictMode = "weighted"
) -> np.ndarray:
    """Combine the logits of ``k`` group models into one prediction per task.

    Parameters
    ----------
    group_logits : np.ndarray
        ``(k, N, T)``: model ``c``'s logits for every sample and task.
    membership : np.ndarray
        ``(T, k)``.
    mode : {"weighted", "own"}
        ``"weighted"``: ``sum_c membership[t, c] * group_logits[c, :, t]``;
        ``"own"``: ``group_logits[argmax_c membership[t, c], :, t]``.

    Returns
    -------
    np.ndarray
        ``(N, T)``.
    """
    g = np.asarray(group_logits)
    w = np.asarray(membership, dtype=np.float64)
    if g.ndim != 3 or w.shape != (g.shape[2], g.shape[0]):
        raise ValueError(
            f"group_logits (k, N, T) and membership (T, k) disagree: {g.shape} vs {w.shape}"
        )
    if mode == "weighted":
        return np.einsum("knt,tk->nt", g.astype(np.float64), w).astype(np.float32)
    if mode == "own":
        own = w.argmax(1)
        return g[own, :, np.arange(g.shape[2])].T.astype(np.float32)
    raise ValueError(f"mode: expected 'weighted' or 'own', got {mode!r}")


@dataclass
class GroupedModels:
    """``k`` models trained with membership-weighted losses, and how to combine them.

    Attributes
    ----------
    models : list of torch.nn.Module or None
        One per group; None for a group whose membership column is all zero (not trained).
    membership : np.ndarray
        ``(T, k)``.
    task_names : list of str
    config : TrainConfig
        The configuration every model was trained with.
    train_seconds : float
        Wall time of training all models.
    """

    models: list[nn.Module | None]
    membership: np.ndarray
    task_names: list[str]
    config: TrainConfig
    train_seconds: float = 0.0

    @property
    def n_groups(self) -> int:
        """Number of groups ``k``."""
        return int(self.membership.shape[1])

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of all trained models together."""
        return sum(count_parameters(m) for m in self.models if m is not None)

    def group_logits(self, data: Any, batch_size: int = 1000) -> np.ndarray:
        """``(k, N, T)`` logits of every group model on ``data`` (zeros for untrained ones)."""
        out: np.ndarray | None = None
        for c, m in enumerate(self.models):
            if m is not None:
                logits = predict_logits(m, data, batch_size)
                if out is None:
                    out = np.zeros((self.n_groups, *logits.shape), dtype=np.float32)
                out[c] = logits
        assert out is not None
        return out

    def predict(
        self, data: Any, mode: PredictMode = "weighted", batch_size: int = 1000
    ) -> np.ndarray:
        """``(N, T)`` logits per task (see :func:`ensemble_logits` for ``mode``)."""
        names = getattr(data, "task_names", None)
        if names is not None and list(names) != self.task_names:
            raise fail("data", f"the tasks the models were trained on {self.task_names[:3]}...",
                       list(names)[:3])  # fmt: skip
        return ensemble_logits(self.group_logits(data, batch_size), self.membership, mode)


def train_group_models(
    factory: ModelFactory,
    data: Any,
    membership: np.ndarray,
    config: TrainConfig,
    *,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
) -> GroupedModels:
    """Train one model per group (column of ``membership``) on all tasks, loss-weighted.

    Parameters
    ----------
    factory : callable
        ``factory(num_tasks, width) -> nn.Module``; every group model is
        ``factory(T, config.width)``.
    data : Dataset or object with ``loader()``
        Training data with ``T`` tasks.
    membership : np.ndarray
        ``(T, k)`` non-negative, rows summing to 1 (e.g. ``TaskGroups.membership``).
    config : TrainConfig
        Training of each model (the same for all; see Notes for seeding).
    progress : bool, default True
    checkpoint_dir : path, optional
        Checkpoint model ``c`` after every epoch to ``checkpoint_dir/group<c>.pt`` and resume
        from there.

    Returns
    -------
    GroupedModels

    Notes
    -----
    Every group model is trained with ``config.seed`` (paired: the same initial weights, batch
    order and dropout stream; see :func:`train_model`), so that the models differ only by their
    loss weights. Groups whose membership column sums to zero are not trained.
    """
    t = int(targets_of(data).shape[1])
    w = check_membership(membership, t)
    models: list[nn.Module | None] = []
    start = time.perf_counter()
    for c in range(w.shape[1]):
        if w[:, c].sum() <= 0:
            models.append(None)
            continue
        cfg = config
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"group{c}.pt"
        desc = f"group {c + 1}/{w.shape[1]}"
        models.append(train_model(factory, data, cfg, w[:, c], num_tasks=t, progress=progress,
                                  desc=desc, checkpoint_path=ckpt))  # fmt: skip
    return GroupedModels(
        models=models,
        membership=w,
        task_names=task_names_of(data, t),
        config=config,
        train_seconds=time.perf_counter() - start,
    )
