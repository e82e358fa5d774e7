"""What affinity probes need from a model, without changing it.

* :func:`resolve_heads` and :func:`split_parameters`: the one protocol by which a probe learns
  which part of a model is shared. A model exposes its **task heads**: the submodule that maps
  the shared representation ``z`` (its first positional input) to the task logits, called once
  per forward, e.g. the final ``nn.Linear(hidden, T)`` of a multi-label network or a module
  wrapping per-task heads (``torch.cat([h(z) for h in self.heads], 1)``). Every parameter
  outside it is *shared*. Without ``heads=``, the last ``nn.Linear`` with ``out_features == T``
  is taken; a model without one gets a ``ValueError`` that says what to pass.
* :func:`probe_forward`: a forward pass that cannot change training, by
  ``torch.func.functional_call`` with **copies of the buffers** (BatchNorm running statistics
  are updated in the copies, never in the model), optional replacement parameters (a lookahead),
  and a **private RNG stream** (dropout masks come from ``seed``; the global torch RNG state is
  restored afterwards, so the training run draws the same numbers as without the probe).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from stgmtl._checks import fail

__all__ = [
    "is_probing",
    "isolated_rng",
    "probe_forward",
    "resolve_heads",
    "split_parameters",
    "unwrap",
]

_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("stgmtl_probing", default=False)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` wrappers.

    Probes run their own forward passes on the inner module, so that no wrapper hook (gradient
    all-reduce, buffer broadcast) fires for them.
    """
    if not isinstance(model, nn.Module):
        raise fail("model", "a torch.nn.Module", type(model).__name__, error=TypeError)
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def resolve_heads(model: nn.Module, heads: nn.Module | str | None, num_tasks: int) -> nn.Module:
    """The task-head submodule of ``model`` (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        The (unwrapped) model.
    heads : nn.Module, str or None
        The head module itself, its dotted name in ``model`` (``"head.4"``), or ``None`` for the
        last ``nn.Linear`` with ``out_features == num_tasks``.
    num_tasks : int
        ``T``.

    Raises
    ------
    ValueError
        When ``heads`` is not a submodule of ``model`` or none can be found.
    """
    if isinstance(heads, str):
        try:
            return model.get_submodule(heads)
        except AttributeError:
            raise fail("heads", "the dotted name of a submodule of the model", heads) from None
    if heads is not None:
        if not isinstance(heads, nn.Module):
            raise fail("heads", "an nn.Module, a submodule name or None", heads, error=TypeError)
        if not any(m is heads for m in model.modules()):
            raise fail("heads", "a submodule of the model", type(heads).__name__)
        return heads
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_tasks]
    if not found:
        raise ValueError(
            f"heads: the model has no nn.Linear with out_features == {num_tasks} (one logit per "
            "task); pass heads=<the submodule that maps the shared representation to the task "
            "logits> (called once per forward with the representation as its first input)"
        )
    return found[-1]


def split_parameters(
    model: nn.Module, heads: nn.Module, *, weights_only: bool = False
) -> list[tuple[str, nn.Parameter]]:
    """The shared parameters of ``model``: those that require grad and are not in ``heads``.

    With ``weights_only`` only parameters of two or more dimensions (weights, not biases or
    normalisation scales), as TAG's cosine-similarity baseline uses.
    """
    head_ids = {id(p) for p in heads.parameters()}
    shared = [
        (n, p)
        for n, p in model.named_parameters()
        if p.requires_grad and id(p) not in head_ids and (not weights_only or p.ndim > 1)
    ]
    if not shared:
        raise ValueError(
            "heads: every trainable parameter of the model is in the heads module; the heads "
            "must be the task-specific part only (the rest of the model is the shared trunk)"
        )
    return shared


def is_probing() -> bool:
    """Whether a probe's own forward pass is running (capture hooks ignore those)."""
    return _PROBING.get()


@contextlib.contextmanager
def _probing() -> Iterator[None]:
    token = _PROBING.set(True)
    try:
        yield
    finally:
        _PROBING.reset(token)


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run with torch's RNG seeded to ``seed``; the previous RNG state is restored afterwards.

    Only the CPU generator and, for a CUDA ``device``, that device's generator are touched.
    """
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if (device.type == "cuda")
        else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(int(seed))
        if device.type == "cuda":
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(int(seed))
        yield


def _call(module: nn.Module, mapping: Mapping[str, torch.Tensor], inputs: Any) -> Any:
    func = torch.func.functional_call
    if isinstance(inputs, dict):
        return func(module, dict(mapping), (), inputs, strict=False)
    if isinstance(inputs, tuple | list):
        return func(module, dict(mapping), tuple(inputs), strict=False)
    return func(module, dict(mapping), (inputs,), strict=False)


def probe_forward(
    module: nn.Module,
    inputs: Any,
    *,
    seed: int,
    params: Mapping[str, torch.Tensor] | None = None,
) -> Any:
    """``module(inputs)`` as a probe runs it: copied buffers, private RNG, optional parameters.

    Parameters
    ----------
    module : nn.Module
        Run in its current mode (train or eval).
    inputs : tensor, tuple or dict
        Passed as ``module(x)``, ``module(*x)`` or ``module(**x)``.
    seed : int
        Seed of the private RNG stream (dropout masks).
    params : mapping, optional
        Parameters to use instead of the module's (by ``named_parameters`` name).

    Returns
    -------
    The module's output (with an autograd graph unless run under ``no_grad``).
    """
    buffers = {n: b.clone() for n, b in module.named_buffers()}
    mapping = {**buffers, **(params or {})}
    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    with isolated_rng(seed, device), _probing():
        return _call(module, mapping, inputs)
