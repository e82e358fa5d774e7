"""Principled Task Grouping's transfer gains (Wang, Pan and Yu 2024, arXiv 2402.15328).

On a probed step, for every task ``j`` and every pair ``{i, j}`` (combinations *with*
replacement, so ``{j, j}`` too), the shared parameters are moved by the step the training
optimizer *would* take (its state included, nothing written: :func:`~stgmtl.record.tag.
preview_step`) on the summed loss of the combination, and the members' losses are re-evaluated
on the same batch. The official code (``LOGO-CUHKSZ/Principled-Task-Grouping``,
``celeba/ours_code/celeba-ours-collect.py``, read, not copied) takes these real optimizer
steps with the optimizer state backed up and restored, and records the post-step losses; it
does not write down how they become the matrix ``S`` of its grouping programme. The paper's
definition of the transfer gain from ``i`` to ``j`` is

    S(i -> j) = 1 - L_j(Phi_{i,j}, theta_j) / L_j(Phi_{j}, theta_j)

with ``Phi_A`` the shared weights after one step on the tasks of ``A`` and the same
task-specific weights ``theta_j`` in both. This module records exactly that, with ``{j}`` the
step on ``L_j`` alone, and for the diagonal the pair ``{j, j}`` (the step on ``2 L_j``), the only
use of the code's combinations with replacement that fits the definition:
``S(j -> j) = 1 - L_j(Phi_{j,j}) / L_j(Phi_{j})``, the gain of a task from "itself again", which
the grouping objective counts for every member (``sum_{i, k in G} S[i, k]`` includes ``i = k``).

``values[i, j]`` is the mean of ``S(i -> j)`` over the probed steps where both were sampled
(larger = ``i`` helps ``j`` more; 0 = as good as ``j``'s own step). The task heads stay as they
are in every step (the definition's same ``theta_j``; the official code moves each member's head
by its own loss in both numerator and denominator).

Schedule and cost: every ``every``-th step; each probed step samples ``max_tasks`` tasks
(seeded by ``random_state`` and the probe's step count; all tasks when ``T <= max_tasks``) and
measures all their combinations: ``m`` backward passes and ``m (m + 3) / 2`` forward passes for
``m`` sampled tasks (``m = 4``: 14 forwards), so the cost per training step is bounded by
``(m + m (m + 3) / 2 * 0.4) / every`` plain steps whatever ``T`` (defaults ``m = 4``,
``every = 10``: about 1 step in 10 extra). A pair is observed on a fraction ``m (m - 1) / (T (T
- 1))`` of the probed steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from stgmtl._checks import check_int, fail
from stgmtl.record.functional import probe_forward, resolve_heads, split_parameters
from stgmtl.record.probe import AffinityProbe, ProbeContext
from stgmtl.record.tag import TAGProbe, preview_step

__all__ = ["PTGProbe", "ptg_tasks"]


def ptg_tasks(num_tasks: int, max_tasks: int | None, index: int, seed: int) -> np.ndarray:
    """The tasks sampled at the ``index``-th probed step (sorted; all when few enough)."""
    if max_tasks is None or max_tasks >= num_tasks:
        return np.arange(num_tasks)
    rng = np.random.default_rng([seed, 13, index])
    return np.sort(rng.choice(num_tasks, size=max_tasks, replace=False))


class PTGProbe(AffinityProbe):
    """Principled Task Grouping's transfer gains (``signal="ptg"``, source->recipient).

    See the module docstring for the formula, the choice made where the official code is
    silent, and the cost.

    Parameters
    ----------
    heads : nn.Module, str or None
        The task-head submodule (see :mod:`stgmtl.record.functional`); not moved.
    every : int
        Probe every ``every``-th step (default 10).
    max_tasks : int or None
        Tasks sampled per probed step (default 4; ``None``: all, ``T (T + 3) / 2`` forwards).
    **kwargs
        :class:`~stgmtl.record.probe.AffinityProbe` settings.
    """

    signal = "ptg"
    orientation = "source->recipient"
    formula = "1 - L_j(step on L_i + L_j) / L_j(step on L_j); diagonal: step on 2 L_j"

    def __init__(
        self,
        *,
        heads: nn.Module | str | None = None,
        every: int = 10,
        max_tasks: int | None = 4,
        **kwargs: Any,
    ) -> None:
        self.heads = heads
        self.max_tasks = None if max_tasks is None else check_int("max_tasks", max_tasks, low=1)
        super().__init__(every=every, **kwargs)

    def _settings(self) -> dict[str, Any]:
        return {
            "max_tasks": self.max_tasks,
            "heads": self.heads if isinstance(self.heads, str | None) else "module",
        }

    def _measure(self, ctx: ProbeContext) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.optimizer is None:
            raise fail("optimizer", "the training optimizer (PTG previews its step)", None,
                       error=TypeError)  # fmt: skip
        t = int(ctx.batch.targets.shape[1])
        shared = split_parameters(ctx.model, resolve_heads(ctx.model, self.heads, t))
        names = [n for n, _ in shared]
        params = [p for _, p in shared]
        preview_step(ctx.optimizer, [], [])  # reject an unsupported optimizer before any work
        base = ctx.loss_of(probe_forward(ctx.model, ctx.batch.inputs, seed=ctx.seed), ctx.batch)
        if base.shape != (t,):
            raise fail("loss_fn", f"per-task losses of shape ({t},)", tuple(base.shape))
        seen = TAGProbe._observed_tasks(ctx, base.detach())
        tasks = [k for k in ptg_tasks(t, self.max_tasks, ctx.index, self.random_state).tolist()
                 if bool(seen[k])]  # fmt: skip
        grads = {k: torch.autograd.grad(base[k], params, retain_graph=True, allow_unused=True)
                 for k in tasks}  # fmt: skip

        def after(combo: list[int]) -> torch.Tensor:
            g = [_sum([grads[k][n] for k in combo]) for n in range(len(params))]
            moved = preview_step(ctx.optimizer, params, g)  # type: ignore[arg-type]
            with torch.no_grad():
                out = probe_forward(ctx.model, ctx.batch.inputs, seed=ctx.seed,
                                    params=dict(zip(names, moved, strict=True)))  # fmt: skip
                return ctx.loss_of(out, ctx.batch).double()

        values = torch.full((t, t), float("nan"), dtype=torch.float64, device=base.device)
        own = {k: after([k])[k] for k in tasks}
        for a, i in enumerate(tasks):
            for j in tasks[a:]:
                loss = after([i, j])
                values[i, j] = 1.0 - loss[j] / own[j]
                values[j, i] = 1.0 - loss[i] / own[i]
        observed = torch.isfinite(values)
        return values, observed


def _sum(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Sum of gradients, ``None`` (no gradient) counting as zero."""
    real = [p for p in parts if p is not None]
    if not real:
        return None
    out = real[0]
    for p in real[1:]:
        out = out + p
    return out
