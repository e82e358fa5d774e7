"""Parameter checks with one message form: ``"name: expected ..., got ..."``.

Every public function and estimator validates its arguments through these helpers, so a bad
value always raises a ``ValueError`` / ``TypeError`` that names the argument, says what was
expected and shows what was given, before any state changes. Estimators declare their
constraints once (:class:`Interval`, :class:`Options`, ...) and :func:`validate_params` checks
them, in the style of scikit-learn's ``_parameter_constraints``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PROGRESS_DELAY_S",
    "Constraint",
    "Instance",
    "Interval",
    "Options",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_names",
    "check_random_state",
    "fail",
    "seed_from",
    "sorted_unique_ints",
    "validate_params",
]

#: Every progress bar of the package appears only once its work has run this long (tqdm's
#: ``delay``), so sub-second work prints nothing (kept here, torch-free, for every stage).
PROGRESS_DELAY_S = 2.0


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(name: str, expected: str, got: Any, *, error: type[Exception] = ValueError) -> Exception:
    """The exception (to raise) for argument ``name``: ``"name: expected ..., got ..."``."""
    return error(f"{name}: expected {expected}, got {_show(got)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """An integer (not bool) in ``[low, high]``; returns it as ``int``."""
    if not _is_int(value):
        raise fail(name, f"an int{_bounds(low, high)}", value, error=TypeError)
    if (low is not None and value < low) or (high is not None and value > high):
        raise fail(name, f"an int{_bounds(low, high)}", value)
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    what = f"a finite number{_bounds(low, high, low_open)}"
    if not _is_real(value):
        raise fail(name, what, value, error=TypeError)
    v = float(value)
    bad_low = low is not None and (v <= low if low_open else v < low)
    if not np.isfinite(v) or bad_low or (high is not None and v > high):
        raise fail(name, what, value)
    return v


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (numpy bools too)."""
    if not isinstance(value, bool | np.bool_):
        raise fail(name, "True or False", value, error=TypeError)
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """One of ``choices``."""
    options = tuple(choices)
    if not any(value is c or (type(value) is type(c) and value == c) for c in options):
        raise fail(name, "one of " + ", ".join(repr(c) for c in options), value)
    return value


def check_names(name: str, names: Any, n: int, *, default_prefix: str = "task_") -> list[str]:
    """``n`` unique names as strings; ``None`` gives ``task_0 ... task_{n-1}``."""
    if names is None:
        return [f"{default_prefix}{i}" for i in range(n)]
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise fail(name, f"a sequence of {n} unique names", names, error=TypeError)
    out = [str(x) for x in names]
    if len(out) != n:
        raise fail(name, f"{n} names (one per task)", f"{len(out)} names")
    if len(set(out)) != n:
        dup = next(x for x in out if out.count(x) > 1)
        raise fail(name, "unique names", f"{dup!r} more than once")
    return out


def sorted_unique_ints(
    name: str, values: Any, *, low: int | None = None, high: int | None = None
) -> np.ndarray:
    """A non-empty set of integers in ``[low, high]``, returned sorted and without repeats.

    Repeats and order carry no meaning for the arguments that use this (snapshot epochs,
    probe sample ids), so they are normalised, as the docstrings of those arguments say.
    """
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0 or not (arr.dtype.kind in "iu" or _all_integral(arr)):
        raise fail(name, "a non-empty 1-D sequence of integers", values, error=TypeError)
    out = np.unique(arr.astype(np.int64))
    if (low is not None and out[0] < low) or (high is not None and out[-1] > high):
        raise fail(name, f"integers{_bounds(low, high)}", f"values in [{out[0]}, {out[-1]}]")
    return out


def _all_integral(arr: np.ndarray) -> bool:
    if arr.dtype == object:
        return all(_is_int(v) for v in arr.tolist())
    return False


def check_random_state(name: str, value: Any) -> np.random.Generator:
    """A ``numpy.random.Generator`` from ``None``, an int seed, a Generator or a RandomState.

    As in scikit-learn: ``None`` draws fresh entropy (not reproducible), an int is a seed, a
    ``Generator`` is used as is (and advanced), a legacy ``RandomState`` seeds a new Generator
    from its stream.
    """
    if value is None:
        return np.random.default_rng()
    if _is_int(value):
        if value < 0:
            raise fail(name, "None, an int >= 0, a numpy Generator or RandomState", value)
        return np.random.default_rng(int(value))
    if isinstance(value, np.random.Generator):
        return value
    if isinstance(value, np.random.RandomState):
        return np.random.default_rng(value.randint(0, 2**31 - 1))
    raise fail(name, "None, an int >= 0, a numpy Generator or RandomState", value, error=TypeError)


def seed_from(name: str, value: Any) -> int:
    """An int seed from a ``random_state`` argument (an int is kept as the seed itself)."""
    if _is_int(value) and value >= 0:
        return int(value)
    return int(check_random_state(name, value).integers(0, 2**31 - 1))


def _bounds(low: float | None, high: float | None, low_open: bool = False) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {low}"
    if low is None:
        return f" <= {high}"
    return f" in {'(' if low_open else '['}{low}, {high}]"


# ------------------------------------------------------------------ declarative constraints
class Constraint:
    """One allowed form of a parameter (see :func:`validate_params`)."""

    def accepts(self, value: Any) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Interval(Constraint):
    """A number of ``kind`` ``int`` or ``float`` in ``[low, high]`` (``low_open``: ``(low``)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def accepts(self, value: Any) -> bool:
        ok = _is_int(value) if self.kind is int else _is_real(value)
        if not ok or not np.isfinite(float(value)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        noun = "an int" if self.kind is int else "a finite number"
        return noun + _bounds(self.low, self.high, self.low_open)


@dataclass(frozen=True)
class Options(Constraint):
    """One of the given values."""

    values: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(value is v or (type(value) is type(v) and value == v) for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Instance(Constraint):
    """An instance of one of the given types (``None`` allowed with ``type(None)``)."""

    types: tuple[type, ...]
    what: str

    def accepts(self, value: Any) -> bool:
        if bool in self.types:
            return isinstance(value, self.types)
        return isinstance(value, self.types) and not isinstance(value, bool)

    def describe(self) -> str:
        return self.what


RANDOM_STATE = Instance((type(None), numbers.Integral, np.random.Generator, np.random.RandomState),
                        "None, an int >= 0, a numpy Generator or RandomState")  # fmt: skip


def validate_params(
    params: Mapping[str, Any], constraints: Mapping[str, Sequence[Constraint]]
) -> None:
    """Check every ``params[name]`` against the allowed forms ``constraints[name]``.

    Raises
    ------
    ValueError or TypeError
        ``"name: expected <forms>, got <value>"`` for the first parameter no form accepts
        (TypeError when no form even has its type).
    """
    for name, forms in constraints.items():
        value = params[name]
        if any(c.accepts(value) for c in forms):
            continue
        expected = " or ".join(c.describe() for c in forms)
        number = _is_real(value)
        typed = any(
            (isinstance(c, Interval) and number)
            or isinstance(c, Options)
            or (isinstance(c, Instance) and isinstance(value, c.types))
            for c in forms
        )
        raise fail(name, expected, value, error=ValueError if typed else TypeError)
