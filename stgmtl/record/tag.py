"""TAG's lookahead inter-task affinity (Fifty et al., NeurIPS 2021), optimizer-consistent.

On a probed step, for each source task ``i`` the shared parameters are moved by the step the
training optimizer *would* take on task ``i``'s loss alone (its momentum / Adam moments, weight
decay and learning rate included; the task heads stay as they are), and every task's loss is
re-evaluated on the same batch::

    Z(i -> j) = (1 - L_j(theta'_{s|i}) / L_j(theta_s)) / lr

``values[i, j]`` is the mean of ``Z(i -> j)`` over the probed steps (larger = task ``i``'s step
helps task ``j`` more). Dividing by the learning rate makes steps of different learning rates
comparable, as both official code bases do (CelebA notebook and Taskonomy patch).

Faithful where the official Taskonomy code is not: the preview uses the optimizer's state
(SGD's momentum buffer, Adam's moments and step count; the Taskonomy patch looks the buffer up
in the parameter group, where it never is, and so drops momentum), and the lookahead forward
runs on copies of the buffers (its train-mode forward would update BatchNorm running statistics).
Both forwards of a probed step (the base and each lookahead) draw the same dropout masks.

Schedule and cost: every ``every``-th step (the Taskonomy code probes every 10th batch, the
CelebA code every step); with ``max_sources`` set, each probed step previews at most that many
sources, rotating through a seeded permutation of the tasks so that all are covered every
``ceil(T / max_sources)`` probed steps (all sources each time when ``T <= max_sources``). One
probed step costs about one forward with graph plus, per source, one backward and one forward:
roughly ``0.4 + 1.0 * S`` plain training steps for ``S`` sources, so the added cost per training
step is about ``(0.4 + S) / every`` steps (defaults ``S <= 8``, ``every = 10``: under 0.9).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from stgmtl._checks import check_bool, check_int, fail
from stgmtl.record.functional import probe_forward, resolve_heads, split_parameters
from stgmtl.record.probe import AffinityProbe, ProbeContext

__all__ = ["TAGProbe", "preview_step", "source_schedule"]


def _state(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> dict[str, Any]:
    return optimizer.state.get(p, {})  # type: ignore[call-overload, no-any-return]


def _sgd(
    p: torch.Tensor, g: torch.Tensor, group: dict[str, Any], st: dict[str, Any]
) -> torch.Tensor:
    lr = float(group["lr"])
    d = -g if group.get("maximize", False) else g
    wd = float(group.get("weight_decay", 0.0))
    if wd != 0.0:
        d = d + wd * p
    momentum = float(group.get("momentum", 0.0))
    if momentum != 0.0:
        buf = st.get("momentum_buffer")
        if buf is None:
            buf = d
        else:
            buf = momentum * buf + (1.0 - float(group.get("dampening", 0.0))) * d
        d = d + momentum * buf if group.get("nesterov", False) else buf
    return p - lr * d


def _adam(
    p: torch.Tensor, g: torch.Tensor, group: dict[str, Any], st: dict[str, Any], decoupled: bool
) -> torch.Tensor:
    lr = float(group["lr"])
    beta1, beta2 = (float(b) for b in group["betas"])
    eps = float(group["eps"])
    wd = float(group.get("weight_decay", 0.0))
    d = -g if group.get("maximize", False) else g
    step = float(st["step"]) + 1.0 if "step" in st else 1.0
    if wd != 0.0:
        if decoupled:
            p = p * (1.0 - lr * wd)
        else:
            d = d + wd * p
    m = st.get("exp_avg")
    v = st.get("exp_avg_sq")
    m = (1.0 - beta1) * d if m is None else torch.lerp(m, d, 1.0 - beta1)
    v = (1.0 - beta2) * d * d if v is None else v * beta2 + (1.0 - beta2) * d * d
    if group.get("amsgrad", False):
        vmax = st.get("max_exp_avg_sq")
        v = v if vmax is None else torch.maximum(vmax, v)
    bc1 = 1.0 - beta1**step
    bc2_sqrt = math.sqrt(1.0 - beta2**step)
    denom = v.sqrt() / bc2_sqrt + eps
    return p - (lr / bc1) * m / denom


def preview_step(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
) -> list[torch.Tensor]:
    """The values ``params`` would have after ``optimizer.step()`` with gradients ``grads``.

    Nothing is written: parameters, optimizer state and step counts stay as they are. Follows
    torch's update rules of ``SGD`` (momentum, dampening, Nesterov, weight decay, maximize) and
    ``Adam`` / ``AdamW`` (bias correction, L2 or decoupled weight decay, AMSGrad, maximize).
    A parameter in no parameter group keeps its value; a ``None`` gradient counts as zero.

    Raises
    ------
    TypeError
        For another optimizer class.
    """
    if not isinstance(optimizer, torch.optim.SGD | torch.optim.Adam):
        raise fail(
            "optimizer",
            "torch.optim.SGD, Adam or AdamW (the optimizers whose step TAG's lookahead previews)",
            type(optimizer).__name__,
            error=TypeError,
        )
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    out = []
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            group = group_of.get(id(p))
            if group is None:
                out.append(p.detach())
                continue
            grad = torch.zeros_like(p) if g is None else g.detach()
            st = _state(optimizer, p)
            if isinstance(optimizer, torch.optim.SGD):
                out.append(_sgd(p.detach(), grad, group, st))
            else:
                decoupled = bool(
                    group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW))
                )
                out.append(_adam(p.detach(), grad, group, st, decoupled))
    return out


def source_schedule(num_tasks: int, max_sources: int | None, index: int, seed: int) -> np.ndarray:
    """The source tasks previewed at the ``index``-th probed step.

    All tasks when ``max_sources`` is ``None`` or ``>= num_tasks``; else one of
    ``ceil(T / max_sources)`` near-equal chunks of a permutation drawn per cycle from
    ``(seed, cycle)``, so every task is a source exactly once per cycle.
    """
    if max_sources is None or max_sources >= num_tasks:
        return np.arange(num_tasks)
    chunks = -(-num_tasks // max_sources)
    cycle, part = divmod(index, chunks)
    perm = np.random.default_rng([seed, 7, cycle]).permutation(num_tasks)
    return np.sort(np.array_split(perm, chunks)[part])


class TAGProbe(AffinityProbe):
    """TAG's lookahead inter-task affinity (``signal="tag"``, source->recipient).

    See the module docstring for the formula, faithfulness and cost.

    Parameters
    ----------
    heads : nn.Module, str or None
        The task-head submodule (see :mod:`stgmtl.record.functional`); its parameters are not
        moved by the lookahead. Default: the last ``nn.Linear`` with one output per task.
    every : int
        Probe every ``every``-th step (default 10).
    max_sources : int or None
        At most this many source tasks per probed step (default 8; ``None``: all), rotating.
    divide_by_lr : bool
        Divide by the learning rate, as the official code does (default ``True``).
    **kwargs
        :class:`~stgmtl.record.probe.AffinityProbe` settings (``task_names``, ``loss_fn``,
        ``pos_weight``, ``snapshot_epochs``, ``random_state``).
    """

    signal = "tag"
    orientation = "source->recipient"
    formula = "(1 - L_j(theta'_{s|i}) / L_j(theta_s)) / lr, same batch, optimizer-consistent step"

    def __init__(
        self,
        *,
        heads: nn.Module | str | None = None,
        every: int = 10,
        max_sources: int | None = 8,
        divide_by_lr: bool = True,
        **kwargs: Any,
    ) -> None:
        self.heads = heads
        self.max_sources = (
            None if max_sources is None else check_int("max_sources", max_sources, low=1)
        )
        self.divide_by_lr = check_bool("divide_by_lr", divide_by_lr)
        super().__init__(every=every, **kwargs)

    def _settings(self) -> dict[str, Any]:
        return {
            "max_sources": self.max_sources,
            "divide_by_lr": self.divide_by_lr,
            "heads": self.heads if isinstance(self.heads, str | None) else "module",
        }

    def _measure(self, ctx: ProbeContext) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.optimizer is None:
            raise fail(
                "optimizer", "the training optimizer (TAG previews its step)", None, error=TypeError
            )
        t = int(ctx.batch.targets.shape[1])
        heads = resolve_heads(ctx.model, self.heads, t)
        shared = split_parameters(ctx.model, heads)
        names = [n for n, _ in shared]
        params = [p for _, p in shared]
        preview_step(ctx.optimizer, [], [])  # reject an unsupported optimizer before any work
        ids = {id(q) for q in params}
        lr = next(
            (float(g["lr"]) for g in ctx.optimizer.param_groups
             if any(id(p) in ids for p in g["params"])),
            None,
        )  # fmt: skip
        if lr is None or lr <= 0:
            raise fail("optimizer", "a parameter group with lr > 0 holding shared parameters", lr)
        x = ctx.batch.inputs
        base = ctx.loss_of(probe_forward(ctx.model, x, seed=ctx.seed), ctx.batch)
        if base.shape != (t,):
            raise fail("loss_fn", f"per-task losses of shape ({t},)", tuple(base.shape))
        base_d = base.detach().double()
        seen = self._observed_tasks(ctx, base_d)
        values = torch.full((t, t), float("nan"), dtype=torch.float64, device=base.device)
        observed = torch.zeros((t, t), dtype=torch.bool, device=base.device)
        for i in source_schedule(t, self.max_sources, ctx.index, self.random_state).tolist():
            if not bool(seen[i]):
                continue
            grads = torch.autograd.grad(base[i], params, retain_graph=True, allow_unused=True)
            moved = preview_step(ctx.optimizer, params, grads)
            with torch.no_grad():
                out = probe_forward(
                    ctx.model, x, seed=ctx.seed, params=dict(zip(names, moved, strict=True))
                )
                after = ctx.loss_of(out, ctx.batch).double()
            z = 1.0 - after / base_d
            values[i] = z / lr if self.divide_by_lr else z
            observed[i] = seen
        return values, observed

    @staticmethod
    def _observed_tasks(ctx: ProbeContext, base: torch.Tensor) -> torch.Tensor:
        """Tasks with at least one observed label in the batch and a finite positive loss."""
        ok = torch.isfinite(base) & (base > 0)
        if ctx.batch.mask is not None:
            ok &= ctx.batch.mask.any(dim=0).to(ok.device)
        return ok
