"""Grouped training: one model per task group, membership-weighted task losses, ensembles.

STG-MTL's rule: given a membership matrix ``W`` (``T`` tasks x ``k`` groups, rows summing to
1), model ``c`` has one logit per task (all ``T``) and is trained on

    loss_c = sum_t W[t, c] * mean_b BCEWithLogits(logit[b, t], y[b, t]; pos_weight_t)

A task is then predicted by the membership-weighted sum of the group models' logits,
``sum_c W[t, c] * logit_c[:, t]`` (``mode="weighted"``), or by its own group's model only,
``logit_{argmax_c W[t, c]}[:, t]`` (``mode="own"``).

Models are trained one after another on the same seeded data order; nothing here imports the
grouping code: the membership is a plain ``(T, k)`` array.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from stgmtl.datasets.suites import TaskSuite
from stgmtl.fit import make_scheduler
from stgmtl.models import build_model, count_parameters

__all__ = [
    "GroupedModels",
    "TrainConfig",
    "check_membership",
    "ensemble_logits",
    "membership_weighted_bce",
    "predict_logits",
    "train_group_models",
    "train_model",
]

PredictMode = Literal["weighted", "own"]


@dataclass(frozen=True)
class TrainConfig:
    """How each model is trained (the same for every method, so budgets stay comparable).

    Attributes
    ----------
    model : {"cnn", "wide-cnn", "resnet18"}
        Model family (see :mod:`stgmtl.models`).
    width : float
        Width multiplier of a model (group models may get a smaller one; see
        :func:`stgmtl.specialise.baselines.group_width`).
    epochs, batch_size, lr, weight_decay
        Adam training schedule (STG-MTL: 5 epochs, batch 256, lr 1e-3).
    scheduler : {"constant", "onecycle"}
        Learning-rate schedule per step: constant ``lr`` (STG-MTL) or one-cycle peaking at
        ``lr`` (see :func:`stgmtl.fit.make_scheduler`).
    pos_weight : "auto", float or None
        ``"auto"``: per task ``negatives / positives`` on the training suite (99 for a
        balanced 100-class one-vs-rest suite); a float: the same for every task; None: none.
    augment : bool
        Random crop + flip while training.
    seed : int
        Seeds model initialisation, data order and augmentation.
    device : str
        Torch device.
    """

    model: str = "cnn"
    width: float = 1.0
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "constant"
    pos_weight: str | float | None = "auto"
    augment: bool = False
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.scheduler not in ("constant", "onecycle"):
            raise ValueError(f"scheduler must be 'constant' or 'onecycle', got {self.scheduler!r}")
        if isinstance(self.pos_weight, str) and self.pos_weight != "auto":
            raise ValueError(f"pos_weight must be 'auto', a float or None, got {self.pos_weight!r}")

    def to_dict(self) -> dict[str, object]:
        """The configuration as a plain dict (for logs and JSON)."""
        return asdict(self)


def check_membership(membership: np.ndarray, num_tasks: int) -> np.ndarray:
    """Validate a ``(T, k)`` membership matrix: finite, non-negative, rows summing to 1.

    Returns
    -------
    np.ndarray
        The membership as float64.
    """
    w = np.asarray(membership, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != num_tasks or w.shape[1] < 1:
        raise ValueError(f"membership must have shape ({num_tasks}, k) with k >= 1, got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("membership must be finite and non-negative")
    rows = w.sum(1)
    if not np.allclose(rows, 1.0, atol=1e-6):
        bad = int(np.argmax(np.abs(rows - 1.0)))
        raise ValueError(f"membership rows must sum to 1; row {bad} sums to {rows[bad]:.6g}")
    return w


def membership_weighted_bce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    task_weights: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sum_t task_weights[t] * mean_b BCEWithLogits(logits[b, t], targets[b, t])``.

    Parameters
    ----------
    logits, targets : torch.Tensor
        ``(B, T)``.
    task_weights : torch.Tensor
        ``(T,)`` loss weight per task (one column of the membership matrix).
    pos_weight : torch.Tensor, optional
        ``(T,)`` weight of the positive term per task.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(
            f"logits and targets must both be (B, T), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    per = F.binary_cross_entropy_with_logits(
        logits, targets, pos_weight=pos_weight, reduction="none"
    )
    return (per.mean(0) * task_weights).sum()


def _resolve_pos_weight(config: TrainConfig, suite: TaskSuite) -> torch.Tensor | None:
    if config.pos_weight is None:
        return None
    if config.pos_weight == "auto":
        return suite.pos_weight()
    return torch.full((suite.num_tasks,), float(config.pos_weight))


def train_model(
    suite: TaskSuite,
    config: TrainConfig,
    task_weights: np.ndarray | None = None,
    *,
    progress: bool = True,
    desc: str = "train",
) -> nn.Module:
    """Train one model on all of ``suite``'s tasks with per-task loss weights.

    Parameters
    ----------
    suite : TaskSuite
        Training data.
    config : TrainConfig
    task_weights : np.ndarray, optional
        ``(T,)`` non-negative weights (default all ones: plain multi-task training).
    progress : bool, default True
    desc : str
        Progress bar label.

    Returns
    -------
    torch.nn.Module
        The trained model, in eval mode, on ``config.device``.
    """
    t = suite.num_tasks
    w = np.ones(t) if task_weights is None else np.asarray(task_weights, dtype=np.float64)
    if w.shape != (t,) or (w < 0).any():
        raise ValueError(f"task_weights must be non-negative with shape ({t},), got {w.shape}")
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config.model, t, config.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    weights = torch.as_tensor(w, dtype=torch.float32, device=device)
    pos_weight = _resolve_pos_weight(config, suite)
    if pos_weight is not None:
        pos_weight = pos_weight.to(device)
    augment, suite.augment = suite.augment, config.augment
    try:
        loader = suite.loader(config.batch_size, shuffle=True, seed=config.seed)
        sched = make_scheduler(config.scheduler, opt, config.lr, config.epochs * len(loader))  # type: ignore[arg-type]
        bar = tqdm(total=config.epochs * len(loader), desc=desc, disable=not progress, leave=False)
        with bar:
            for _ in range(config.epochs):
                model.train()
                for x, y, _ in loader:
                    x, y = x.to(device), y.to(device)
                    loss = membership_weighted_bce(model(x), y, weights, pos_weight)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    finally:
        suite.augment = augment
    return model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, suite: TaskSuite, batch_size: int = 1000) -> np.ndarray:
    """Logits of ``model`` on every sample of ``suite`` (no augmentation), float32 ``(N, T)``."""
    model.eval()
    device = next(model.parameters()).device
    augment, suite.augment = suite.augment, False
    try:
        out = [model(x.to(device)).float().cpu() for x, _, _ in suite.loader(batch_size)]
    finally:
        suite.augment = augment
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
    raise ValueError(f"mode must be 'weighted' or 'own', got {mode!r}")


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
    info: dict[str, object] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Number of groups."""
        return int(self.membership.shape[1])

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of all trained models together."""
        return sum(count_parameters(m) for m in self.models if m is not None)

    def group_logits(self, suite: TaskSuite, batch_size: int = 1000) -> np.ndarray:
        """``(k, N, T)`` logits of every group model on ``suite`` (zeros for untrained ones)."""
        out = np.zeros((self.k, len(suite), len(self.task_names)), dtype=np.float32)
        for c, m in enumerate(self.models):
            if m is not None:
                out[c] = predict_logits(m, suite, batch_size)
        return out

    def predict(
        self, suite: TaskSuite, mode: PredictMode = "weighted", batch_size: int = 1000
    ) -> np.ndarray:
        """``(N, T)`` logits per task (see :func:`ensemble_logits` for ``mode``)."""
        if suite.task_names != self.task_names:
            raise ValueError("suite.task_names differ from the tasks the models were trained on")
        return ensemble_logits(self.group_logits(suite, batch_size), self.membership, mode)


def train_group_models(
    suite: TaskSuite,
    membership: np.ndarray,
    config: TrainConfig,
    *,
    progress: bool = True,
) -> GroupedModels:
    """Train one model per group (column of ``membership``) on all tasks, loss-weighted.

    Parameters
    ----------
    suite : TaskSuite
        Training data with ``T`` tasks.
    membership : np.ndarray
        ``(T, k)`` non-negative, rows summing to 1 (e.g. ``TaskGroups.membership``).
    config : TrainConfig
        Training of each model (the same for all; see Notes for seeding).
    progress : bool, default True

    Returns
    -------
    GroupedModels

    Notes
    -----
    Each model gets its own initialisation and data order, seeded by
    ``config.seed * 1000 + c``. Groups whose membership column sums to zero are not trained.
    """
    w = check_membership(membership, suite.num_tasks)
    models: list[nn.Module | None] = []
    start = time.perf_counter()
    for c in range(w.shape[1]):
        if w[:, c].sum() <= 0:
            models.append(None)
            continue
        cfg = replace(config, seed=config.seed * 1000 + c)
        models.append(
            train_model(suite, cfg, w[:, c], progress=progress, desc=f"group {c + 1}/{w.shape[1]}")
        )
    return GroupedModels(
        models=models,
        membership=w,
        task_names=list(suite.task_names),
        config=config,
        train_seconds=time.perf_counter() - start,
    )
