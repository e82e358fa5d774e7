"""Selective task-group updates (Jeong and Yoon, ICLR 2025): a training strategy with its own
affinity, the proximal inter-task affinity.

Unlike the probes of :mod:`stgmtl.record` this **changes training by design**: each batch is
used once per task group, the groups stepping one after another (in a seeded random order), so
that a group's update sees the parameters the previous group left. The loss change that one
group's step causes on every task, on the same batch, is its proximal affinity:

    a(s -> t) = (1 - L_t(after the step of G) / L_t(before it)) / |G|   for every s in G

accumulated as an exponential moving average ``A[s, t] <- (1 - decay) A[s, t] + decay a``. Within
the group the official sign rule is kept (a task's effect on itself counts only when its own
loss fell; between two members, opposite signs count as ``-max(a_t, a_s)``). After ``warmup``
steps (with every task its own group, as the official configuration starts) the tasks are
regrouped every ``regroup_every`` steps: ``A``'s columns are divided by their diagonal,
symmetrised, and clustered by affinity propagation (the official choice).

One difference from the official code, on purpose: there the loss change measured by a group's
forward pass (the change caused by the *previous* group's step) is credited to the group about
to step. Here it is credited to the group that stepped; the last group of a batch is credited
from one extra forward pass (``credit_last=True``, run on copies of the buffers with a private
RNG stream, so it does not change training; about a third of a step per batch).

Cost: one forward and backward per group per batch (``k`` groups cost about ``k`` plain steps),
plus the extra forward.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from stgmtl._checks import check_bool, check_float, check_int, check_names, fail, seed_from
from stgmtl.affinity import TaskAffinity
from stgmtl.loop import Batch, forward, iterate_batches, task_losses
from stgmtl.record.affinity import dataset_task_names
from stgmtl.record.functional import probe_forward

__all__ = ["SelectiveResult", "credit_group", "regroup", "train_selective"]


@dataclass
class SelectiveResult:
    """What :func:`train_selective` did.

    Attributes
    ----------
    affinity : TaskAffinity
        ``signal="proximal"``, source->recipient: the moving-average proximal affinity at the end
        (snapshots at every epoch end).
    groups : list of list of str
        The final task groups.
    history : list of (int, list of list of str)
        ``(step, groups)`` each time the grouping changed (step 0: the initial groups).
    steps : int
        Batches trained.
    """

    affinity: TaskAffinity
    groups: list[list[str]]
    history: list[tuple[int, list[list[str]]]] = field(default_factory=list)
    steps: int = 0


def credit_group(
    affinity: np.ndarray,
    counts: np.ndarray,
    group: Sequence[int],
    before: np.ndarray,
    after: np.ndarray,
    decay: float,
) -> None:
    """Update ``affinity`` (and ``counts``) in place with one group's loss change.

    Parameters
    ----------
    affinity : np.ndarray
        ``(T, T)`` moving averages ``A[source, recipient]``.
    counts : np.ndarray
        ``(T, T)`` int64 number of updates per pair.
    group : sequence of int
        The tasks whose summed loss stepped.
    before, after : np.ndarray
        ``(T,)`` per-task losses on the same batch before and after that step.
    decay : float
        Weight of the new observation.
    """
    g = list(group)
    size = len(g)
    valid = before > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(valid, (1.0 - after / before) / size, np.nan)
    in_group = np.zeros(len(before), dtype=bool)
    in_group[g] = True
    for s in g:
        obs = a.copy()
        if valid[s]:
            member = in_group.copy()
            member[s] = False
            opposite = member & (a * a[s] < 0)
            obs[opposite] = -np.maximum(a[opposite], a[s])
            if a[s] < 0:
                obs[s] = np.nan  # a task's effect on itself counts only when its loss fell
        else:
            obs[in_group] = np.nan
        ok = np.isfinite(obs)
        affinity[s, ok] = (1.0 - decay) * affinity[s, ok] + decay * obs[ok]
        counts[s, ok] += 1


def regroup(
    affinity: np.ndarray, *, preference: float | None = None, random_state: int = 0
) -> list[list[int]] | None:
    """Groups by affinity propagation on the diagonal-normalised, symmetrised affinity.

    ``X[:, i] = A[:, i] / A[i, i]`` (columns whose diagonal is not positive are left as they
    are), ``S = (X + X.T) / 2``. Returns ``None`` when affinity propagation does not converge
    (the caller keeps its groups).
    """
    from sklearn.cluster import AffinityPropagation
    from sklearn.exceptions import ConvergenceWarning

    x = np.array(affinity, dtype=np.float64)
    diag = np.diag(x).copy()
    scale = np.where(np.isfinite(diag) & (diag > 0), diag, 1.0)
    x = x / scale[None, :]
    s = np.nan_to_num((x + x.T) / 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ap = AffinityPropagation(
            affinity="precomputed", preference=preference, random_state=random_state
        ).fit(s)
    if len(ap.cluster_centers_indices_) == 0:
        return None
    labels = np.asarray(ap.labels_)
    return [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]


def _names(groups: list[list[int]], names: list[str]) -> list[list[str]]:
    return [[names[i] for i in g] for g in groups]


def train_selective(
    loader: Any,
    model: nn.Module,
    *,
    epochs: int = 5,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    pos_weight: Sequence[float] | torch.Tensor | None = None,
    groups: Sequence[Sequence[int]] | None = None,
    decay: float = 0.001,
    warmup: int = 100,
    regroup_every: int = 1,
    preference: float | None = None,
    normalise_group_loss: bool = False,
    credit_last: bool = True,
    task_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    random_state: int = 0,
) -> SelectiveResult:
    """Train ``model`` with selective task-group updates; returns the proximal affinity.

    See the module docstring. The model is trained in place.

    Parameters
    ----------
    loader : iterable
        Yields ``(inputs, targets, indices)`` (as :func:`stgmtl.fit_datamaps`).
    model : nn.Module
        Returns logits ``(B, T)`` or ``(B, T, C)``.
    epochs : int
    optimizer : torch.optim.Optimizer, optional
        Default ``Adam(model.parameters(), lr=lr)``; stepped once per group per batch.
    lr : float
    loss_fn : callable, optional
        ``loss_fn(logits, targets) -> (T,)`` per-task losses (default BCE / cross-entropy over
        the observed labels, with ``pos_weight``).
    pos_weight : sequence of float, optional
    groups : sequence of sequence of int, optional
        Initial groups (default: every task alone, as the official configuration).
    decay : float
        Weight of each new observation in the moving average (official: 0.001).
    warmup : int
        Steps before the first regrouping (official: 100).
    regroup_every : int
        Regroup every this many steps after the warm-up (official: every step).
    preference : float, optional
        Affinity propagation's preference (default: the median similarity).
    normalise_group_loss : bool
        Divide a group's summed loss by its size (the official ``group_norm`` option).
    credit_last : bool
        Credit the last group of each batch from one extra forward pass.
    task_names : sequence of str, optional
        Default: ``task_names`` of the loader's dataset when present, else ``task_0 ...``.
    device : str or torch.device, optional
    progress : bool
    random_state : int
        Seeds torch's RNG at the start, the group order and affinity propagation.

    Returns
    -------
    SelectiveResult
    """
    check_int("epochs", epochs, low=1)
    check_float("decay", decay, low=0.0, high=1.0, low_open=True)
    check_int("warmup", warmup, low=0)
    check_int("regroup_every", regroup_every, low=1)
    check_bool("normalise_group_loss", normalise_group_loss)
    check_bool("credit_last", credit_last)
    seed = seed_from("random_state", random_state)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    opt = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32).to(dev)

    def per_task(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        if loss_fn is not None:
            return loss_fn(logits, batch.targets)
        return task_losses(logits, batch.targets, batch.mask, pw)

    if task_names is None:
        task_names = dataset_task_names(loader)
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 5])
    state: dict[str, Any] = {"A": None, "counts": None, "groups": None, "names": None}
    snapshots: list[np.ndarray] = []
    history: list[tuple[int, list[list[str]]]] = []
    step = 0
    bar = tqdm(total=None, disable=not progress, desc="selective", unit="step", leave=False)
    try:
        for epoch in range(epochs):
            if callable(getattr(loader, "set_epoch", None)):
                loader.set_epoch(epoch)
            model.train()
            for batch in iterate_batches(loader, dev):
                if state["A"] is None:
                    _start(state, int(batch.targets.shape[1]), groups, task_names, history)
                order = [state["groups"][i] for i in rng.permutation(len(state["groups"]))]
                _batch_step(
                    model,
                    opt,
                    batch,
                    per_task,
                    order,
                    state,
                    decay,
                    normalise_group_loss,
                    credit_last,
                    seed + step,
                )
                step += 1
                bar.update(1)
                if step > warmup and step % regroup_every == 0:
                    new = regroup(state["A"], preference=preference, random_state=seed)
                    if new is not None and sorted(map(sorted, new)) != sorted(
                        map(sorted, state["groups"])
                    ):
                        state["groups"] = new
                        history.append((step, _names(new, state["names"])))
            if state["A"] is None:
                raise fail("loader", "at least one batch per epoch", "an empty loader")
            snapshots.append(state["A"].copy())
    finally:
        bar.close()
    names = state["names"]
    affinity = TaskAffinity(
        task_names=names,
        values=state["A"].copy(),
        signal="proximal",
        orientation="source->recipient",
        counts=state["counts"].copy(),
        snapshot_epochs=list(range(1, epochs + 1)),
        snapshots=np.stack(snapshots),
        meta={
            "formula": "EMA of (1 - L_t(after G's step) / L_t(before)) / |G| for s in G",
            "source": "selective task-group updates (changes training)",
            "decay": decay,
            "warmup": warmup,
            "regroup_every": regroup_every,
            "credit_last": credit_last,
            "steps": step,
            "groups": _names(state["groups"], names),
        },
    )
    return SelectiveResult(affinity, _names(state["groups"], names), history, step)


def _start(
    state: dict[str, Any],
    t: int,
    groups: Sequence[Sequence[int]] | None,
    task_names: Sequence[str] | None,
    history: list[tuple[int, list[list[str]]]],
) -> None:
    names = check_names("task_names", task_names, t)
    if groups is None:
        start = [[i] for i in range(t)]
    else:
        start = [[int(i) for i in g] for g in groups]
        flat = sorted(i for g in start for i in g)
        if flat != list(range(t)) or any(not g for g in start):
            raise fail("groups", f"a partition of the task indices 0..{t - 1}", groups)
    state.update(
        A=np.zeros((t, t)), counts=np.zeros((t, t), dtype=np.int64), groups=start, names=names
    )
    history.append((0, _names(start, names)))


def _batch_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch,
    per_task: Callable[[torch.Tensor, Batch], torch.Tensor],
    order: list[list[int]],
    state: dict[str, Any],
    decay: float,
    normalise: bool,
    credit_last: bool,
    seed: int,
) -> None:
    """One batch: the groups step one after another; each step's loss change is credited."""
    before: np.ndarray | None = None
    stepped: list[int] | None = None
    for g in order:
        losses = per_task(forward(model, batch.inputs), batch)
        now = losses.detach().double().cpu().numpy()
        if stepped is not None and before is not None:
            credit_group(state["A"], state["counts"], stepped, before, now, decay)
        loss = losses[g].sum()
        if normalise:
            loss = loss / len(g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        before, stepped = now, g
    if credit_last and stepped is not None and before is not None:
        with torch.no_grad():
            after = per_task(probe_forward(model, batch.inputs, seed=seed), batch)
        credit_group(
            state["A"], state["counts"], stepped, before, after.double().cpu().numpy(), decay
        )
