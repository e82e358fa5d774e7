"""Grad-TAG: task affinity from a linearised model, estimated after training (Li, Sharma and
Zhang, "Scalable Multitask Learning Using Gradient-based Estimation of Task Affinity", KDD 2024).

Around the trained multi-task weights ``theta*`` a network is nearly linear in small parameter
changes: ``z_t(x; theta* + P w) ~ z_t(x; theta*) + phi_t(x) . w`` with ``phi_t(x) = P^T grad
z_t(x; theta*)`` the randomly projected gradient of task ``t``'s logit. Training on a task subset
``S`` is then a logistic regression in ``w`` with the base logits as offsets, and its losses can
be read without training a network. The estimate here:

1. **Projected per-sample gradients** on a probe subset (``model.eval()``): the gradient of every
   task's logit with respect to the shared parameters (outside the heads and normalisation
   layers, as the official image code), projected to ``projection_dim`` dimensions by a seeded
   random +-1/sqrt(d) matrix ``P``. ``P`` is never stored: each direction is regenerated per layer
   from ``(random_state, layer, direction)``, and the projection is computed as forward-mode
   directional derivatives (``torch.func.jvp``), one per direction for all samples and tasks at
   once, so per-sample gradients are never materialised either.
2. **Logistic fits on task subsets**: for each subset ``S`` (all singletons and pairs when there
   are few tasks, else ``n_subsets`` random subsets of ``subset_size`` tasks), ridge-regularised
   logistic regression on the fit half of the probe samples of the tasks in ``S``, the projected
   gradients as features and an intercept, as the official code (``offsets=False``, default);
   ``offsets=True`` adds the base logits as fixed offsets instead of the intercept (Newton's
   method in float64; ``l2`` is relative to the mean squared feature, so the result does not
   depend on the gradients' scale). With ``l2="auto"`` (default) the strength is chosen from a
   grid by the mean held-out loss of the single-task fits: an under-regularised single-task fit
   would make *any* added task, even one with random labels, look helpful by regularising it.
3. **Linearised losses** on the held-out half: ``Lhat_j(S)`` = BCE of ``b_S + phi_j . w_S``
   (``z_j + phi_j . w_S`` with offsets).

The affinity is defined as the ground truth of the payoff harness defines a pair gain: the
relative change of the recipient's loss when the source joins it,
``values[i, j] = 1 - Lhat_j({i, j}) / Lhat_j({j})`` (pairs); with sampled subsets,
``1 - mean_{S contains i, j} Lhat_j(S) / mean_{S contains j, not i} Lhat_j(S)``.
Binary tasks only.

Step by step against the official code (``VirtuosoResearch/ScalableMTL``,
``exps_on_graph_datasets/fast_estimate_collect_gradients.py`` and ``fast_estimate_linear_model
.py``, read, not copied): the same per-sample gradients of each task's output logit, projected
by a random +-1/sqrt(d) matrix; the same logistic regression on the concatenated projected
gradients and labels of a subset's tasks, with an intercept and no offsets (sklearn's
``LogisticRegression(C=1e-2)`` there, a relative ridge chosen on held-out single-task fits
here). Two differences remain: the official script maps ``w_S`` back to weights ``theta* + P
w_S`` and re-evaluates the network, where this estimate reads the fitted linear model's held-out
loss (the paper's estimate, no extra forward passes); and the affinity above normalises by the
recipient's loss without the source, which for pairs ranks the sources of each recipient as
the paper's mean loss over subsets holding both does.

Why no offsets by default: an earlier version fitted around the trained model's logits
(``offsets=True``). At a trained optimum those logits already fit every task, the fit only
corrects residuals, and a source's data changes the recipient's loss by about 1e-3, within
noise: on a planted suite with an identical twin task, unrelated sources ranked above the twin.
Fitted from the gradient features alone, as the official code does, a twin's data is a copy of
the recipient's and every other source pulls ``w`` away from it, so twins come out as each
other's strongest partner (``tests/test_gradtag_twin.py``).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from stgmtl._checks import (
    PROGRESS_DELAY_S,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_names,
    fail,
    seed_from,
)
from stgmtl.affinity import TaskAffinity
from stgmtl.loop import Batch, Hook, Step, missing_mask, move_to
from stgmtl.record.functional import (
    isolated_rng,
    probe_forward,
    resolve_heads,
    split_parameters,
    unwrap,
)

__all__ = [
    "L2_GRID",
    "GradTAGCollector",
    "fit_logistic",
    "grad_tag_affinity",
    "projected_gradients",
    "projection_direction",
    "subset_affinity",
    "subset_losses",
]

#: Relative ridge strengths tried by ``l2="auto"``.
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)

_NORM = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
)


def _gradtag_parameters(model: nn.Module, heads: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Shared parameters outside normalisation layers."""
    norm_ids = {id(p) for m in model.modules() if isinstance(m, _NORM) for p in m.parameters()}
    return [(n, p) for n, p in split_parameters(model, heads) if id(p) not in norm_ids]


def projection_direction(
    params: Sequence[torch.Tensor], seed: int, direction: int, dim: int
) -> list[torch.Tensor]:
    """Direction ``direction`` of the projection: per layer, seeded +-1/sqrt(dim) entries.

    Layer ``l``'s block is drawn from a generator seeded by ``(seed, l, direction)``, so any
    part of ``P`` can be regenerated alone.
    """
    out = []
    for layer, p in enumerate(params):
        g = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, layer, direction]).generate_state(1)[0])
        )
        sign = torch.randint(0, 2, tuple(p.shape), generator=g).to(p.dtype) * 2 - 1
        out.append((sign / dim**0.5).to(p.device))
    return out


def _batches(batches: Iterable[Any], device: torch.device) -> list[Batch]:
    out = []
    for item in batches:
        if isinstance(item, Batch):
            b = item
        elif isinstance(item, tuple | list) and len(item) in (2, 3):
            x, y = move_to(item[0], device), move_to(item[1], device)
            if not isinstance(y, torch.Tensor) or y.ndim != 2:
                raise fail("batches", "targets as (B, T) tensors", type(y).__name__)
            b = Batch(x, y, torch.empty(0, dtype=torch.long), missing_mask(y), None)
        else:
            raise fail(
                "batches",
                "(inputs, targets[, indices]) items or Batch objects",
                type(item).__name__,
                error=TypeError,
            )
        out.append(b)
    if not out:
        raise fail("batches", "at least one batch", "none")
    return out


@torch.no_grad()
def projected_gradients(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    heads: nn.Module | str | None = None,
    projection_dim: int = 32,
    chunk: int = 8,
    random_state: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Base logits and projected logit gradients of a binary multi-task model.

    Parameters
    ----------
    model : nn.Module
        Evaluated in ``eval()`` mode (restored afterwards); outputs ``(B, T)`` logits.
    batches : iterable
        ``(inputs, targets[, indices])`` items or :class:`~stgmtl.loop.Batch` objects.
    heads : nn.Module, str or None
        The task heads (excluded from the parameters), see :mod:`stgmtl.record.functional`.
    projection_dim : int
        ``d``.
    chunk : int
        Directions evaluated at once (``torch.func.vmap`` over ``jvp``).
    random_state : int
        Seed of the projection.
    progress : bool
        Progress bar over directions.

    Returns
    -------
    logits : np.ndarray
        float64 ``(N, T)`` at the trained weights.
    features : np.ndarray
        float64 ``(N, T, d)``: ``features[n, t] = P^T grad_theta z_t(x_n)``.
    targets : np.ndarray
        float64 ``(N, T)`` (NaN where missing).
    observed : np.ndarray
        bool ``(N, T)``.
    """
    d = check_int("projection_dim", projection_dim, low=1)
    check_int("chunk", chunk, low=1)
    seed = seed_from("random_state", random_state)
    inner = unwrap(model)
    device = next(inner.parameters()).device
    data = _batches(batches, device)
    t = int(data[0].targets.shape[1])
    named = _gradtag_parameters(inner, resolve_heads(inner, heads, t))
    names = [n for n, _ in named]
    primals = tuple(p.detach() for _, p in named)
    was_training = inner.training
    inner.eval()
    try:
        base = [probe_forward(inner, b.inputs, seed=seed) for b in data]
        if any(z.ndim != 2 or z.shape[1] != t for z in base):
            raise fail("model", f"binary logits of shape (B, {t})", tuple(base[0].shape))
        feats = [torch.zeros((z.shape[0], t, d), dtype=torch.float64) for z in base]
        bar = tqdm(
            total=d,
            disable=not progress,
            desc="grad-tag",
            unit="dir",
            leave=False,
            delay=PROGRESS_DELAY_S,
        )
        for k0 in range(0, d, chunk):
            ks = range(k0, min(k0 + chunk, d))
            dirs = [projection_direction(primals, seed, k, d) for k in ks]
            tangents = tuple(
                torch.stack([dd[layer] for dd in dirs]) for layer in range(len(primals))
            )
            for b, f in zip(data, feats, strict=True):

                def logits(*ps: torch.Tensor, x: Any = b.inputs) -> torch.Tensor:
                    return probe_forward(
                        inner, x, seed=seed, params=dict(zip(names, ps, strict=True))
                    )  # noqa: B023

                def directional(*tang: torch.Tensor) -> torch.Tensor:
                    return torch.func.jvp(logits, primals, tang)[1]

                with isolated_rng(seed, device), warnings.catch_warnings():
                    # torch's forward-mode AD loads its decompositions through the deprecated
                    # torch.jit.script on first use: nothing a user can act on
                    warnings.filterwarnings("ignore", ".*torch.jit.script.*", DeprecationWarning)
                    out = torch.func.vmap(directional)(*tangents)  # (K, B, T)
                f[:, :, k0 : k0 + len(ks)] = out.permute(1, 2, 0).double().cpu()
            bar.update(len(ks))
        bar.close()
    finally:
        inner.train(was_training)
    y = torch.cat([b.targets.detach().double().cpu() for b in data])
    m = torch.cat(
        [
            (torch.ones_like(b.targets, dtype=torch.bool) if b.mask is None else b.mask).cpu()
            for b in data
        ]
    )
    y = torch.where(m, y, torch.nan)
    ok = torch.isnan(y) | (y == 0) | (y == 1)
    if not bool(ok.all()):
        raise fail(
            "batches",
            "binary targets (0/1; NaN or negative = missing) for grad-tag",
            "other values",
        )
    return (torch.cat(base).double().cpu().numpy(), torch.cat(feats).numpy(), y.numpy(), m.numpy())


def _bce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(z) - y * z


def fit_logistic(
    x: torch.Tensor,
    offset: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    l2: float,
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
) -> torch.Tensor:
    """Batched ridge logistic regression with offsets, by damped Newton steps (float64).

    Minimises, per problem ``p``, ``sum_r weight[p, r] * BCE(offset[p, r] + x[p, r] . w, y[p, r])
    / sum_r weight[p, r] + (lam_p / 2) |w|^2`` with ``lam_p = l2 * sum_r weight[p, r] |x[p, r]|^2
    / (sum_r weight[p, r] * d)`` (ridge relative to the mean squared feature).

    Parameters
    ----------
    x : torch.Tensor
        ``(P, R, d)`` features.
    offset, y, weight : torch.Tensor
        ``(P, R)``; rows of weight 0 are padding.
    l2 : float
        Relative ridge strength (> 0).

    Returns
    -------
    torch.Tensor
        ``(P, d)`` coefficients.
    """
    x, offset, y, weight = (a.double() for a in (x, offset, y, weight))
    y = torch.nan_to_num(y)
    p, _, d = x.shape
    wsum = weight.sum(1).clamp(min=1e-300)
    lam = l2 * (weight[:, :, None] * x * x).sum((1, 2)) / (wsum * d)
    lam = lam.clamp(min=1e-12)
    w = torch.zeros((p, d), dtype=torch.float64, device=x.device)
    eye = torch.eye(d, dtype=torch.float64, device=x.device)

    def objective(w: torch.Tensor) -> torch.Tensor:
        z = offset + torch.einsum("prd,pd->pr", x, w)
        return (weight * _bce(z, y)).sum(1) / wsum + 0.5 * lam * (w * w).sum(1)

    f = objective(w)
    for _ in range(max_iter):
        z = offset + torch.einsum("prd,pd->pr", x, w)
        s = torch.sigmoid(z)
        grad = torch.einsum("pr,prd->pd", weight * (s - y), x) / wsum[:, None] + lam[:, None] * w
        curv = weight * s * (1 - s) / wsum[:, None]
        hess = torch.einsum("pr,prd,pre->pde", curv, x, x) + lam[:, None, None] * eye
        step = torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
        scale = torch.ones(p, dtype=torch.float64, device=x.device)
        for _ in range(40):  # halve the step where the objective would rise
            cand = w - scale[:, None] * step
            fc = objective(cand)
            worse = fc > f + 1e-15 * f.abs()
            if not bool(worse.any()):
                break
            scale = torch.where(worse, scale / 2, scale)
        better = fc <= f + 1e-15 * f.abs()
        w = torch.where(better[:, None], cand, w)
        f = torch.where(better, fc, f)
        if float((scale[:, None] * step).abs().max()) < tol:
            break
    return w


def _subsets(
    t: int, mode: str, n_subsets: int, size: int, rng: np.random.Generator
) -> list[tuple[int, ...]]:
    if mode == "pairs":
        return [(i,) for i in range(t)] + list(itertools.combinations(range(t), 2))
    size = min(size, t)
    return [
        tuple(sorted(rng.choice(t, size=size, replace=False).tolist())) for _ in range(n_subsets)
    ]


def subset_losses(
    subsets: Sequence[Sequence[int]],
    fit: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    held: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    l2: float,
    *,
    batch: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Held-out linearised loss of each member task of each subset, after fitting on the subset.

    Parameters
    ----------
    subsets : sequence of sequence of int
        Task subsets (non-empty).
    fit, held : tuple of torch.Tensor
        ``(features (n, T, d), logits (n, T), targets (n, T), observed (n, T) bool)`` of the fit
        and held-out samples.
    l2 : float
        Relative ridge strength (see :func:`fit_logistic`).
    batch : int
        Subsets fitted at once.
    progress : bool

    Returns
    -------
    np.ndarray
        ``(len(subsets), T)``: ``[r, j]`` the held-out mean BCE of task ``j`` under subset ``r``'s
        fitted coefficients (NaN for tasks outside the subset or without held-out labels).
    """
    phi_f, off_f, y_f, m_f = fit
    phi_h, off_h, y_h, m_h = held
    t = off_f.shape[1]
    subsets = [tuple(int(i) for i in s) for s in subsets]
    out = np.full((len(subsets), t), np.nan)
    size = max(len(s) for s in subsets)
    bar = tqdm(
        total=len(subsets),
        disable=not progress,
        desc="grad-tag fits",
        leave=False,
        delay=PROGRESS_DELAY_S,
    )
    for start in range(0, len(subsets), batch):
        part = subsets[start : start + batch]
        idx = torch.tensor([list(s) + [s[0]] * (size - len(s)) for s in part])
        valid = torch.tensor([[k < len(s) for k in range(size)] for s in part])
        p = len(part)
        x = phi_f[:, idx].permute(1, 2, 0, 3).reshape(p, -1, phi_f.shape[-1])
        off = off_f[:, idx].permute(1, 2, 0).reshape(p, -1)
        y = y_f[:, idx].permute(1, 2, 0).reshape(p, -1)
        wt = (m_f[:, idx] & valid[None]).permute(1, 2, 0).reshape(p, -1).double()
        w = fit_logistic(x, off, y, wt, l2)
        zh = off_h[:, idx] + torch.einsum("npkd,pd->npk", phi_h[:, idx], w)  # (n, P, size)
        mh = m_h[:, idx].double()
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = (mh * _bce(zh, torch.nan_to_num(y_h[:, idx]))).sum(0) / mh.sum(0)
        for r, s in enumerate(part):
            out[start + r, list(s)] = loss[r, : len(s)].numpy()
        bar.update(p)
    bar.close()
    return out


def subset_affinity(
    subsets: Sequence[Sequence[int]], losses: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Affinity ``values[i, j]`` and ``counts`` from per-subset losses (:func:`subset_losses`).

    When no subset has more than two tasks (singletons and pairs), each pair ``{i, j}`` gives
    ``values[i, j] = 1 - L_j({i, j}) / L_j({j})``. Otherwise ``values[i, j] = 1 -
    mean_{S contains i, j} L_j(S) / mean_{S contains j, not i} L_j(S)``. Diagonal NaN;
    ``counts[i, j]`` the subsets holding both.
    """
    subsets = [tuple(int(i) for i in s) for s in subsets]
    t = losses.shape[1]
    values = np.full((t, t), np.nan)
    counts = np.zeros((t, t), dtype=np.int64)
    single = np.full(t, np.nan)
    for r, s in enumerate(subsets):
        if len(s) == 1:
            single[s[0]] = losses[r, s[0]]
    if all(len(s) <= 2 for s in subsets):
        for r, s in enumerate(subsets):
            if len(s) == 2:
                i, j = s
                values[i, j] = 1.0 - losses[r, j] / single[j]
                values[j, i] = 1.0 - losses[r, i] / single[i]
                counts[i, j] += 1
                counts[j, i] += 1
    else:
        member = np.zeros((len(subsets), t), dtype=bool)
        for r, s in enumerate(subsets):
            member[r, list(s)] = True
        lz = np.where(member, np.nan_to_num(losses), 0.0)
        mf = member.astype(np.float64)
        with_n = mf.T @ mf
        without_n = (1 - mf).T @ mf
        with np.errstate(invalid="ignore", divide="ignore"):
            values = 1.0 - ((mf.T @ lz) / with_n) / (((1 - mf).T @ lz) / without_n)
        values[(with_n == 0) | (without_n == 0)] = np.nan
        counts = with_n.astype(np.int64)
    np.fill_diagonal(values, np.nan)
    np.fill_diagonal(counts, 0)
    return values, counts


def grad_tag_affinity(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    task_names: Sequence[str] | None = None,
    heads: nn.Module | str | None = None,
    projection_dim: int = 32,
    l2: float | str = "auto",
    holdout: float = 0.5,
    subsets: str = "auto",
    n_subsets: int = 2000,
    subset_size: int = 5,
    max_pair_tasks: int = 64,
    offsets: bool = False,
    chunk: int = 8,
    random_state: int = 0,
    progress: bool = False,
) -> TaskAffinity:
    """Grad-TAG's post-hoc affinity of a trained binary multi-task model (``signal="grad-tag"``).

    See the module docstring for the method.

    Parameters
    ----------
    model : nn.Module
        The trained model (the linearisation point).
    batches : iterable
        The probe subset: ``(inputs, targets[, indices])`` items or
        :class:`~stgmtl.loop.Batch` objects (a few hundred samples is typical).
    task_names : sequence of str, optional
    heads : nn.Module, str or None
        The task heads (see :mod:`stgmtl.record.functional`).
    projection_dim : int
        Dimension ``d`` of the projected gradients (default 32; each direction costs about two
        forward passes over the probe samples).
    l2 : float or "auto"
        Relative ridge strength of the logistic fits; ``"auto"`` (default): the value of
        :data:`L2_GRID` with the lowest mean held-out loss of the single-task fits.
    holdout : float
        Fraction of probe samples held out to evaluate the fitted losses (default 0.5).
    subsets : {"auto", "pairs", "sampled"}
        ``"pairs"``: every singleton and pair; ``"sampled"``: ``n_subsets`` random subsets of
        ``subset_size`` tasks; ``"auto"``: pairs up to ``max_pair_tasks`` tasks.
    n_subsets, subset_size, max_pair_tasks : int
    offsets : bool
        False (default, as the official code): fit ``b + phi . w`` with an intercept ``b``;
        True: fit ``z + phi . w`` around the trained logits ``z`` (see the module docstring for
        why this is not the default).
    chunk : int
        Projection directions per vectorised forward-mode pass.
    random_state : int
        Seeds the projection, the fit / held-out split and the subset sample.
    progress : bool

    Returns
    -------
    TaskAffinity
        ``source->recipient``; diagonal NaN; ``counts[i, j]``: fitted subsets behind the pair.
    """
    if l2 != "auto":
        check_float("l2", l2, low=0.0, low_open=True)
    check_float("holdout", holdout, low=0.0, high=1.0, low_open=True)
    check_choice("subsets", subsets, ("auto", "pairs", "sampled"))
    check_int("n_subsets", n_subsets, low=1)
    check_int("subset_size", subset_size, low=2)
    check_int("max_pair_tasks", max_pair_tasks, low=2)
    check_bool("offsets", offsets)
    seed = seed_from("random_state", random_state)
    logits, phi, y, m = projected_gradients(
        model,
        batches,
        heads=heads,
        projection_dim=projection_dim,
        chunk=chunk,
        random_state=seed,
        progress=progress,
    )
    n, t = logits.shape
    names = check_names("task_names", task_names, t)
    if not offsets:
        phi, logits = _with_intercept(phi), np.zeros_like(logits)
    rng = np.random.default_rng([seed, 11])
    order = rng.permutation(n)
    n_held = int(round(holdout * n))
    if n_held < 1 or n_held >= n:
        raise fail("batches", f"at least 2 samples to split with holdout={holdout}", f"{n}")
    held_idx, fit_idx = np.sort(order[:n_held]), np.sort(order[n_held:])

    def part(ix: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(phi[ix]),
            torch.from_numpy(logits[ix]),
            torch.from_numpy(y[ix]),
            torch.from_numpy(m[ix]),
        )

    mode = ("pairs" if t <= max_pair_tasks else "sampled") if subsets == "auto" else subsets
    chosen = _subsets(t, mode, n_subsets, subset_size, rng)
    fit, held = part(fit_idx), part(held_idx)
    grid: dict[str, float] = {}
    if l2 == "auto":
        singles = [(j,) for j in range(t)]
        for value in L2_GRID:
            grid[repr(value)] = float(np.nanmean(subset_losses(singles, fit, held, value)))
        l2 = min(L2_GRID, key=lambda v: grid[repr(v)])
    batch = max(1, 4096 // max(len(s) for s in chosen))
    losses = subset_losses(chosen, fit, held, float(l2), batch=batch, progress=progress)
    values, counts = subset_affinity(chosen, losses)
    return TaskAffinity(
        task_names=names,
        values=values,
        signal="grad-tag",
        orientation="source->recipient",
        counts=counts,
        meta={
            "formula": "1 - Lhat_j({i,j}) / Lhat_j({j}) (pairs), Lhat: held-out BCE of the "
            "linearised model fitted on the subset",
            "offsets": bool(offsets),
            "source": "post-hoc, trained weights",
            "projection_dim": int(projection_dim),
            "l2": float(l2),
            "l2_grid_single_loss": grid,
            "holdout": float(holdout),
            "subsets": mode,
            "n_subsets": len(chosen),
            "probe_samples": int(n),
            "random_state": seed,
        },
    )


def _with_intercept(phi: np.ndarray) -> np.ndarray:
    """``phi`` ``(n, T, d)`` with a constant feature appended: the intercept of the logistic fit,
    scaled to the root-mean-square feature so that the relative ridge treats it like the rest."""
    rms = float(np.sqrt(np.mean(phi * phi))) if phi.size else 1.0
    const = np.full((*phi.shape[:2], 1), rms if rms > 0 else 1.0, dtype=phi.dtype)
    return np.concatenate([phi, const], axis=2)


class GradTAGCollector(Hook):
    """Keeps the first ``n_samples`` training samples of the latest epoch (Grad-TAG's probe set).

    Used by :func:`stgmtl.record_affinity`; after training,
    ``grad_tag_affinity(model, collector.batches)``.

    Parameters
    ----------
    n_samples : int
        Probe subset size (default 256).
    """

    def __init__(self, n_samples: int = 256) -> None:
        self.n_samples = check_int("n_samples", n_samples, low=2)
        self.batches: list[Batch] = []
        self._held = 0
        self._restart = False

    def after_step(self, step: Step) -> None:
        """Keep (a prefix of) the step's batch while fewer than ``n_samples`` are held."""
        if self._restart:
            self.batches, self._held, self._restart = [], 0, False
        need = self.n_samples - self._held
        if need <= 0:
            return
        b = step.batch
        k = min(need, int(b.targets.shape[0]))
        self.batches.append(
            Batch(
                _take(b.inputs, k),
                b.targets[:k].detach().clone(),
                b.indices[:k].detach().clone(),
                None if b.mask is None else b.mask[:k].clone(),
                None,
            )
        )
        self._held += k

    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        """The next epoch's first samples replace the held ones."""
        self._restart = True


def _take(x: Any, k: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x[:k].detach().clone()
    if isinstance(x, tuple | list):
        return type(x)(_take(v, k) for v in x)
    if isinstance(x, dict):
        return {key: _take(v, k) for key, v in x.items()}
    return x
