"""Gradient cosine similarity between tasks: on the shared parameters and on the shared
representation.

``"grad-cosine"`` (:class:`GradCosineProbe`, symmetric): TAG's cosine-similarity baseline. On a
probed step, each task's loss gradient ``g_t`` with respect to the shared weights (parameters
of two or more dimensions outside the heads, as TAG's baseline; ``weights_only=False`` for all
shared parameters), and ``values[i, j] = mean over probed steps of cos(g_i, g_j)``. The
gradients are **sketched** (CountSketch: each coordinate added with a seeded random sign into
one of ``sketch_dim`` seeded buckets, regenerated per layer and cached), so memory is ``T x
sketch_dim`` plus one bucket index and sign per shared parameter, never ``T x |theta|``; the
sketch keeps inner products unbiased with a relative error of about ``1 / sqrt(sketch_dim)``
(``sketch_dim=None``, or at least the number of shared weights, is exact). Cost per probed step:
one forward with graph and ``T`` backward passes through the network, batched ``chunk`` tasks at
a time (default every 10th step).

``"rep-cosine"`` (:class:`RepCosineProbe`, symmetric): the same on the shared *representation*
``z`` (the heads' input): ``g_t = dL_t / dz``, flattened over the batch. ``z`` is captured from
the training forward by a forward pre-hook on the heads (no extra forward). With a linear head
``logits = z W^T + b`` the gradients never need to be formed: ``g_t[b] = r[b, t] W_t`` with
``r = dL / dlogits``, so ``<g_i, g_j> = (r_i . r_j) (W_i . W_j)`` and the ``(T, T)`` Gram matrix
is ``(R^T R) * (W W^T)``: ``B T^2 + T^2 D`` multiply-adds per step, cheap enough for every step at
thousands of tasks. Other heads are replicated per task (one batched forward and one backward
through the heads for all tasks, ``T x B x D`` memory; ``chunk`` tasks at a time).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stgmtl._checks import check_bool, check_int
from stgmtl.record.functional import (
    is_probing,
    probe_forward,
    resolve_heads,
    split_parameters,
    unwrap,
)
from stgmtl.record.probe import AffinityProbe, ProbeContext

__all__ = ["GradCosineProbe", "RepCosineProbe", "cosine_from_gram"]


def cosine_from_gram(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines ``G[i, j] / sqrt(G[i, i] G[j, j])`` and the mask of pairs with both norms > 0."""
    d = torch.diagonal(gram).clamp(min=0.0)
    ok = d > 0
    norm = torch.sqrt(torch.where(ok, d, 1.0))
    cos = (gram / norm[:, None] / norm[None, :]).clamp(-1.0, 1.0)
    return cos, ok[:, None] & ok[None, :]


class GradCosineProbe(AffinityProbe):
    """Cosine of per-task gradients on the shared weights (``signal="grad-cosine"``).

    Parameters
    ----------
    heads : nn.Module, str or None
        The task-head submodule (see :mod:`stgmtl.record.functional`).
    every : int
        Probe every ``every``-th step (default 10).
    sketch_dim : int or None
        CountSketch width (default 1024); ``None`` keeps the exact gradients (``T x |theta|``
        memory).
    weights_only : bool
        Only parameters with two or more dimensions, as TAG's baseline (default ``True``).
    chunk : int
        Tasks whose gradients one batched backward computes (``is_grads_batched``; default 4);
        the backward's memory grows with it.
    **kwargs
        :class:`~stgmtl.record.probe.AffinityProbe` settings.
    """

    signal = "grad-cosine"
    orientation = "symmetric"
    formula = "cos(dL_i/dtheta_s, dL_j/dtheta_s), shared weights, CountSketch"

    def __init__(
        self,
        *,
        heads: nn.Module | str | None = None,
        every: int = 10,
        sketch_dim: int | None = 1024,
        weights_only: bool = True,
        chunk: int = 4,
        **kwargs: Any,
    ) -> None:
        self.heads = heads
        self.chunk = check_int("chunk", chunk, low=1)
        self.sketch_dim = None if sketch_dim is None else check_int("sketch_dim", sketch_dim, low=1)
        self.weights_only = check_bool("weights_only", weights_only)
        self._hash: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        super().__init__(every=every, **kwargs)

    def _settings(self) -> dict[str, Any]:
        return {
            "sketch_dim": self.sketch_dim,
            "weights_only": self.weights_only,
            "chunk": self.chunk,
            "heads": self.heads if isinstance(self.heads, str | None) else "module",
        }

    def _buckets(self, k: int, layer: int, name: str, p: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (layer, name)
        cached = self._hash.get(key)
        if cached is None or cached[0].numel() != p.numel() or cached[0].device != p.device:
            g = torch.Generator().manual_seed(int(self.random_state) * 1_000_003 + layer)
            idx = torch.randint(0, k, (p.numel(),), generator=g)
            sign = torch.randint(0, 2, (p.numel(),), generator=g).to(p.dtype) * 2 - 1
            cached = (idx.to(p.device), sign.to(p.device))
            self._hash[key] = cached
        return cached

    @staticmethod
    def _grads(
        losses: torch.Tensor, part: list[int], params: list[nn.Parameter]
    ) -> tuple[torch.Tensor | None, ...]:
        """Gradients of ``losses[part]`` w.r.t. ``params``, stacked ``(len(part), *shape)``."""
        if len(part) == 1:
            grads = torch.autograd.grad(losses[part[0]], params, retain_graph=True,
                                        allow_unused=True)  # fmt: skip
            return tuple(None if g is None else g.unsqueeze(0) for g in grads)
        pick = torch.zeros((len(part), losses.shape[0]), dtype=losses.dtype, device=losses.device)
        pick[torch.arange(len(part)), torch.tensor(part)] = 1.0
        return torch.autograd.grad(losses, params, grad_outputs=pick, is_grads_batched=True,
                                   retain_graph=True, allow_unused=True)  # fmt: skip

    def _measure(self, ctx: ProbeContext) -> tuple[torch.Tensor, torch.Tensor]:
        t = int(ctx.batch.targets.shape[1])
        heads = resolve_heads(ctx.model, self.heads, t)
        shared = split_parameters(ctx.model, heads, weights_only=self.weights_only)
        params = [p for _, p in shared]
        total = sum(p.numel() for p in params)
        exact = self.sketch_dim is None or self.sketch_dim >= total
        k = total if exact else int(self.sketch_dim)  # type: ignore[arg-type]
        losses = ctx.loss_of(probe_forward(ctx.model, ctx.batch.inputs, seed=ctx.seed), ctx.batch)
        dev = losses.device
        sketch = torch.zeros((t, k), dtype=params[0].dtype, device=dev)
        has = torch.isfinite(losses.detach())
        if ctx.batch.mask is not None:
            has &= ctx.batch.mask.any(dim=0).to(dev)
        tasks = [i for i in range(t) if bool(has[i])]
        for start in range(0, len(tasks), self.chunk):
            part = tasks[start : start + self.chunk]
            block = sketch[part]  # (c, k)
            offset = 0
            for layer, ((name, p), g) in enumerate(zip(shared, self._grads(losses, part, params),
                                                       strict=True)):  # fmt: skip
                flat = torch.zeros_like(block[:, : p.numel()]) if g is None else g.reshape(
                    len(part), -1).to(block)  # fmt: skip
                if exact:
                    block[:, offset : offset + p.numel()] = flat
                else:
                    idx, sign = self._buckets(k, layer, name, p)
                    block.index_add_(1, idx, flat * sign)
                offset += p.numel()
            sketch[part] = block
        s = sketch.double()
        cos, ok = cosine_from_gram(s @ s.T)
        return cos, ok & has[:, None] & has[None, :]


class RepCosineProbe(AffinityProbe):
    """Cosine of per-task gradients on the shared representation (``signal="rep-cosine"``).

    Parameters
    ----------
    heads : nn.Module, str or None
        The task-head submodule, whose first positional input is the shared representation.
        Default: the last ``nn.Linear`` with one output per task.
    model : nn.Module, optional
        The model, to attach the capture hook now (else at the first probed step, which then
        runs one extra forward to capture ``z``).
    every : int
        Probe every ``every``-th step (default 1: every step).
    chunk : int or None
        Tasks replicated at once through non-linear heads (default all).
    **kwargs
        :class:`~stgmtl.record.probe.AffinityProbe` settings.
    """

    signal = "rep-cosine"
    orientation = "symmetric"
    formula = "cos(dL_i/dz, dL_j/dz), z = the heads' input (shared representation), batch-flat"

    def __init__(
        self,
        *,
        heads: nn.Module | str | None = None,
        model: nn.Module | None = None,
        every: int = 1,
        chunk: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.heads = heads
        self.chunk = None if chunk is None else check_int("chunk", chunk, low=1)
        self._module: nn.Module | None = None
        self._handle: Any = None
        self._z: torch.Tensor | None = None
        self._captures = 0
        self._used = 0
        self._forcing = False
        super().__init__(every=every, **kwargs)
        if model is not None:
            if self.task_names is None and not isinstance(heads, nn.Module):
                raise ValueError("model: attaching needs task_names (for T) or a heads module")
            self.attach(model)

    def _settings(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk,
            "heads": self.heads if isinstance(self.heads, str | None) else "module",
        }

    # ------------------------------------------------------------- capture
    def attach(self, model: nn.Module) -> nn.Module:
        """Register the capture hook on the model's heads; returns the heads module."""
        t = self.num_tasks
        if t is None and not isinstance(self.heads, nn.Module):
            raise ValueError("attach: the number of tasks is not known yet; pass task_names")
        return self._hook(resolve_heads(unwrap(model), self.heads, t or 0))

    def _hook(self, heads: nn.Module) -> nn.Module:
        if heads is not self._module:
            self.detach()
            self._module = heads
            self._handle = heads.register_forward_pre_hook(self._capture)
        return heads

    def detach(self) -> None:
        """Remove the capture hook (the probe keeps its recorded state)."""
        if self._handle is not None:
            self._handle.remove()
        self._handle, self._module, self._z = None, None, None

    def _capture(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._forcing or (not is_probing() and module.training and torch.is_grad_enabled()):
            if args and isinstance(args[0], torch.Tensor):
                self._z = args[0].detach()
                self._captures += 1

    def _representation(self, ctx: ProbeContext, heads: nn.Module) -> torch.Tensor:
        b = int(ctx.batch.targets.shape[0])
        fresh = self._captures != self._used and self._z is not None and self._z.shape[0] == b
        if not fresh:  # no capture from this step's forward: run one
            self._forcing = True
            try:
                with torch.no_grad():
                    probe_forward(ctx.model, ctx.batch.inputs, seed=ctx.seed)
            finally:
                self._forcing = False
        self._used = self._captures
        z = self._z
        if z is None or z.shape[0] != b:
            raise ValueError(
                "heads: the heads module was not called with the shared representation (batch "
                f"size {b}) as its first positional input in the model's forward"
            )
        return z

    # ------------------------------------------------------------- measure
    def _measure(self, ctx: ProbeContext) -> tuple[torch.Tensor, torch.Tensor]:
        t = int(ctx.batch.targets.shape[1])
        heads = self._hook(resolve_heads(ctx.model, self.heads, t))
        z = self._representation(ctx, heads)
        if isinstance(heads, nn.Linear) and heads.out_features == t and z.ndim == 2:
            gram = self._linear_gram(ctx, heads, z)
        else:
            gram = self._replicated_gram(ctx, heads, z, t)
        has = torch.isfinite(torch.diagonal(gram))
        if ctx.batch.mask is not None:
            has &= ctx.batch.mask.any(dim=0).to(gram.device)
        cos, ok = cosine_from_gram(torch.where(has[:, None] & has[None, :], gram, 0.0))
        return cos, ok & has[:, None] & has[None, :]

    @staticmethod
    def _linear_gram(ctx: ProbeContext, heads: nn.Linear, z: torch.Tensor) -> torch.Tensor:
        w = heads.weight.detach()
        b = None if heads.bias is None else heads.bias.detach()
        with torch.enable_grad():
            logits = torch.nn.functional.linear(z, w, b).detach().requires_grad_(True)
            losses = ctx.loss_of(logits, ctx.batch)
            (r,) = torch.autograd.grad(losses.sum(), logits)
        r, w = r.double(), w.double()
        return (r.T @ r) * (w @ w.T)

    def _replicated_gram(
        self, ctx: ProbeContext, heads: nn.Module, z: torch.Tensor, t: int
    ) -> torch.Tensor:
        b = z.shape[0]
        step = self.chunk or t
        rows = []
        for start in range(0, t, step):
            tasks = torch.arange(start, min(start + step, t), device=z.device)
            c = len(tasks)
            zc = z.unsqueeze(0).expand(c, *z.shape).reshape(c * b, *z.shape[1:]).clone()
            zc.requires_grad_(True)
            with torch.enable_grad():
                out = probe_forward(heads, zc, seed=ctx.seed)
                out = out.reshape(c, b, *out.shape[1:])
                own = torch.stack([ctx.loss_of(out[k], ctx.batch)[tasks[k]] for k in range(c)])
                (g,) = torch.autograd.grad(own.sum(), zc)
            rows.append(g.reshape(c, -1).double())
        flat = torch.cat(rows)
        return flat @ flat.T
