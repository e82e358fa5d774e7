"""Features of a candidate group from recorded affinity signals, per member (recipient) task.

For a group ``G`` and a member ``i`` (the *recipient*: the task whose gain is predicted), with
the other members ``O = G \\ {i}`` and one signal's matrix ``V = values[source, recipient]``
(:class:`~stgmtl.affinity.TaskAffinity`), the features of that signal are

``<signal>:in_mean``, ``<signal>:in_min``, ``<signal>:in_max``
    mean, min and max of ``V[j, i]`` over ``j`` in ``O``: what the rest of the group does for
    ``i`` (``in_mean`` is the pairwise affinity extended to groups by its mean, as ETAP and
    Standley et al.'s higher-order estimate do);
``<signal>:out_mean``
    mean of ``V[i, j]`` over ``j`` in ``O``: what ``i`` does for the rest;
``<signal>:group_mean``
    mean of ``V[j, k]`` over ordered pairs of distinct members: the group's own affinity,
    the same for every member.

Entries the signal never observed (NaN) are skipped in the means; a statistic with no observed
entry is the signal's mean over all observed off-diagonal entries. Besides the signals, every
row carries the group's ``size`` and its membership: ``recipient:<task>`` (one-hot of ``i``) and
``member:<task>`` (1 for each other member), which the residual model and the membership-only
baseline read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import fail
from stgmtl.affinity import TaskAffinity
from stgmtl.payoff.gains import group_id

__all__ = [
    "SIGNAL_STATS",
    "group_features",
    "membership_columns",
    "signal_columns",
]

#: Per-signal statistics (module docstring), in column order.
SIGNAL_STATS = ("in_mean", "in_min", "in_max", "out_mean", "group_mean")


def signal_columns(
    columns: Sequence[str], signals: Sequence[str] | None = None, stats: Sequence[str] = ()
) -> list[str]:
    """The feature columns of ``signals`` (default all) restricted to ``stats`` (default all)."""
    out = []
    for c in columns:
        if ":" not in c or c.startswith(("recipient:", "member:")):
            continue
        sig, stat = c.rsplit(":", 1)
        if (signals is None or sig in signals) and (not stats or stat in stats):
            out.append(c)
    return out


def membership_columns(columns: Sequence[str]) -> list[str]:
    """The ``recipient:*`` and ``member:*`` columns."""
    return [c for c in columns if c.startswith(("recipient:", "member:"))]


def _stats(x: np.ndarray, fill: float) -> np.ndarray:
    """``[mean, min, max]`` of the finite entries of ``x`` (``fill`` for each if none)."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.full(3, fill)
    return np.array([x.mean(), x.min(), x.max()])


def group_features(
    signals: Mapping[str, TaskAffinity],
    groups: Sequence[Sequence[str]],
    task_names: Sequence[str] | None = None,
) -> pl.DataFrame:
    """One row per (group, member task) with the features of the module docstring.

    Parameters
    ----------
    signals : mapping str -> TaskAffinity
        The recorded signals (and controls), all on the same tasks.
    groups : sequence of sequences of str
        Candidate groups (2 or more distinct tasks each).
    task_names : sequence of str, optional
        Suite order (default the first signal's).

    Returns
    -------
    polars.DataFrame
        ``group, size, task``, then ``<signal>:<stat>`` per signal (sorted by name) and
        :data:`SIGNAL_STATS`, then ``recipient:<task>`` and ``member:<task>`` per task.
    """
    if not isinstance(signals, Mapping) or not signals:
        raise fail("signals", "a non-empty mapping name -> TaskAffinity", signals, error=TypeError)
    first = next(iter(signals.values()))
    names = [str(t) for t in (task_names if task_names is not None else first.task_names)]
    order = {t: i for i, t in enumerate(names)}
    mats: dict[str, tuple[np.ndarray, float]] = {}
    for sname in sorted(signals):
        aff = signals[sname]
        if not isinstance(aff, TaskAffinity):
            raise fail(f"signals[{sname!r}]", "a TaskAffinity", type(aff).__name__,
                       error=TypeError)  # fmt: skip
        if sorted(aff.task_names) != sorted(names):
            raise fail(f"signals[{sname!r}]", f"the tasks {names}", aff.task_names)
        pos = [aff.task_names.index(t) for t in names]
        v = np.asarray(aff.values, dtype=np.float64)[np.ix_(pos, pos)].copy()
        np.fill_diagonal(v, np.nan)
        off = v[np.isfinite(v)]
        mats[sname] = (v, float(off.mean()) if off.size else 0.0)
    cols: dict[str, list[Any]] = {"group": [], "size": [], "task": []}
    feats: dict[str, list[float]] = {
        f"{s}:{st}": [] for s in mats for st in SIGNAL_STATS
    }  # fmt: skip
    memb = np.zeros((0, 2 * len(names)))
    memb_rows: list[np.ndarray] = []
    for g in groups:
        members = [str(t) for t in g]
        if len(members) < 2 or len(set(members)) != len(members):
            raise fail("groups", "groups of 2 or more distinct tasks", g)
        unknown = [t for t in members if t not in order]
        if unknown:
            raise fail("groups", f"groups of the tasks {names}", f"unknown tasks {unknown}")
        idx = np.array(sorted(order[t] for t in members))
        gid = group_id(members, order)
        for i in idx:
            others = idx[idx != i]
            cols["group"].append(gid)
            cols["size"].append(len(idx))
            cols["task"].append(names[i])
            for s, (v, fill) in mats.items():
                a = _stats(v[others, i], fill)
                o = _stats(v[i, others], fill)
                gm = _stats(v[np.ix_(idx, idx)].ravel(), fill)
                for st, val in zip(SIGNAL_STATS, (*a, o[0], gm[0]), strict=True):
                    feats[f"{s}:{st}"].append(float(val))
            row = np.zeros(2 * len(names))
            row[i] = 1.0
            row[len(names) + others] = 1.0
            memb_rows.append(row)
    if memb_rows:
        memb = np.vstack(memb_rows)
    df = pl.DataFrame(
        {**cols, **feats},
        schema={"group": pl.String, "size": pl.Int64, "task": pl.String,
                **dict.fromkeys(feats, pl.Float64)},
    )  # fmt: skip
    mcols = [f"recipient:{t}" for t in names] + [f"member:{t}" for t in names]
    return pl.concat(
        [df, pl.DataFrame(memb, schema=dict.fromkeys(mcols, pl.Float64))], how="horizontal"
    )
