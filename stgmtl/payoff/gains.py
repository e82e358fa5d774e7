"""The gain of training tasks together, defined once; measured and predicted gains kept apart.

**The gain** of a member task ``i`` in a group ``G`` (a set of tasks trained as one network) on
seed ``s`` is the relative decrease of ``i``'s loss against a stated reference,

    gain(G, i, s) = (L_ref[s, i] - L_G[s, i]) / L_ref[s, i]        (:func:`relative_gain`)

positive = training with the rest of ``G`` helps ``i``. The reference is

* ``"single"`` (default, as ETAP and Standley et al. do): ``i``'s single-task network on the same
  seed (paired: same batches, dropout stream and head row, see :mod:`~stgmtl.payoff.runs`);
* ``"all"``: the one model for all tasks at 1x on the same seed (the harness's ``gain_vs_one``).

Every gain of the harness goes through :func:`relative_gain`: the pair gains of
:class:`~stgmtl.payoff.truth.GroundTruth`, the per-(group, task) gains of :func:`group_gains`
that the gain predictor (:mod:`~stgmtl.payoff.predictor`) learns from, and the selection on
them (:func:`select_from_gains`).

**Measured and predicted.** A gain table carries a column ``origin``: ``"measured"`` (from
trained networks) or ``"predicted"`` (from :mod:`~stgmtl.payoff.predictor`). The two are never
combined: :func:`concat_gains` and :func:`select_from_gains` raise on a table mixing them, so a
predicted gain can never win an argmax against a measured one.

**One reference per table.** A gain table also carries a column ``reference`` (``"single"`` or
``"all"``; predicted gains inherit the reference of the gains the predictor learnt from).
:func:`check_reference` raises on a table mixing references, and so do :func:`concat_gains`,
:func:`mean_gains` and the predictor's ``training_table``. :func:`select_from_gains` needs
``reference="single"``: it gives every single-task candidate a gain of 0, which is true only
when the single-task network is the reference.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import check_choice, check_float, check_int, fail, seed_from

__all__ = [
    "GAIN_COLUMNS",
    "GainSelection",
    "ORIGINS",
    "REFERENCES",
    "check_origin",
    "check_reference",
    "concat_gains",
    "group_gains",
    "group_id",
    "losses_from_tables",
    "mean_gains",
    "pair_affinity",
    "relative_gain",
    "sample_groups",
    "select_from_gains",
]

#: Where a gain comes from; a table holds one of them.
ORIGINS = ("measured", "predicted")
#: References of the gain (module docstring).
REFERENCES = ("single", "all")
#: Columns of a per-seed gain table (:func:`group_gains`).
GAIN_COLUMNS = (
    "group", "size", "task", "seed", "loss", "reference_loss", "gain", "reference", "origin",
)  # fmt: skip


def relative_gain(reference: Any, loss: Any) -> np.ndarray:
    """``(reference - loss) / reference``, elementwise (NaN where either is missing or the
    reference is 0): the one definition of a gain (module docstring)."""
    ref = np.asarray(reference, dtype=np.float64)
    lo = np.asarray(loss, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (ref - lo) / ref
    return np.where(np.isfinite(out), out, np.nan)


def group_id(tasks: Iterable[str], order: Mapping[str, int]) -> str:
    """A group's id: its tasks in suite order joined by ``"+"`` (stable across seeds)."""
    return "+".join(sorted(tasks, key=order.__getitem__))


def sample_groups(
    task_names: Sequence[str],
    sizes: Sequence[int] = (3,),
    *,
    max_per_size: int | None = None,
    random_state: Any = 0,
) -> list[tuple[str, ...]]:
    """Groups of the given sizes, each in suite order: every one, or a seeded sample of
    ``max_per_size`` per size (distinct groups, drawn uniformly; sizes in increasing order).

    Raises
    ------
    ValueError
        A size outside ``2 .. T``, or more than 200,000 groups of a size without
        ``max_per_size``.
    """
    names = [str(t) for t in task_names]
    rng = np.random.default_rng([seed_from("random_state", random_state), 11])
    out: list[tuple[str, ...]] = []
    for size in sorted({check_int("sizes", s, low=2, high=len(names)) for s in sizes}):
        n = math.comb(len(names), size)
        want = n if max_per_size is None else min(n, check_int("max_per_size", max_per_size,
                                                               low=1))  # fmt: skip
        if n <= 200_000:
            combos = list(itertools.combinations(range(len(names)), size))
            pick = sorted(rng.choice(n, want, replace=False).tolist()) if want < n else range(n)
            idx = [combos[i] for i in pick]
        elif max_per_size is None:
            raise fail("max_per_size", f"a number of groups to sample ({n} groups of {size} "
                       "tasks are too many to train)", None)  # fmt: skip
        else:
            seen: set[tuple[int, ...]] = set()
            while len(seen) < want:
                seen.add(tuple(sorted(rng.choice(len(names), size, replace=False).tolist())))
            idx = sorted(seen)
        out += [tuple(names[i] for i in c) for c in idx]
    return out


def group_gains(
    losses: Mapping[tuple[tuple[str, ...], int], Mapping[str, float]],
    task_names: Sequence[str],
    *,
    reference: str = "single",
    min_size: int = 2,
) -> pl.DataFrame:
    """Measured gain of every member task of every trained group, per seed.

    Parameters
    ----------
    losses : mapping
        ``{(task set, seed): {task: loss}}`` of trained networks, as
        :func:`~stgmtl.payoff.truth.network_losses` returns (one split, one loss column).
    task_names : sequence of str
        The suite's tasks (their order names groups, :func:`group_id`).
    reference : {"single", "all"}
        The reference network of the gain (module docstring).
    min_size : int
        Smallest group kept (2: pairs and larger; the all-task network is kept too when
        ``reference="single"``).

    Returns
    -------
    polars.DataFrame
        :data:`GAIN_COLUMNS`, ``origin = "measured"``, ``reference`` as given; one row per
        (group, member task, seed) whose reference was trained on that seed.

    Raises
    ------
    ValueError
        If no group has a reference on its seed (nothing could be measured).
    """
    check_choice("reference", reference, REFERENCES)
    names = [str(t) for t in task_names]
    order = {t: i for i, t in enumerate(names)}
    full = tuple(sorted(names))
    ref: dict[tuple[int, str], float] = {}
    for (tasks, seed), vals in losses.items():
        if reference == "single" and len(tasks) == 1 and tasks[0] in order:
            ref[(seed, tasks[0])] = float(vals[tasks[0]])
        elif reference == "all" and tuple(sorted(tasks)) == full:
            for t in names:
                ref[(seed, t)] = float(vals[t])
    skip = ("gain", "reference", "origin")
    rows: dict[str, list[Any]] = {c: [] for c in GAIN_COLUMNS if c not in skip}
    for (tasks, seed), vals in sorted(losses.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if len(tasks) < min_size or any(t not in order for t in tasks):
            continue
        if reference == "all" and tuple(sorted(tasks)) == full:
            continue  # its own reference
        gid = group_id(tasks, order)
        for t in sorted(tasks, key=order.__getitem__):
            r = ref.get((seed, t))
            if r is None:
                continue
            rows["group"].append(gid)
            rows["size"].append(len(tasks))
            rows["task"].append(t)
            rows["seed"].append(int(seed))
            rows["loss"].append(float(vals[t]))
            rows["reference_loss"].append(r)
    if not rows["group"]:
        raise fail("losses", f"trained groups of >= {min_size} tasks with the {reference!r} "
                   "reference on the same seed", "none")  # fmt: skip
    df = pl.DataFrame(
        rows,
        schema={"group": pl.String, "size": pl.Int64, "task": pl.String, "seed": pl.Int64,
                "loss": pl.Float64, "reference_loss": pl.Float64},
    )  # fmt: skip
    gain = relative_gain(df["reference_loss"].to_numpy(), df["loss"].to_numpy())
    return df.with_columns(
        pl.Series("gain", gain, dtype=pl.Float64),
        pl.lit(reference).alias("reference"),
        pl.lit("measured").alias("origin"),
    ).select(GAIN_COLUMNS)


def losses_from_tables(
    runs: pl.DataFrame, systems: pl.DataFrame, split: str = "test", column: str = "loss"
) -> dict[tuple[tuple[str, ...], int], dict[str, float]]:
    """``{(sorted task set, seed): {task: value}}`` of the ``"network"`` systems at budget 1 of
    a saved :class:`~stgmtl.payoff.tables.PayoffResult` (its ``runs`` and ``systems`` tables),
    the form :func:`group_gains` reads (as :func:`~stgmtl.payoff.truth.network_losses` gives it
    from finished runs)."""
    import json

    check_choice("split", split, ("val", "test"))
    nets = systems.filter(
        (pl.col("kind") == "network") & (pl.col("budget").fill_null(1.0) == 1.0)
    ).select("system", "tasks")
    tasks_of = {sid: tuple(sorted(json.loads(t))) for sid, t in nets.iter_rows()}
    rows = runs.filter(pl.col("split") == split).select("system", "seed", "task", column)
    out: dict[tuple[tuple[str, ...], int], dict[str, float]] = {}
    for sid, seed, task, value in rows.iter_rows():
        if sid in tasks_of:
            out.setdefault((tasks_of[sid], int(seed)), {})[str(task)] = float(value)
    return out


def check_origin(gains: pl.DataFrame, name: str = "gains") -> str:
    """The one origin of a gain table; raises if it mixes measured and predicted gains.

    Raises
    ------
    ValueError
        A table without an ``origin`` column, with an unknown origin, or with both.
    """
    if not isinstance(gains, pl.DataFrame):
        raise fail(name, "a polars DataFrame of gains", type(gains).__name__, error=TypeError)
    if "origin" not in gains.columns:
        raise fail(name, "a gain table with an 'origin' column ('measured' or 'predicted')",
                   gains.columns)  # fmt: skip
    found = sorted(set(gains["origin"].to_list()))
    if len(found) != 1 or found[0] not in ORIGINS:
        raise fail(name, "gains of one origin ('measured' or 'predicted'), never mixed "
                   "(a predicted gain must not compete with a measured one)", found)  # fmt: skip
    return str(found[0])


def check_reference(gains: pl.DataFrame, name: str = "gains") -> str:
    """The one reference of a gain table (:data:`REFERENCES`); raises if it mixes references.

    Raises
    ------
    ValueError
        A table without a ``reference`` column, with an unknown reference, or with several
        (a gain against the single-task network and one against the all-task network are not
        the same quantity).
    """
    if not isinstance(gains, pl.DataFrame):
        raise fail(name, "a polars DataFrame of gains", type(gains).__name__, error=TypeError)
    if "reference" not in gains.columns:
        raise fail(name, f"a gain table with a 'reference' column (one of {REFERENCES})",
                   gains.columns)  # fmt: skip
    found = sorted(set(gains["reference"].to_list()), key=str)
    if len(found) != 1 or found[0] not in REFERENCES:
        raise fail(name, f"gains of one reference (one of {REFERENCES}), never mixed", found)
    return str(found[0])


def concat_gains(tables: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Stack gain tables of **one** origin and **one** reference (raises on a mix,
    :func:`check_origin`, :func:`check_reference`)."""
    if not tables:
        raise fail("tables", "at least one gain table", "none")
    out = pl.concat(list(tables), how="diagonal_relaxed")
    check_origin(out, "tables")
    check_reference(out, "tables")
    return out


def mean_gains(gains: pl.DataFrame) -> pl.DataFrame:
    """Per (group, task): the gain's mean over seeds (``gain``), its seed count, reference and
    origin (raises on a table of several origins or references)."""
    origin = check_origin(gains)
    reference = check_reference(gains)
    return (
        gains.group_by("group", "size", "task", maintain_order=True)
        .agg(pl.col("gain").mean(), pl.col("gain").len().alias("seeds"))
        .with_columns(pl.lit(reference).alias("reference"), pl.lit(origin).alias("origin"))
    )


def pair_affinity(gains: pl.DataFrame, task_names: Sequence[str]) -> Any:
    """The pair gains of a table of one origin as a ``TaskAffinity`` (``values[j, i]`` = seed-mean
    gain of ``i`` trained with ``j``; NaN where the pair is not in the table), for the
    partition search (:func:`~stgmtl.payoff.search.partition_from_affinity`).

    Its ``signal`` is ``"measured-gain"`` or ``"predicted-gain"`` and ``meta["origin"]`` the
    table's origin, so a predicted matrix is never read as a measured truth.
    """
    from stgmtl.affinity import TaskAffinity

    origin = check_origin(gains)
    names = [str(t) for t in task_names]
    pos = {t: i for i, t in enumerate(names)}
    values = np.full((len(names), len(names)), np.nan)
    pairs = mean_gains(gains).filter(pl.col("size") == 2)
    for gid, task, g in pairs.select("group", "task", "gain").iter_rows():
        partner = next(p for p in str(gid).split("+") if p != task)
        if partner in pos and task in pos:
            values[pos[partner], pos[task]] = float(g)
    return TaskAffinity(
        task_names=names,
        values=values,
        signal=f"{origin}-gain",
        meta={
            "origin": origin,
            "reference": check_reference(gains),
            "formula": "seed-mean relative_gain of the recipient in the pair",
        },
    )


@dataclass
class GainSelection:
    """Groups chosen by :func:`select_from_gains` from gains of one origin.

    Attributes
    ----------
    groups : list of list of str
        The chosen networks (single tasks included), each serving its members.
    serving : dict
        ``task -> index`` of the chosen network that serves it (its best gain).
    task_gains : dict
        ``task -> gain`` served (0 for a task served by its single-task network).
    score : float
        Mean over tasks of the served gains.
    exact : bool
        Whether the search was exhaustive (else the documented heuristic of
        :func:`~stgmtl.payoff.search.select_networks`).
    origin : str
        ``"measured"`` or ``"predicted"``: the gains every choice was made on.
    budget : float
    """

    groups: list[list[str]]
    serving: dict[str, int]
    task_gains: dict[str, float]
    score: float
    exact: bool
    origin: str
    budget: float


def select_from_gains(
    gains: pl.DataFrame,
    task_names: Sequence[str],
    budget: float,
    *,
    max_network_size: int | None = None,
    max_exact: int = 2_000_000,
) -> GainSelection:
    """Standley et al.'s budgeted selection on gains of one origin (measured **or** predicted).

    Every group in ``gains`` with a gain for each member is a candidate network of cost 1; every
    single-task network is a candidate of cost 1 with gain 0 (the reference itself: the table's
    reference must be ``"single"``). Each task is served by the chosen network where its gain is
    largest; the chosen set maximises the mean served gain within the budget
    (:func:`~stgmtl.payoff.search.select_networks`: exact when there are at most ``max_exact``
    affordable sets, else its heuristic). No higher-order filling: only the table's groups are
    candidates, so every score in the argmax has the table's origin.

    Parameters
    ----------
    gains : polars.DataFrame
        A gain table (:func:`group_gains`, or
        :func:`~stgmtl.payoff.predictor.cross_fitted_gains`).
    task_names : sequence of str
    budget : float
        Most networks.
    max_network_size : int, optional
        Largest group considered.
    max_exact : int
        See :func:`~stgmtl.payoff.search.select_networks`.

    Returns
    -------
    GainSelection

    Raises
    ------
    ValueError
        If ``gains`` mixes measured and predicted gains or references, its reference is not
        ``"single"``, or the budget cannot serve every task.
    """
    from stgmtl.payoff.search import select_networks

    origin = check_origin(gains)
    reference = check_reference(gains)
    if reference != "single":
        raise fail("gains", "gains against the single-task networks (reference 'single': a "
                   "single-task candidate's gain is 0 only then)", reference)  # fmt: skip
    check_float("budget", budget, low=0.0, low_open=True)
    names = [str(t) for t in task_names]
    pos = {t: i for i, t in enumerate(names)}
    cands: list[list[str]] = [[t] for t in names]
    rows_g: list[np.ndarray] = [np.where(np.arange(len(names)) == i, 0.0, np.nan)
                                for i in range(len(names))]  # fmt: skip
    limit = len(names)
    if max_network_size is not None:
        limit = check_int("max_network_size", max_network_size, low=1)
    for gid, rows in mean_gains(gains).group_by("group", maintain_order=True):
        members = str(gid[0]).split("+")
        if len(members) > limit or set(rows["task"].to_list()) != set(members):
            continue  # too large, or without a gain for every member
        if any(m not in pos for m in members):
            raise fail("gains", f"groups of the tasks {names}", members)
        row = np.full(len(names), np.nan)
        for t, g in zip(rows["task"].to_list(), rows["gain"].to_list(), strict=True):
            row[pos[t]] = float(g)
        cands.append(members)
        rows_g.append(row)
    lo = -np.vstack(rows_g)  # select_networks minimises a loss: the negated gain
    chosen, objective, exact = select_networks(lo, np.ones(len(cands)), budget,
                                               max_exact=max_exact)  # fmt: skip
    if not chosen:
        raise fail("budget", f"at least the networks needed to serve all {len(names)} tasks",
                   budget)  # fmt: skip
    sub = np.where(np.isnan(lo[chosen]), np.inf, lo[chosen])
    best = sub.argmin(0)
    serving = {t: int(best[i]) for i, t in enumerate(names)}
    task_gains = {t: float(-sub[best[i], i]) for i, t in enumerate(names)}
    return GainSelection(
        groups=[list(cands[c]) for c in chosen],
        serving=serving,
        task_gains=task_gains,
        score=float(-objective),
        exact=bool(exact),
        origin=origin,
        budget=float(budget),
    )
