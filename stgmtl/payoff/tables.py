"""Tables of the payoff harness, computed from finished runs; the saved :class:`PayoffResult`.

Vocabulary:

*system*
    One trained thing that serves tasks: a network on a task set (``net:...``), or a grouped
    model at one model's parameters (``separate:...``, ``separate-soft:...``, ``branched:...``).
    Its id is stable across seeds (:func:`system_id`).
*partition*
    ``k`` groups of the tasks, chosen by a *source* (a signal, a control, the measured truth on
    validation, a random draw, or the exhaustive enumeration), trained by an *architecture*:
    ``network`` (one full-width network per group, Standley / TAG style: ``k`` networks'
    parameters), ``separate`` / ``separate-soft`` (STG-MTL's ``k`` networks at one model's
    parameters, hard or soft memberships) or ``branched`` (shared trunk, one branch per group, one
    model's parameters).

For every partition, architecture and training seed the **payoff** is the mean over tasks of the
relative loss decrease against the one model at the partition's budget (``gain_vs_budget``; the
fair comparison: > 0, the grouping is better at equal parameters), against one model at 1x
(``gain_vs_one``) and against the single-task models (``gain_vs_single``), with the mean
ROC AUC, on validation and on test, with the parameters and multiply-adds of the systems a
partition uses. ``regret_oracle`` at ``(k, architecture)`` is the best test payoff among the
partitions evaluated there minus this one's: an oracle (the best is picked on test), labelled so;
nothing else in a table is picked on test. The source ``"exhaustive (val-best)"`` is the
exhaustive tier's partition chosen on validation.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stgmtl._checks import fail
from stgmtl._io import atomic_dir, read_manifest, read_parquet, verified_file, write_manifest
from stgmtl.affinity import TaskAffinity
from stgmtl.payoff.runs import RunSpec
from stgmtl.payoff.stats import rank_among_controls

__all__ = [
    "SUMMARY_COLUMNS",
    "PayoffResult",
    "payoff_summary",
    "payoff_table",
    "runs_table",
    "soft_vs_hard",
    "system_id",
    "system_kind",
    "COLUMN_LABELS",
    "labelled",
    "loss_lookup",
]

#: The columns of a payoff summary in the order the command line and the report show them.
SUMMARY_COLUMNS = (
    "source",
    "k",
    "architecture",
    "partitions",
    "seeds",
    "parameters",
    "macs",
    "gain_vs_budget",
    "gain_vs_budget_std",
    "gain_vs_one",
    "gain_vs_single",
    "roc_auc",
    "roc_auc_std",
    "vs_random_percentile",
    "vs_random_p",
    "vs_random_n",
    "regret_oracle",
)

#: Display names of table columns (the command line and the report show these).
COLUMN_LABELS = {
    "gain_vs_one": "gain vs one model (1x)",
    "gain_vs_budget": "gain vs one model at budget",
    "gain_vs_budget_std": "sd (seeds)",
    "gain_vs_one_std": "gain sd (seeds)",
    "gain_vs_single": "gain vs single-task",
    "roc_auc": "ROC AUC",
    "roc_auc_std": "ROC AUC sd",
    "regret_oracle": "regret (oracle: best on test)",
    "macs": "multiply-adds",
    "vs_random_percentile": "percentile among random",
    "vs_random_p": "p vs random",
    "vs_random_n": "random controls",
    "spearman": "Spearman",
    "spearman_lo": "Spearman 95% lo",
    "spearman_hi": "Spearman 95% hi",
    "kendall": "Kendall",
    "p_value": "Mantel p",
    "p_holm": "Mantel p (Holm)",
    "critical_rho": "critical rho",
    "top1": "top-1 partner",
    "sign_accuracy": "sign accuracy",
    "n_decided": "decided pairs",
    "meaningful": "ranking meaningful",
    "val_gain": "validation gain",
    "test_gain": "test gain",
}


def labelled(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with its columns renamed to :data:`COLUMN_LABELS` for display."""
    return df.rename({c: COLUMN_LABELS[c] for c in df.columns if c in COLUMN_LABELS})


_FORMAT = "stgmtl.PayoffResult"
_TABLES = (
    "runs",
    "systems",
    "partitions",
    "payoff",
    "summary",
    "truth",
    "signal_scores",
    "soft_vs_hard",
    "selection",
)


def _weighting(spec: Any) -> str:
    """``"-uncertainty"`` for a run with its own loss weighting (not ``"none"``), else empty."""
    lw = getattr(spec, "loss_weighting", "")
    return f"-{lw}" if lw else ""


def system_kind(spec: Any) -> str:
    """What trains a system, as the architecture registry names it: ``network``,
    ``separate``, ``separate-soft``, ``branched``, ``branched-early``; a run with its own loss
    weighting adds it: ``network-uncertainty`` (the loss-balanced one model)."""
    split = getattr(spec, "split", "")
    return (
        spec.kind
        + (f"-{split}" if split else "")
        + ("-soft" if spec.membership else "")
        + _weighting(spec)
    )


def system_id(spec: Any) -> str:
    """A stable id of what a run trains (its spec without the seed; ``@bx`` marks a budget).

    Networks: ``net:a+b`` (up to 3 tasks), ``net:15-tasks:<digest>``; with a loss weighting
    ``net-uncertainty:...``; grouped systems: ``<kind>:k<k>:<digest>``.
    """
    budget = float(getattr(spec, "budget", 1.0))
    at = "" if budget == 1.0 else f"@{budget:g}x"
    if spec.kind == "network":
        net = "net" + _weighting(spec)
        if len(spec.tasks) <= 3:
            return f"{net}:" + "+".join(spec.tasks) + at
        digest = hashlib.sha1("+".join(spec.tasks).encode()).hexdigest()[:10]
        return f"{net}:{len(spec.tasks)}-tasks:{digest}{at}"
    body = json.dumps([list(g) for g in spec.groups]) + json.dumps(spec.membership)
    return f"{system_kind(spec)}:k{spec.k}:{hashlib.sha1(body.encode()).hexdigest()[:10]}{at}"


def runs_table(results: list[Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(runs, systems)``: per-task metrics of every run, and one row per distinct system."""
    parts: list[pl.DataFrame] = []
    systems: dict[str, dict[str, Any]] = {}
    for r in results:
        sid = system_id(r.spec)
        parts.append(
            r.metrics.with_columns(
                pl.lit(r.key).alias("key"),
                pl.lit(sid).alias("system"),
                pl.lit(r.spec.kind).alias("kind"),
                pl.lit(r.spec.seed, dtype=pl.Int64).alias("seed"),
                pl.lit(float(r.spec.budget)).alias("budget"),
                pl.lit(r.parameters, dtype=pl.Int64).alias("parameters"),
                pl.lit(r.macs, dtype=pl.Int64).alias("macs"),
                pl.lit(r.train_seconds).alias("train_seconds"),
                pl.lit(r.eval_seconds).alias("eval_seconds"),
                pl.lit(r.cached).alias("cached"),
            )
        )
        systems.setdefault(
            sid,
            {
                "system": sid,
                "kind": system_kind(r.spec),
                "k": r.spec.k,
                "num_tasks": len(r.spec.tasks),
                "tasks": json.dumps(list(r.spec.tasks)),
                "groups": json.dumps([list(g) for g in r.spec.groups]),
                "budget": float(r.spec.budget),
                "parameters": r.parameters,
                "macs": r.macs,
            },
        )
    return pl.concat(parts, how="diagonal"), pl.DataFrame(list(systems.values()))


def loss_lookup(runs: pl.DataFrame, column: str) -> dict[tuple[str, int, str, str], float]:
    """``{(system, seed, split, task): value}`` of ``column`` in a :func:`runs_table`."""
    keys = zip(
        runs["system"].to_list(),
        runs["seed"].to_list(),
        runs["split"].to_list(),
        runs["task"].to_list(),
        strict=True,
    )
    return dict(zip(keys, runs[column].to_list(), strict=True))


def payoff_table(
    runs: pl.DataFrame,
    partitions: pl.DataFrame,
    task_names: list[str],
    *,
    column: str = "loss",
) -> pl.DataFrame:
    """Payoff of every partition, architecture and seed (module docstring).

    Parameters
    ----------
    runs : polars.DataFrame
        :func:`runs_table`'s ``runs``.
    partitions : polars.DataFrame
        One row per (partition, architecture, task): ``partition, source, k, architecture, task,
        system`` (the system that serves the task in that partition and architecture).
    task_names : list of str
    column : str
        The loss column.

    Returns
    -------
    polars.DataFrame
        ``partition, source, k, architecture, seed, split, gain_vs_one, gain_vs_single,
        roc_auc, loss, parameters, macs`` (``gain_vs_single`` NaN without single-task runs;
        ``parameters`` and ``macs``, multiply-adds per input, of all the systems the partition
        uses together).
    """
    loss = loss_lookup(runs, column)
    size = {
        sid: (int(p), int(m))
        for sid, p, m in runs.unique(subset=["system"])
        .select("system", "parameters", "macs")
        .iter_rows()
    }
    auc = loss_lookup(runs, "roc_auc")
    one = system_id(RunSpec("network", tuple(task_names)))
    seeds = sorted(set(runs["seed"].to_list()))
    budget_of = dict(
        runs.unique(subset=["system"]).select("system", pl.col("budget").fill_null(1.0)).iter_rows()
    ) if "budget" in runs.columns else {}  # fmt: skip
    rows = []
    for (pid, source, k, arch), sub in partitions.group_by(
        "partition", "source", "k", "architecture", maintain_order=True
    ):
        serve = dict(zip(sub["task"].to_list(), sub["system"].to_list(), strict=True))
        ref = _budget_reference(serve, budget_of, task_names, one)
        sizes = "+".join(
            map(str, sorted(np.bincount(sub["group"].to_numpy()).tolist(), reverse=True))
        )
        used = [size.get(sid, (0, 0)) for sid in set(serve.values())]
        params, macs = sum(u[0] for u in used), sum(u[1] for u in used)
        for seed in seeds:
            for split in ("val", "test"):
                vals = [loss.get((serve[t], seed, split, t), np.nan) for t in task_names]
                ones = [loss.get((one, seed, split, t), np.nan) for t in task_names]
                refs = [loss.get((ref, seed, split, t), np.nan) for t in task_names]
                sing = [
                    loss.get((system_id(RunSpec("network", (t,))), seed, split, t), np.nan)
                    for t in task_names
                ]
                aucs = [auc.get((serve[t], seed, split, t), np.nan) for t in task_names]
                v, o, s, b = np.array(vals), np.array(ones), np.array(sing), np.array(refs)
                if not np.isfinite(v).all():
                    continue
                with np.errstate(invalid="ignore", divide="ignore"):
                    rows.append(
                        {
                            "partition": pid,
                            "source": source,
                            "sizes": sizes,
                            "k": int(k),
                            "architecture": arch,
                            "seed": int(seed),
                            "split": split,
                            "gain_vs_one": float(np.mean((o - v) / o)),
                            "gain_vs_budget": float(np.mean((b - v) / b)),
                            "gain_vs_single": float(np.mean((s - v) / s)),
                            "roc_auc": float(np.nanmean(aucs))
                            if np.isfinite(aucs).any()
                            else np.nan,
                            "loss": float(v.mean()),
                            "parameters": params,
                            "macs": macs,
                        }
                    )
    return pl.DataFrame(
        rows,
        schema_overrides={
            "k": pl.Int64,
            "seed": pl.Int64,
            "parameters": pl.Int64,
            "macs": pl.Int64,
        },
    )


def _budget_reference(
    serve: dict[str, str], budget_of: dict[str, float], names: list[str], one: str
) -> str:
    """The one model at the partition's budget: a grouped system's own budget, else the number
    of networks serving the tasks (``k`` networks at the recipe's width: budget ``k``). A
    loss-balanced one model (``net-uncertainty:...``) counts with its own budget: it is
    compared with the plain one model at its budget, and a plain one model at ``b`` x
    parameters with itself (its ``gain_vs_budget`` is 0)."""
    systems = set(serve.values())
    if len(systems) == 1:  # one system serves every task: a one model is its own reference
        b = budget_of.get(next(iter(systems)), 1.0)
    else:
        grouped = [budget_of.get(s, 1.0) for s in systems if not s.startswith("net:")]
        b = max(grouped) if grouped else float(len(systems))
    return one if b == 1.0 else system_id(RunSpec("network", tuple(names), budget=b))


def payoff_summary(payoff: pl.DataFrame) -> pl.DataFrame:
    """Per (source, k, architecture, split): mean and std over seeds and partitions; regret.

    Sources with several partitions (random draws, the exhaustive tier) are averaged over them;
    ``regret_oracle`` is the best partition's test ``gain_vs_one`` at that ``(k,
    architecture)`` minus the source's mean; ``best_oracle`` is that best partition's gain (both
    pick on test: oracles).
    """
    if payoff.height == 0:
        return payoff
    per_part = payoff.group_by("partition", "source", "sizes", "k", "architecture", "split").agg(
        pl.col("gain_vs_one", "gain_vs_budget", "gain_vs_single", "roc_auc", "loss").mean(),
        pl.col("gain_vs_one").std().alias("part_std"),
        pl.len().alias("seeds"),
    )
    best = (
        per_part.filter(pl.col("split") == "test")
        .group_by("k", "architecture")
        .agg(pl.col("gain_vs_one").max().alias("best_oracle"))
    )
    summary = (
        payoff.group_by("source", "k", "architecture", "split")
        .agg(
            pl.col("partition").n_unique().alias("partitions"),
            pl.col("seed").n_unique().alias("seeds"),
            pl.col("gain_vs_one").mean().alias("gain_vs_one"),
            pl.col("gain_vs_one").std().alias("gain_vs_one_std"),
            pl.col("gain_vs_budget").mean().alias("gain_vs_budget"),
            pl.col("gain_vs_budget").std().alias("gain_vs_budget_std"),
            pl.col("gain_vs_single").mean().alias("gain_vs_single"),
            pl.col("gain_vs_single").std().alias("gain_vs_single_std"),
            pl.col("roc_auc").mean().alias("roc_auc"),
            pl.col("roc_auc").std().alias("roc_auc_std"),
            pl.col("parameters").mean().alias("parameters"),
            pl.col("macs").mean().alias("macs"),
        )
        .join(best, on=["k", "architecture"], how="left")
        .with_columns(
            pl.when(pl.col("split") == "test")
            .then(pl.col("best_oracle") - pl.col("gain_vs_one"))
            .otherwise(None)
            .alias("regret_oracle")
        )
        .sort(
            "split",
            "architecture",
            "k",
            "gain_vs_one",
            "source",
            descending=[False, False, False, True, False],
            maintain_order=True,
        )  # fmt: skip
    )
    return _against_random(summary, per_part)


def _against_random(summary: pl.DataFrame, per_part: pl.DataFrame) -> pl.DataFrame:
    """Add ``vs_random_p`` / ``vs_random_percentile`` / ``vs_random_n``: each source's seed-mean
    ``gain_vs_budget`` ranked among the fixed random partitions with **the same group sizes**
    at the same ``(k, architecture, split)`` (:func:`~stgmtl.payoff.stats.rank_among_controls`;
    ``p = (1 + #controls at least as good) / (1 + P)``, so fewer than 19 controls cannot reach
    5 %). A source with several partitions (one per signal seed) uses their mean and the sizes
    of its first; none with its sizes: null."""
    controls: dict[tuple[Any, ...], list[float]] = {}
    rand = per_part.filter(pl.col("source") == "random partition")
    for k, arch, split, sizes, g in rand.select(
        "k", "architecture", "split", "sizes", "gain_vs_budget"
    ).iter_rows():
        controls.setdefault((k, arch, split, sizes), []).append(g)
    first_sizes = {
        (src, k, arch, split): sizes
        for src, k, arch, split, sizes in per_part.select(
            "source", "k", "architecture", "split", "sizes"
        ).iter_rows()
    }
    p_col: list[float | None] = []
    pct_col: list[float | None] = []
    n_col: list[int | None] = []
    for src, k, arch, split, g in summary.select(
        "source", "k", "architecture", "split", "gain_vs_budget"
    ).iter_rows():
        ctl = controls.get((k, arch, split, first_sizes.get((src, k, arch, split))))
        if not ctl or src == "random partition" or g is None or not np.isfinite(g):
            p_col.append(None)
            pct_col.append(None)
            n_col.append(None)
            continue
        r = rank_among_controls(float(g), ctl)
        p_col.append(float(r.p_value))
        pct_col.append(float(r.percentile))
        n_col.append(len(ctl))
    return summary.with_columns(
        pl.Series("vs_random_p", p_col, dtype=pl.Float64),
        pl.Series("vs_random_percentile", pct_col, dtype=pl.Float64),
        pl.Series("vs_random_n", n_col, dtype=pl.Int64),
    )


def soft_vs_hard(summary: pl.DataFrame) -> pl.DataFrame:
    """Soft (``separate-soft``) minus hard (``separate``) payoff per source, k and split."""
    if summary.height == 0 or "separate-soft" not in summary["architecture"].to_list():
        return pl.DataFrame()
    cols = ["source", "k", "split"]
    hard = summary.filter(pl.col("architecture") == "separate").select(
        *cols, pl.col("gain_vs_one").alias("hard"), pl.col("roc_auc").alias("hard_auc")
    )
    soft = summary.filter(pl.col("architecture") == "separate-soft").select(
        *cols, pl.col("gain_vs_one").alias("soft"), pl.col("roc_auc").alias("soft_auc")
    )
    return (
        hard.join(soft, on=cols)
        .with_columns(
            (pl.col("soft") - pl.col("hard")).alias("soft_minus_hard"),
            (pl.col("soft_auc") - pl.col("hard_auc")).alias("auc_soft_minus_hard"),
        )
        .sort("split", "source", "k")
    )


@dataclass
class PayoffResult:
    """Everything the harness measured, as polars tables (saved with a checksummed manifest).

    Attributes
    ----------
    task_names : list of str
    settings : dict
        The harness's settings (seeds, recipe, ks, architectures, budget, ...).
    runs : polars.DataFrame
        Per-task validation and test metrics of every run (:func:`runs_table`).
    systems : polars.DataFrame
        One row per trained system: kind, k, tasks, groups, parameters, multiply-adds.
    partitions : polars.DataFrame
        Which system serves each task in each evaluated partition and architecture.
    payoff, summary : polars.DataFrame
        :func:`payoff_table`, :func:`payoff_summary`.
    truth : polars.DataFrame
        Measured directed-pair gains on val and test (empty without pair runs).
    signal_scores : polars.DataFrame
        One row per signal (:func:`stgmtl.payoff.scoring.score_signals`) plus recording
        cost (empty without pair runs).
    soft_vs_hard : polars.DataFrame
        :func:`soft_vs_hard`.
    selection : polars.DataFrame
        Budgeted selection per budget (filled by :func:`stgmtl.payoff.recommendation`).
    recommendation : dict
        The recommendation's JSON form.
    signals : dict of str to TaskAffinity
        The recorded signals and controls (first signal seed).
    """

    task_names: list[str]
    settings: dict[str, Any]
    runs: pl.DataFrame
    systems: pl.DataFrame
    partitions: pl.DataFrame
    payoff: pl.DataFrame
    summary: pl.DataFrame
    truth: pl.DataFrame = field(default_factory=pl.DataFrame)
    signal_scores: pl.DataFrame = field(default_factory=pl.DataFrame)
    soft_vs_hard: pl.DataFrame = field(default_factory=pl.DataFrame)
    selection: pl.DataFrame = field(default_factory=pl.DataFrame)
    recommendation: dict[str, Any] = field(default_factory=dict)
    signals: dict[str, TaskAffinity] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write every table as parquet, the signals and a checksummed manifest, atomically."""
        path = Path(path)
        with atomic_dir(path, what="PayoffResult") as tmp:
            files = {}
            for name in _TABLES:
                table: pl.DataFrame = getattr(self, name)
                table.write_parquet(tmp / f"{name}.parquet")
                files[name] = f"{name}.parquet"
            for i, aff in enumerate(self.signals.values()):
                aff.save(tmp / f"signal_{i}")
            (tmp / "recommendation.json").write_text(json.dumps(self.recommendation, indent=2))
            files["recommendation"] = "recommendation.json"
            manifest = {
                "format": _FORMAT,
                "format_version": 2,  # 2: the manifest carries its own checksum
                "task_names": self.task_names,
                "settings": self.settings,
                "signals": list(self.signals),
            }
            write_manifest(tmp, manifest, files)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PayoffResult:
        """Read a folder written by :meth:`save` (every file verified against its checksum)."""
        path = Path(path)
        manifest = read_manifest(
            path, what="PayoffResult", formats={_FORMAT: (1, 2)}, unsigned={(_FORMAT, 1)}
        )
        tables = {n: read_parquet(verified_file(path, manifest, n)) for n in _TABLES}
        rec = json.loads(verified_file(path, manifest, "recommendation").read_text())
        names = manifest.get("signals", [])
        if not isinstance(names, list):
            raise fail("path", "a manifest listing its signals", names)
        signals = {n: TaskAffinity.load(path / f"signal_{i}") for i, n in enumerate(names)}
        return cls(
            task_names=list(manifest["task_names"]),
            settings=dict(manifest["settings"]),
            recommendation=rec,
            signals=signals,
            **tables,
        )
