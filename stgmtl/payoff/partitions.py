"""Partitions the payoff harness trains: from each signal, the validation truth, random, all.

:func:`build_partitions` makes, for each ``k``, the partition every signal implies under the one
common selector (:func:`~stgmtl.payoff.search.partition_from_affinity`), the partition
of the measured validation gains (``"truth (val)"``), fixed size-matched random partitions
(the group sizes of the source partitions at that ``k`` in turn) and, in the exhaustive
tier, every partition. :func:`partition_specs` turns one partition into the runs that train it
with an architecture, and :func:`partition_rows` records which system serves each task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stgmtl.affinity import TaskAffinity
from stgmtl.grouping import TaskGroups
from stgmtl.payoff.architectures import architecture
from stgmtl.payoff.plan import network_spec, one_model_spec
from stgmtl.payoff.runs import RunSpec
from stgmtl.payoff.search import partition_from_affinity, set_partitions
from stgmtl.payoff.softness import soft_memberships
from stgmtl.payoff.tables import system_id
from stgmtl.payoff.truth import GroundTruth

__all__ = [
    "Partition",
    "build_partitions",
    "grouping_runs",
    "partition_rows",
    "partition_specs",
]


def partition_rows(
    pid: str, source: str, k: int, arch: str, labels: np.ndarray, names: list[str], sids: list[str]
) -> list[dict[str, Any]]:
    return [
        {
            "partition": pid,
            "source": source,
            "k": int(k),
            "architecture": arch,
            "task": t,
            "group": int(labels[i]),
            "system": sids[i],
        }
        for i, t in enumerate(names)
    ]


class Partition:
    def __init__(
        self,
        pid: str,
        source: str,
        k: int,
        labels: np.ndarray,
        seeds: list[int],
        groups: TaskGroups | None = None,
    ) -> None:
        self.pid, self.source, self.k, self.labels = pid, source, k, np.asarray(labels)
        self.seeds, self.groups = seeds, groups


def partition_specs(
    part: Partition, arch: str, names: list[str], order: dict[str, int], target_entropy: float
) -> tuple[list[RunSpec], list[str]] | None:
    """Runs that train ``part`` with ``arch`` on each of its seeds, and each task's system id.

    ``arch`` is a registry name (:data:`~stgmtl.payoff.architectures.ARCHITECTURES`), or
    ``"subsets"``: the partition served by the truth's own networks at the recipe's width (the
    exhaustive tier; its cost is what those networks hold, up to ``k`` models).
    """
    groups = [[names[i] for i in np.flatnonzero(part.labels == g)] for g in np.unique(part.labels)]
    if arch == "subsets":
        specs = [network_spec(g, order, s) for s in part.seeds for g in groups]
        by_task = {t: system_id(network_spec(g, order, 0)) for g in groups for t in g}
        return specs, [by_task[t] for t in names]
    a = architecture(arch)
    memb: tuple[tuple[float, ...], ...] = ()
    if a.soft:
        if part.groups is None or part.groups.method == "hard":
            return None  # random, exhaustive or structureless partitions have no distances
        w, _ = soft_memberships(part.groups, target_entropy)
        # columns in the order of `groups` (labels sorted), rows in task order
        w = w[:, np.unique(part.labels)]
        w = w / w.sum(1, keepdims=True)
        memb = tuple(tuple(float(v) for v in row) for row in w)
    gt = tuple(tuple(g) for g in groups)
    budget = a.budget(len(groups))
    specs = [RunSpec(a.kind, tuple(names), gt, memb, s, budget, a.split) for s in part.seeds]
    sid = system_id(specs[0])
    return specs, [sid] * len(names)


def build_partitions(
    names: list[str],
    ks: list[int],
    seeds: list[int],
    signal_seeds: list[int],
    by_seed: dict[int, dict[str, TaskAffinity]],
    precomputed: dict[str, TaskAffinity],
    controls: dict[str, TaskAffinity],
    gt: dict[str, GroundTruth],
    mode: str,
    random_partitions: int,
    random_state: int,
) -> list[Partition]:
    t = len(names)
    parts: list[Partition] = []
    sources: dict[str, dict[int, TaskAffinity]] = {}
    for name, aff in precomputed.items():
        sources[name] = {s: aff for s in seeds}
    first = signal_seeds[0]
    for seed in seeds:
        recorded = by_seed.get(seed, by_seed.get(first, {}))
        for name, aff in recorded.items():
            sources.setdefault(name, {})[seed] = aff
    for name, aff in controls.items():
        if name not in sources:
            sources[name] = {s: aff for s in seeds}
    if "val" in gt and mode == "pairs":
        val_truth = gt["val"].affinity()
        sources["truth (val)"] = {s: val_truth for s in seeds}
    for k in ks:
        for name, per_seed in sources.items():
            # one partition per distinct affinity object; trained on the seeds that use it
            by_obj: dict[int, list[int]] = {}
            objs: dict[int, TaskAffinity] = {}
            for s, aff in per_seed.items():
                by_obj.setdefault(id(aff), []).append(s)
                objs[id(aff)] = aff
            for j, (oid, ss) in enumerate(by_obj.items()):
                groups = partition_from_affinity(objs[oid], k, random_state=random_state)
                pid = f"{name}:k{k}" + (f":{j}" if len(by_obj) > 1 else "")
                parts.append(Partition(pid, name, k, groups.labels, sorted(ss), groups))
        # fixed random partitions, each trained on every seed; size-matched: control r takes
        # the r-th distinct group-size profile of the source partitions at this k (cycling), or
        # sizes as equal as possible when there is no source; each source is ranked only
        # against the controls of its own profile (tables._against_random)
        profiles = sorted(
            {tuple(sorted(np.bincount(p.labels, minlength=k).tolist(), reverse=True))
             for p in parts if p.k == k}
        )  # fmt: skip
        for r in range(random_partitions):
            rng = np.random.default_rng([random_state, k, r])
            sizes = profiles[r % len(profiles)] if profiles else np.bincount(np.arange(t) % k)
            lab = rng.permutation(np.repeat(np.arange(k), sizes))
            parts.append(Partition(f"random:k{k}:{r}", "random partition", k, lab, seeds))
        if mode == "subsets" and k > 1:
            for j, lab in enumerate(set_partitions(t, k)):
                parts.append(Partition(f"exhaustive:k{k}:{j}", "exhaustive", k, lab, seeds))
    return parts


def grouping_runs(
    partitions: list[Partition],
    architectures: Sequence[str],
    names: list[str],
    target_entropy: float,
    singles: bool,
    budgets: Sequence[float] = (1.0,),
    one_model_variants: Sequence[str] = ("plain",),
) -> tuple[list[RunSpec], list[dict[str, Any]]]:
    """Runs that train every partition with every architecture, and the partitions table rows
    (with the one-model references at each budget and, when trained, single-task networks).

    Each one-model variant other than ``"plain"`` (e.g. ``"uncertainty"``) adds, per budget
    ``b``, the rows of source ``"one model (uncertainty)"``, architecture
    ``"network-uncertainty@<b>x"``: the payoff table then gives its gain against the plain one
    model at the same budget (``gain_vs_budget``)."""
    specs: list[RunSpec] = []
    rows: list[dict[str, Any]] = []
    order = {n: i for i, n in enumerate(names)}
    for part in partitions:
        for arch in architectures:
            how = arch
            if part.source.startswith("exhaustive"):
                if arch != architectures[0]:
                    continue  # the exhaustive tier is served by the truth's own networks, once
                how = "subsets"
            made = partition_specs(part, how, names, order, target_entropy)
            if made is not None:
                specs += made[0]
                rows += partition_rows(
                    part.pid, part.source, part.k, how, part.labels, names, made[1]
                )
    t = len(names)
    for b in budgets:
        one = system_id(RunSpec("network", tuple(names), budget=b))
        label = "one model" if b == 1.0 else f"one model ({b:g}x)"
        rows += partition_rows(
            label, "one model", 1, f"network@{b:g}x", np.zeros(t, dtype=np.int64), names, [one] * t
        )
    for variant in one_model_variants:
        if variant == "plain":
            continue
        for b in budgets:
            sid = system_id(one_model_spec(names, budget=b, variant=variant))
            label = f"one model ({variant})" if b == 1.0 else f"one model ({variant}, {b:g}x)"
            rows += partition_rows(
                label, f"one model ({variant})", 1, f"network-{variant}@{b:g}x",
                np.zeros(t, dtype=np.int64), names, [sid] * t,
            )  # fmt: skip
    if singles:
        single = [system_id(network_spec([n], order, 0)) for n in names]
        rows += partition_rows(
            "single-task", "single-task", t, "network", np.arange(t), names, single
        )
    return specs, rows
