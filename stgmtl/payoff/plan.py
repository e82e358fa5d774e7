"""The plan of a payoff-harness call: which runs, and how long they will take.

:func:`plan_payoff` lists the truth runs (single-task, pair or subset, and all-task networks per
seed), the recording runs and an upper bound on the grouping runs, before any signal is
recorded; :class:`PayoffPlan` prints it with a time estimate from one timed training step per
distinct model shape (:func:`calibration_specs`,
:func:`~stgmtl.payoff.execution.estimate_seconds`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stgmtl._checks import check_choice, check_int, fail
from stgmtl.affinity import FREE_SIGNALS
from stgmtl.payoff.architectures import ARCHITECTURES as REGISTRY
from stgmtl.payoff.gains import sample_groups
from stgmtl.payoff.runs import RunSpec
from stgmtl.specialise.training import LOSS_WEIGHTINGS

__all__ = [
    "ARCHITECTURES",
    "ONE_MODEL_VARIANTS",
    "TRUTH_MODES",
    "PayoffPlan",
    "calibration_specs",
    "network_spec",
    "one_model_spec",
    "plan_payoff",
    "resolve_truth",
]

ARCHITECTURES = tuple(REGISTRY)
#: What ground truth is trained: every subset (exhaustive tier), pairs, or none; ``"auto"`` is
#: ``"subsets"`` for ``T <= 5``, ``"pairs"`` for ``T <= 30``, else ``"none"``.
TRUTH_MODES = ("auto", "subsets", "pairs", "none")
#: How the one model for all tasks is trained, each at every budget and on every seed: ``"plain"``
#: (the recipe: the sum of the per-task losses) and ``"uncertainty"`` (Kendall et al.'s 2018
#: uncertainty weighting, :class:`~stgmtl.specialise.training.UncertaintyWeighting`: the
#: loss-balancing baseline). The recommendation's reference is the best of them on validation.
ONE_MODEL_VARIANTS = ("plain", *(w for w in LOSS_WEIGHTINGS if w != "none"))


# --------------------------------------------------------------------------------------------
# the plan


def network_spec(tasks: Sequence[str], order: Mapping[str, int], seed: int) -> RunSpec:
    """A ``"network"`` run on ``tasks``, listed in suite order (so its id is stable)."""
    return RunSpec("network", tuple(sorted(tasks, key=order.__getitem__)), seed=seed)


def one_model_spec(
    names: Sequence[str], seed: int = 0, budget: float = 1.0, variant: str = "plain"
) -> RunSpec:
    """The one model for all ``names`` (in suite order) at ``budget``, trained as ``variant``
    (:data:`ONE_MODEL_VARIANTS`; ``"plain"`` is the recipe's own training)."""
    check_choice("variant", variant, ONE_MODEL_VARIANTS)
    lw = "" if variant == "plain" else variant
    return RunSpec("network", tuple(names), seed=seed, budget=float(budget), loss_weighting=lw)


class PayoffPlan:
    """The runs of one harness call before the signals are known (see :func:`plan_payoff`).

    Attributes
    ----------
    truth : list of RunSpec
        Single-task, pair / subset and all-task networks, per seed.
    recordings : list of (tuple of str, int)
        ``(signals, seed)`` per recording run.
    grouped_counts : dict
        ``architecture -> number of runs`` planned for the partitions (an upper bound: runs
        that coincide are trained once).
    examples : list of RunSpec
        One grouped run per (architecture, k), for the time estimate.
    """

    def __init__(self) -> None:
        self.truth: list[RunSpec] = []
        self.recordings: list[tuple[tuple[str, ...], int]] = []
        self.grouped_counts: dict[str, int] = {}
        self.examples: list[RunSpec] = []
        self.examples_of: dict[str, list[RunSpec]] = {}
        self.cached: set[RunSpec] = set()

    def describe(self, estimates: Mapping[RunSpec, float] | None = None, workers: int = 1) -> str:
        """Text of the plan, with the estimate when given."""
        sizes: dict[int, int] = {}
        for s in self.truth:
            sizes[len(s.tasks)] = sizes.get(len(s.tasks), 0) + 1
        lines = ["plan:"]
        for n in sorted(sizes):
            lines.append(f"  truth: {sizes[n]} network runs on {n} task(s)")
        if self.cached:
            lines.append(f"  ({len(self.cached)} truth runs already in the cache)")
        lines.append(f"  signals: {len(self.recordings)} recording runs")
        for arch, c in self.grouped_counts.items():
            lines.append(f"  groupings: up to {c} {arch} runs")
        if estimates is not None:
            total = self.estimate(estimates, workers)
            lines.append(
                f"  estimated time: {total / 60:.1f} min on {workers} worker(s) "
                "(from timed calibration steps; an upper bound when groupings coincide "
                "or are cached)"
            )
        return "\n".join(lines)

    def estimate(self, estimates: Mapping[RunSpec, float], workers: int = 1) -> float:
        """Seconds of the whole plan (cached runs excluded by the caller), over ``workers``."""
        by_sig = {(s.kind, len(s.tasks), s.k, s.budget): v for s, v in estimates.items()}
        total = sum(
            by_sig.get((s.kind, len(s.tasks), s.k, s.budget), 0.0)
            for s in self.truth
            if s not in self.cached
        )
        n_all = max((len(s.tasks) for s in self.truth), default=0)
        rec = by_sig.get(("network", n_all, 1, 1.0), 0.0) * 1.3  # probes: about 1.3x a plain run
        total += rec * len(self.recordings)
        for arch, c in self.grouped_counts.items():
            mine = self.examples_of.get(arch, [])
            ex = [v for s, v in estimates.items() if s in mine]
            total += c * (float(np.mean(ex)) if ex else 0.0)
        return total / max(workers, 1)


def _balanced(names: Sequence[str], k: int) -> list[list[str]]:
    return [list(names[i::k]) for i in range(k)]


def plan_payoff(
    task_names: Sequence[str],
    *,
    seeds: Sequence[int],
    truth: str,
    max_pairs: int | None,
    singles: bool,
    signals: Sequence[str],
    signal_seeds: Sequence[int],
    record_separately: bool,
    ks: Sequence[int],
    architectures: Sequence[str],
    random_partitions: int,
    n_sources: int,
    random_state: int = 0,
    budgets: Sequence[float] = (1.0,),
    group_sizes: Sequence[int] = (),
    max_groups: int | None = None,
    one_model_variants: Sequence[str] = ("plain",),
) -> PayoffPlan:
    """The runs :func:`run_payoff` will train, before the signals are recorded.

    ``budgets``: one model for all tasks is trained at each (the references a grouping of that
    budget is compared with; see :mod:`~stgmtl.payoff.architectures`). ``group_sizes`` (with
    ``truth="pairs"``): also train groups of these sizes (3 or more), every one or a seeded
    sample of ``max_groups`` per size (:func:`~stgmtl.payoff.gains.sample_groups`), each one
    network at the recipe's width like a pair, on every seed (default none: as before); they are
    then systems like any other, so candidates of the recommendation too. ``group_sizes`` with
    another truth mode (e.g. ``"auto"`` resolved to ``"subsets"`` or ``"none"``), ``max_groups``
    without ``group_sizes`` and a size above ``T`` raise. ``one_model_variants``
    (:data:`ONE_MODEL_VARIANTS`, ``"plain"`` always among them): each other variant adds the
    one model trained that way at every budget (1 included) on every seed, after the seed's
    plain runs."""
    names = list(task_names)
    order = {t: i for i, t in enumerate(names)}
    t = len(names)
    if group_sizes and truth != "pairs":
        raise fail("group_sizes", f"no group sizes with truth {truth!r} (for {t} tasks; "
                   "truth='auto' resolves to 'pairs' only for some numbers of tasks): "
                   "truth='pairs' is needed to train groups beyond pairs",
                   list(group_sizes))  # fmt: skip
    if max_groups is not None and not group_sizes:
        raise fail("max_groups", "None without group_sizes", max_groups)
    for size in group_sizes:
        check_int("group_sizes", size, low=3, high=t)
    for variant in one_model_variants:
        check_choice("one_model_variants", variant, ONE_MODEL_VARIANTS)
    plan = PayoffPlan()
    pairs = [list(p) for p in itertools.combinations(names, 2)]
    if truth == "pairs" and max_pairs is not None and max_pairs < len(pairs):
        rng = np.random.default_rng([random_state, 7])
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
    larger: list[list[str]] = []
    if truth == "pairs" and group_sizes:
        larger = [list(g) for g in sample_groups(names, [int(x) for x in group_sizes],
                                                 max_per_size=max_groups,
                                                 random_state=random_state)]  # fmt: skip
    for seed in seeds:
        sets: list[list[str]] = [[n] for n in names] if singles else []
        if truth == "pairs":
            sets += pairs + larger
        elif truth == "subsets":
            sets += [list(c) for r in range(2, t) for c in itertools.combinations(names, r)]
        sets.append(names)
        seen = set()
        for s in sets:
            spec = network_spec(s, order, seed)
            if spec not in seen:
                seen.add(spec)
                plan.truth.append(spec)
        for b in sorted(set(budgets) - {1.0}):
            plan.truth.append(RunSpec("network", tuple(names), seed=seed, budget=float(b)))
        for variant in one_model_variants:
            if variant != "plain":
                for b in sorted(set(budgets) | {1.0}):
                    plan.truth.append(one_model_spec(names, seed, b, variant))
    if signals:
        if record_separately:
            # the free signals are read from the same data maps: one run records them together
            free = tuple(s for s in signals if s in FREE_SIGNALS)
            sig_sets = ([free] if free else []) + [(s,) for s in signals if s not in free]
        else:
            sig_sets = [tuple(signals)]
        plan.recordings = [(ss, seed) for seed in signal_seeds for ss in sig_sets]
    per_k = n_sources + random_partitions
    for arch in architectures:
        a = REGISTRY[arch]
        for k in ks:
            groups = tuple(tuple(g) for g in _balanced(names, k))
            memb: tuple[tuple[float, ...], ...] = ()
            if a.soft:
                w = np.full((t, k), 0.1 / max(k - 1, 1))
                for c, g in enumerate(groups):
                    w[[order[x] for x in g], c] = 0.9 if k > 1 else 1.0
                memb = tuple(tuple(r) for r in w)
            ex = RunSpec(a.kind, tuple(names), groups, memb, seeds[0], a.budget(k), a.split)
            plan.examples.append(ex)
            plan.examples_of.setdefault(arch, []).append(ex)
        plan.grouped_counts[arch] = per_k * len(ks) * len(seeds)
    return plan


def resolve_truth(truth: str, t: int) -> str:
    """The truth mode for ``t`` tasks (see :data:`TRUTH_MODES`)."""
    check_choice("truth", truth, TRUTH_MODES)
    if truth != "auto":
        return truth
    return "subsets" if t <= 5 else "pairs" if t <= 30 else "none"


def calibration_specs(plan: PayoffPlan) -> list[RunSpec]:
    """One run per distinct model shape of the plan, to time one training step each."""
    seen: dict[tuple[Any, ...], RunSpec] = {}
    for s in [*plan.truth, *plan.examples]:
        seen.setdefault((s.kind, len(s.tasks), s.k, bool(s.membership), s.budget), s)
    return list(seen.values())
