"""Recorder state declared once: each field with its shape, dtype and cross-process reduction.

In the spirit of torchmetrics' ``add_state(name, default, dist_reduce_fx)``: a recorder declares
its fields in a :class:`StateSpec`, and every operation on the state reads that declaration:
allocation, copies, merging two states (a snapshot carried over an epoch), the all-reduce over
processes (:meth:`StateSpec.all_reduce_`), and the checks of a loaded state dict
(:meth:`StateSpec.validate`). A state is a plain ``dict[str, Tensor | None]`` (``None`` for an
optional field not yet in use), so it goes into ``torch.save`` checkpoints as it is.

Reductions: ``"sum"`` for sums and counts (float64 sums merge exactly up to rounding order,
integers exactly), ``"max"`` for values every process observes alike (recorded targets, with
``-1`` for "not observed"), ``"packed"`` for int64 words of integer sums in bits 0..62 and a flag
in bit 63 (:mod:`stgmtl.record.compact`): sums added, flags OR-ed, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Field", "State", "StateSpec", "agree_across_ranks", "chunk_rows", "packed_all_reduce_",
           "packed_merge_", "world_size"]  # fmt: skip

State = dict[str, torch.Tensor | None]
Reduce = Literal["sum", "max", "packed"]
# gloo cannot reduce these dtypes: they travel widened to int32 and are narrowed back
_WIDEN = {torch.int8: torch.int32, torch.int16: torch.int32, torch.uint8: torch.int32}
# "packed" int64 words (stgmtl.record.compact): bit 63 a flag merged by OR, bits 0..62 sums
SIGN = -(1 << 63)
LOW = (1 << 63) - 1
_CHUNK = 1 << 22


@dataclass(frozen=True)
class Field:
    """One state tensor.

    Attributes
    ----------
    name : str
    dims : tuple of str
        Names of its dimensions, resolved by the dims given at allocation (e.g.
        ``("rows", "tasks")``).
    dtype : torch.dtype
    reduce : {"sum", "max", "packed"}
        How states of several processes (or an epoch carried over) combine.
    fill : float
        Initial value (``-1`` for "not observed" targets, else ``0``).
    optional : bool
        Allocated only when first needed (the state holds ``None`` until then).
    snapshot : bool
        Part of the per-epoch snapshots (statistics are; recorded targets are not).
    """

    name: str
    dims: tuple[str, ...]
    dtype: torch.dtype
    reduce: Reduce = "sum"
    fill: float = 0
    optional: bool = False
    snapshot: bool = True


class StateSpec:
    """The declared fields of a recorder's state, and every operation that reads them."""

    def __init__(self, fields: Sequence[Field]) -> None:
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"fields: expected unique names, got {names}")
        self.fields = tuple(fields)
        self.names = tuple(names)

    def snapshot_spec(self) -> StateSpec:
        """The fields kept in snapshots."""
        return StateSpec([f for f in self.fields if f.snapshot])

    def shape(self, f: Field, dims: Mapping[str, int]) -> tuple[int, ...]:
        """Concrete shape of field ``f``."""
        return tuple(int(dims[d]) for d in f.dims)

    def allocate(self, dims: Mapping[str, int], device: torch.device | str) -> State:
        """A fresh state: every non-optional field at its fill value, optional ones ``None``."""
        return {
            f.name: None
            if f.optional
            else torch.full(self.shape(f, dims), f.fill, dtype=f.dtype, device=device)
            for f in self.fields
        }

    def enable(self, state: State, name: str, like: str) -> torch.Tensor:
        """Allocate optional field ``name`` (shaped as field ``like``) if not yet in use."""
        value = state.get(name)
        if value is None:
            f = self._field(name)
            ref = state[like]
            assert ref is not None
            value = torch.full(ref.shape, f.fill, dtype=f.dtype, device=ref.device)
            state[name] = value
        return value

    def _field(self, name: str) -> Field:
        return self.fields[self.names.index(name)]

    def clone(self, state: State) -> State:
        """A deep copy of this spec's fields of ``state``."""
        return {n: None if state.get(n) is None else state[n].clone() for n in self.names}  # type: ignore[union-attr]

    def zeros_like(self, state: State) -> State:
        """A state of the same shapes at the fill values (optional fields as in ``state``)."""
        out: State = {}
        for f in self.fields:
            v = state.get(f.name)
            out[f.name] = None if v is None else torch.full_like(v, f.fill)
        return out

    def merge_(self, into: State, other: State) -> State:
        """``into`` combined with ``other`` in place, field by field with its reduction.

        An optional field absent from ``into`` is copied from ``other``.
        """
        for f in self.fields:
            a, b = into.get(f.name), other.get(f.name)
            if b is None:
                continue
            if a is None:
                into[f.name] = b.clone()
            elif f.reduce == "packed":
                packed_merge_(a, b)
            elif f.reduce == "sum":
                a.add_(b)
            else:
                torch.maximum(a, b, out=a)
        return into

    def all_reduce_(self, states: Sequence[State]) -> None:
        """All-reduce every field of every state over the default process group, in place.

        A collective: every rank calls it with states of the same shapes. An optional field in
        use on any rank is allocated (at its fill value) on the others first.
        """
        if not states:
            return
        optional = [f for f in self.fields if f.optional]
        if optional:
            ref = next(v for s in states for v in s.values() if v is not None)
            flags = torch.tensor(
                [[s.get(f.name) is not None for f in optional] for s in states],
                dtype=torch.int64,
                device=ref.device,
            )
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            like = next(f.name for f in self.fields if not f.optional)
            for s, row in zip(states, flags.tolist(), strict=True):
                for f, used in zip(optional, row, strict=True):
                    if used:
                        self.enable(s, f.name, like)
        for s in states:
            for f in self.fields:
                v = s.get(f.name)
                if v is None:
                    continue
                if f.reduce == "packed":
                    packed_all_reduce_(v)
                    continue
                op = dist.ReduceOp.SUM if f.reduce == "sum" else dist.ReduceOp.MAX
                wide = _WIDEN.get(v.dtype)
                if wide is None:
                    dist.all_reduce(v, op=op)
                else:
                    w = v.to(wide)
                    dist.all_reduce(w, op=op)
                    v.copy_(w)

    def validate(self, state: Any, dims: Mapping[str, int], where: str) -> None:
        """Check a loaded state: every field present with its shape and dtype.

        Raises
        ------
        ValueError
            Naming ``where``, the field and what is wrong.
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"{where}: expected a dict of tensors, got {type(state).__name__}")
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"{where}: expected fields {list(self.names)}, missing {missing}")
        for f in self.fields:
            v = state[f.name]
            if v is None and f.optional:
                continue
            want = self.shape(f, dims)
            if not isinstance(v, torch.Tensor) or tuple(v.shape) != want or v.dtype != f.dtype:
                got = (
                    f"{tuple(v.shape)} {v.dtype}"
                    if isinstance(v, torch.Tensor)
                    else type(v).__name__
                )
                raise ValueError(f"{where}.{f.name}: expected a {want} {f.dtype} tensor, got {got}")


def chunk_rows(x: torch.Tensor) -> int:
    """Rows of ``x`` per chunk of about ``2**22`` cells (bounded temporaries)."""
    return max(1, _CHUNK // max(1, int(np.prod(x.shape[1:]))))


def packed_merge_(a: torch.Tensor, b: torch.Tensor) -> None:
    """``a`` = ``a`` merged with ``b``: sums added, bit-63 flags OR-ed (in row chunks)."""
    step = chunk_rows(a)
    for i in range(0, a.shape[0], step):
        x, y = a[i : i + step], b[i : i + step]
        bits = torch.bitwise_or(x, y).bitwise_and_(SIGN)
        x.bitwise_and_(LOW).add_(torch.bitwise_and(y, LOW)).bitwise_or_(bits)


def packed_all_reduce_(v: torch.Tensor) -> None:
    """All-reduce packed words over the default group: sums by SUM, bit-63 flags by MAX.

    A collective (every rank calls it with the same shape); in row chunks, so the temporaries
    stay small. The caller checks first that the merged sums cannot overflow their bits.
    """
    step = chunk_rows(v)
    for i in range(0, v.shape[0], step):
        x = v[i : i + step]
        bits = x.lt(0).to(torch.int32)
        sums = x.bitwise_and(LOW)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        dist.all_reduce(bits, op=dist.ReduceOp.MAX)
        x.copy_(sums.bitwise_or_(bits.to(torch.int64).bitwise_left_shift_(63)))


def world_size() -> int:
    """Processes in the default ``torch.distributed`` group (1 when not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def agree_across_ranks(values: Mapping[str, int], device: torch.device, what: str) -> None:
    """Raise on every rank unless all ranks hold the same ``values`` (a collective).

    Parameters
    ----------
    values : mapping
        Name -> int that must match (epochs closed, rows, tasks, ...).
    device : torch.device
        Device the process group's backend reduces on.
    what : str
        Advice for the message, e.g. ``"call end_epoch() equally on every rank"``.
    """
    header = torch.tensor(list(values.values()), dtype=torch.int64, device=device)
    lo, hi = header.clone(), header.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(
            f"sync: ranks disagree on {list(values)}: min {lo.tolist()} max {hi.tolist()}; {what}"
        )
