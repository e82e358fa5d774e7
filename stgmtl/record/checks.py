"""Input checks of :meth:`stgmtl.DataMapRecorder.update`.

Shapes and dtypes are checked in Python; values with one fused reduction per tensor
(``aminmax``), gathered into a single host transfer, so a bad batch is refused before any
state changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from stgmtl.record.update import CHUNK_ELEMENTS, scratch_buffer

__all__ = ["UpdateRules", "check_update", "check_values", "raise_bad_values"]


@dataclass(frozen=True)
class UpdateRules:
    """What an update must look like: the recorder's configuration as the checks need it."""

    num_tasks: int
    num_samples: int
    task_type: str
    num_classes: int | None
    device: torch.device | None
    validate: bool


def _tensor(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def _is_int(t: torch.Tensor) -> bool:
    return not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool


def check_update(
    rec: UpdateRules, logits: Any, targets: Any, indices: Any, mask: Any, valid: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Check shapes, dtypes and index range; return the arguments detached, on one device.

    Values (finite logits, targets in range) are checked by :func:`check_values` on the rows
    the recorder keeps, so samples outside ``probe_indices`` cost no value pass.
    """
    logits = _tensor("logits", logits).detach()
    targets = _tensor("targets", targets).detach()
    indices = _tensor("indices", indices).detach()
    t = rec.num_tasks
    multiclass = rec.task_type == "multiclass"
    want = f"(B, {t}, C)" if multiclass else f"(B, {t})"
    if not logits.dtype.is_floating_point:
        raise TypeError(f"logits: expected a floating tensor, got dtype {logits.dtype}")
    if logits.ndim != (3 if multiclass else 2):
        raise ValueError(
            f"logits: expected shape {want} for {rec.task_type} tasks, got {tuple(logits.shape)}"
        )
    if logits.shape[1] != t:
        raise ValueError(
            f"logits: expected {t} tasks (shape {want}), got {logits.shape[1]} in "
            f"{tuple(logits.shape)}"
        )
    if multiclass:
        c = logits.shape[2]
        if not 2 <= c <= 32767:
            raise ValueError(f"logits: expected 2 <= C <= 32767 classes, got C={c}")
        if rec.num_classes is not None and c != rec.num_classes:
            raise ValueError(f"logits: expected C={rec.num_classes} classes as before, got C={c}")
    b = logits.shape[0]
    if tuple(targets.shape) != (b, t):
        raise ValueError(f"targets: expected shape ({b}, {t}), got {tuple(targets.shape)}")
    if multiclass and not _is_int(targets):
        raise TypeError(f"targets: expected integer class ids, got dtype {targets.dtype}")
    if targets.dtype.is_complex:
        raise TypeError(f"targets: expected bool, integer or float labels, got {targets.dtype}")
    if not _is_int(indices):
        raise TypeError(f"indices: expected an integer tensor, got dtype {indices.dtype}")
    if tuple(indices.shape) != (b,):
        raise ValueError(f"indices: expected shape ({b},), got {tuple(indices.shape)}")
    if mask is not None:
        mask = _tensor("mask", mask).detach()
        if mask.dtype != torch.bool:
            raise TypeError(f"mask: expected a bool tensor, got dtype {mask.dtype}")
        if tuple(mask.shape) != (b, t):
            raise ValueError(f"mask: expected shape ({b}, {t}), got {tuple(mask.shape)}")
    if valid is not None:
        valid = _tensor("valid", valid).detach()
        if valid.dtype != torch.bool:
            raise TypeError(f"valid: expected a bool tensor, got dtype {valid.dtype}")
        if tuple(valid.shape) != (b,):
            raise ValueError(f"valid: expected shape ({b},), got {tuple(valid.shape)}")
    device = rec.device if rec.device is not None else logits.device
    logits, targets = logits.to(device), targets.to(device)
    indices = indices.to(device=device, dtype=torch.int64)
    mask = None if mask is None else mask.to(device)
    valid = None if valid is None else valid.to(device)
    if (rec.validate or device.type == "cpu") and b > 0:  # on CPU the check costs no sync
        ilo_, ihi_ = torch.stack(torch.aminmax(indices)).tolist()  # (B,): one small transfer
        if ilo_ < 0 or ihi_ >= rec.num_samples:
            raise ValueError(
                f"indices: expected sample ids in [0, {rec.num_samples}), got values in "
                f"[{ilo_}, {ihi_}]"
            )
    return logits.contiguous(), targets.contiguous(), indices, mask, valid


def check_values(
    rec: UpdateRules,
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None,
    scratch: dict[str, torch.Tensor],
    yb: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Finite logits and targets in range (rows the recorder keeps), one host transfer.

    For float binary targets ``yb`` (a bool buffer) receives ``targets > 0.5``, which the
    update reuses.
    """
    zlo, zhi = torch.aminmax(logits)
    y = targets if mask is None else torch.where(mask, targets, torch.zeros_like(targets))
    if rec.task_type == "binary" and targets.dtype.is_floating_point:
        yb = torch.empty(y.shape, dtype=torch.bool, device=y.device) if yb is None else yb
        # y - y*y is exactly 0 for 0 and 1, nonzero (or NaN) for any other value; float-only
        # ops, as mixing in the bool yb would cost a cast copy. Row chunks keep the difference
        # in cache; its (min, max) pairs are checked together (NaN != 0 counts as bad).
        step = max(1, CHUNK_ELEMENTS // max(1, y.shape[1]))
        ends: list[torch.Tensor] = []
        for i in range(0, y.shape[0], step):
            yc = y[i : i + step]
            torch.gt(yc, 0.5, out=yb[i : i + step])
            diff = scratch_buffer(scratch, "check", tuple(yc.shape), y.dtype, y.device)
            torch.addcmul(yc, yc, yc, value=-1, out=diff)
            ends.extend(torch.aminmax(diff))
        bad_y = torch.stack(ends).ne(0).any().to(torch.float64)
        ylo = yhi = torch.zeros((), dtype=torch.float64, device=y.device)
    else:
        yb = None
        bad_y = torch.zeros((), dtype=torch.float64, device=y.device)
        ylo, yhi = torch.aminmax(y.to(torch.int64) if y.dtype == torch.bool else y)
    vals = torch.stack([v.to(torch.float64) for v in (zlo, zhi, ylo, yhi, bad_y)]).tolist()
    top = (int(logits.shape[2]) - 1) if rec.task_type == "multiclass" else 1
    raise_bad_values(tuple(vals), top, mask is not None)  # type: ignore[arg-type]
    return yb


def raise_bad_values(
    values: tuple[float, float, float, float, float], top: int, masked: bool
) -> None:
    """Raise if the checked values of a batch are bad; do nothing if they are good.

    Parameters
    ----------
    values : tuple of float
        ``(min logit, max logit, min target, max target, bad)``: NaN logit bounds for a NaN or
        inf logit; ``bad`` nonzero when a binary target is other than 0 and 1.
    top : int
        Largest allowed target (1 for binary tasks, ``C - 1`` for ``C`` classes).
    masked : bool
        Whether a mask was given (targets are checked where it is True).
    """
    zlo, zhi, ylo, yhi, bad = values
    if not (abs(zlo) < float("inf") and abs(zhi) < float("inf")):
        raise ValueError(f"logits: expected finite values, got NaN or inf (min {zlo}, max {zhi})")
    if bad or ylo < 0 or yhi > top:
        what = f"class ids in [0, {top}]" if top > 1 else "labels 0 or 1"
        inside = 0 <= ylo and yhi <= top
        seen = "values other than 0 and 1" if bad and inside else f"values in [{ylo:g}, {yhi:g}]"
        where = " where mask is True" if masked else ""
        raise ValueError(f"targets: expected {what}{where}, got {seen}")
