"""The ground truth of task affinity: measured gains of pair training over single-task training.

From the runs of the payoff harness (a network per task, per pair of tasks and for all tasks
together, on several seeds with paired data order and initialisation):

* the **gain** of partner ``j`` for task ``i`` on seed ``s`` is the relative decrease of task
  ``i``'s loss when trained with ``j`` instead of alone,

      gain[s, j, i] = (L_single[s, i] - L_pair{i, j}[s, i]) / L_single[s, i]

  (positive = ``j`` helps ``i``; :func:`~stgmtl.payoff.gains.relative_gain`, the one
  definition of a gain, which also serves groups of 3+ tasks), in the
  :class:`~stgmtl.affinity.TaskAffinity` orientation ``values[source, recipient]``; the truth
  is its mean over seeds;
* the **noise floor** of task ``i`` is the seed spread of its single-task loss, relative to its
  mean: ``std_s(L_single[s, i]) / mean_s(L_single[s, i])`` (ddof 1), used only to call a
  top-1 partner "within noise";
* a pair ``(j -> i)`` is **decided** (helpful or harmful) by a moderated paired t-test of its
  per-seed gains per direction, Benjamini-Yekutieli-corrected over all pairs
  (:func:`~stgmtl.payoff.stats.moderated_pair_tests`), and only with at least 5 seeds: below
  that no pair is decided;
* the truth's own **reliability** is how well the gains of one seed rank like another's
  (:meth:`GroundTruth.reliability`): the Spearman-Brown reliability of the seed mean, and the
  seeds it would take to reach 0.7. No signal can correlate with the mean gains much beyond its
  square root (the ceiling).

The loss is the run's per-task loss on one split (``"test"`` to score signals, ``"val"`` to
choose), by default the training objective (BCE with the recipe's ``pos_weight``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import rankdata

from stgmtl._checks import check_choice, fail
from stgmtl.affinity import TaskAffinity
from stgmtl.payoff.gains import relative_gain
from stgmtl.payoff.stats import (
    PairTests,
    moderated_pair_tests,
    seed_reliability,
    seeds_for_reliability,
)

__all__ = [
    "GroundTruth",
    "difficulty_control",
    "ground_truth",
    "network_losses",
    "spearman",
    "truth_from_losses",
]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two 1-D samples (average ranks for ties); NaN if either is constant."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def network_losses(
    results: Sequence[Any], split: str, column: str = "loss"
) -> dict[tuple[tuple[str, ...], int], dict[str, float]]:
    """``{(sorted task set, seed): {task: value}}`` of the ``"network"`` runs on ``split``.

    Parameters
    ----------
    results : sequence of RunResult
        Finished runs (other kinds, networks with their own ``loss_weighting`` and networks at
        a budget other than 1, the budget-matched one models, are skipped: the truth is the
        networks at the recipe's width).
    split : {"val", "test"}
    column : str
        A metric column of the runs (``"loss"``, ``"bce"``, ``"roc_auc"``).
    """
    check_choice("split", split, ("val", "test"))
    out: dict[tuple[tuple[str, ...], int], dict[str, float]] = {}
    for r in results:
        if r.spec.kind != "network" or getattr(r.spec, "loss_weighting", ""):
            continue  # a loss-balanced one model is a baseline, not the truth
        if float(getattr(r.spec, "budget", 1.0)) != 1.0:
            continue  # a one model at b x parameters is a reference, not the truth's network
        rows = r.metrics.filter(pl.col("split") == split)
        out[(tuple(sorted(r.spec.tasks)), r.spec.seed)] = dict(
            zip(rows["task"].to_list(), rows[column].to_list(), strict=True)
        )
    return out


@dataclass
class GroundTruth:
    """Measured pair gains over single-task training, per seed, with the noise floor.

    Attributes
    ----------
    task_names : list of str
    seeds : list of int
    split : str
        The split the losses were measured on.
    single : np.ndarray
        ``(S, T)`` single-task losses per seed.
    pair : np.ndarray
        ``(S, T, T)``: ``pair[s, j, i]`` is task ``i``'s loss trained with ``j`` (NaN where the
        pair was not trained, and on the diagonal).
    all_tasks : np.ndarray
        ``(S, T)`` losses of one model for all tasks (NaN where not trained).
    """

    task_names: list[str]
    seeds: list[int]
    split: str
    single: np.ndarray
    pair: np.ndarray
    all_tasks: np.ndarray

    @property
    def num_tasks(self) -> int:
        """``T``."""
        return len(self.task_names)

    def seed_gains(self) -> np.ndarray:
        """``(S, T, T)`` gains per seed, ``[s, source, recipient]`` (NaN where not measured)."""
        return relative_gain(self.single[:, None, :], self.pair)

    def gains(self) -> np.ndarray:
        """``(T, T)`` mean gain over seeds, ``[source, recipient]``; NaN where not measured."""
        g = self.seed_gains()
        seen = np.isfinite(g).all(0)
        out = np.full(g.shape[1:], np.nan)
        out[seen] = g[:, seen].mean(0)
        return out

    def noise_floor(self) -> np.ndarray:
        """``(T,)`` relative seed spread of each task's single-task loss (NaN for one seed)."""
        if self.single.shape[0] < 2:
            return np.full(self.num_tasks, np.nan)
        return self.single.std(0, ddof=1) / np.abs(self.single.mean(0))

    def pair_tests(self, alpha: float = 0.05) -> PairTests:
        """The moderated per-direction pair tests (at least 5 seeds, Benjamini-Yekutieli at
        ``alpha``; :func:`~stgmtl.payoff.stats.moderated_pair_tests`)."""
        g = self.seed_gains()
        g = np.where(np.isfinite(g).all(0, keepdims=True), g, np.nan)
        for s in range(g.shape[0]):
            np.fill_diagonal(g[s], np.nan)
        return moderated_pair_tests(g, min_seeds=5, alpha=alpha, method="by")

    def decided(self, alpha: float = 0.05) -> np.ndarray:
        """``(T, T)`` bool: pairs the moderated tests decide (none below 5 seeds)."""
        return self.pair_tests(alpha).decided != 0

    def reliability(self) -> dict[str, float]:
        """How reproducible the measured gains are across seeds: the ceiling for any signal.

        Returns
        -------
        dict
            ``seed_spearman``: mean over pairs of seeds of Spearman's rho between their gain
            matrices (over the directed pairs measured on every seed,
            :func:`~stgmtl.payoff.stats.seed_reliability`); ``mean_reliability``: the
            Spearman-Brown reliability of the mean over ``S`` seeds, ``S r / (1 + (S - 1) r)``;
            ``ceiling``: its square root, about the largest rank correlation a perfect signal
            can reach with the mean gains (NaN for one seed or ``r <= 0``);
            ``seeds_for_0.7``: the seeds whose mean would reach a reliability of 0.7 (NaN when
            ``r <= 0``: no number of seeds would).
        """
        g = self.seed_gains()
        rel_all = seed_reliability(g)
        s = g.shape[0]
        r = rel_all["seed_spearman"]
        rel = rel_all["reliability_spearman"]
        need = seeds_for_reliability(r, 0.7) if np.isfinite(r) else None
        return {
            "seed_spearman": r,
            "seeds": float(s),
            "mean_reliability": rel,
            "ceiling": float(np.sqrt(rel)) if np.isfinite(rel) else float("nan"),
            "seeds_for_0.7": float(need) if need is not None else float("nan"),
        }

    def one_model_gain(self) -> np.ndarray:
        """``(T,)`` mean relative gain of one model for all tasks over single-task models."""
        return relative_gain(self.single, self.all_tasks).mean(0)

    def affinity(self) -> TaskAffinity:
        """The mean gains as a ``TaskAffinity`` (signal ``"truth"``), with per-pair seed counts."""
        g = self.gains()
        return TaskAffinity(
            task_names=list(self.task_names),
            values=g,
            signal="truth",
            counts=np.where(np.isfinite(g), len(self.seeds), 0).astype(np.int64),
            meta={
                "formula": "(L_single[i] - L_pair{i,j}[i]) / L_single[i], mean over seeds",
                "split": self.split,
                "seeds": list(self.seeds),
            },
        )

    def to_frame(self) -> pl.DataFrame:
        """One row per measured directed pair: ``source, target, gain, gain_std, floor,
        decided`` (``gain_std`` over seeds, ddof 1)."""
        g, d, floor = self.gains(), self.decided(), self.noise_floor()
        per = self.seed_gains()
        src, dst = np.nonzero(np.isfinite(g))
        std = per[:, src, dst].std(0, ddof=1) if len(self.seeds) > 1 else np.full(src.size, np.nan)
        names = np.asarray(self.task_names, dtype=object)
        return pl.DataFrame(
            {
                "source": names[src].tolist(),
                "target": names[dst].tolist(),
                "gain": g[src, dst],
                "gain_std": std,
                "floor": floor[dst],
                "decided": d[src, dst],
            }
        )


def ground_truth(
    results: Sequence[Any],
    task_names: Sequence[str],
    *,
    split: str = "test",
    column: str = "loss",
) -> GroundTruth:
    """Collect single, pair and all-task network runs into a :class:`GroundTruth`.

    Parameters
    ----------
    results : sequence of RunResult
        The harness's runs; ``"network"`` runs on one task, two tasks and all tasks are used.
    task_names : sequence of str
        The suite's tasks, the order of the matrices.
    split : {"val", "test"}
    column : str
        The per-task loss column (default the training objective).

    Returns
    -------
    GroundTruth

    Raises
    ------
    ValueError
        If some task has no single-task run on some seed that has runs.
    """
    return truth_from_losses(network_losses(results, split, column), task_names, split=split)


def truth_from_losses(
    losses: dict[tuple[tuple[str, ...], int], dict[str, float]],
    task_names: Sequence[str],
    *,
    split: str = "test",
) -> GroundTruth:
    """A :class:`GroundTruth` from ``{(sorted task set, seed): {task: loss}}``.

    The form :func:`network_losses` gives from finished runs and
    :func:`~stgmtl.payoff.gains.losses_from_tables` from a saved result's tables; sets of one,
    two and all tasks are used, others ignored.

    Raises
    ------
    ValueError
        If some task has no single-task loss on some seed that has losses.
    """
    names = [str(t) for t in task_names]
    pos = {t: i for i, t in enumerate(names)}
    seeds = sorted({seed for (_, seed) in losses})
    if not seeds:
        raise fail("results", "finished 'network' runs", "none")
    t, s = len(names), len(seeds)
    single = np.full((s, t), np.nan)
    pair = np.full((s, t, t), np.nan)
    every = np.full((s, t), np.nan)
    full = tuple(sorted(names))
    for (tasks, seed), vals in losses.items():
        si = seeds.index(seed)
        if len(tasks) == 1 and tasks[0] in pos:
            single[si, pos[tasks[0]]] = vals[tasks[0]]
        elif len(tasks) == 2 and all(x in pos for x in tasks):
            a, b = pos[tasks[0]], pos[tasks[1]]
            pair[si, b, a] = vals[tasks[0]]  # a's loss with partner b: source b, recipient a
            pair[si, a, b] = vals[tasks[1]]
        if tasks == full:
            every[si] = [vals[n] for n in names]
    missing = np.argwhere(~np.isfinite(single))
    if missing.size:
        si, ti = missing[0]
        raise fail(
            "results",
            "a single-task run of every task on every seed",
            f"none for {names[ti]!r} on seed {seeds[si]}",
        )
    return GroundTruth(names, seeds, split, single, pair, every)


def difficulty_control(truth: GroundTruth) -> TaskAffinity:
    """The single-task-loss control: a partner helps as much as it is easy to learn alone.

    ``values[j, i] = -mean_s L_single[s, j]``: minus the source (partner) task's single-task
    loss, averaged over ``truth``'s seeds (NaN diagonal). Pass the *validation* truth when the
    signals are scored against the test truth (the harness does), so that the control reads no
    test loss. It needs no recording and no pair run, only the single-task networks: a signal
    that does not beat it has found no more than which tasks are hard (random-label and noisy
    tasks are found by it alone).

    Parameters
    ----------
    truth : GroundTruth
        Its ``single`` losses are used (seeds with a NaN are skipped per task).

    Returns
    -------
    TaskAffinity
        Signal ``"difficulty"``.
    """
    seen = np.isfinite(truth.single)
    if not seen.any(0).all():
        raise fail("truth", "a single-task loss for every task", truth.single.shape)
    loss = np.where(seen, truth.single, 0.0).sum(0) / seen.sum(0)
    t = truth.num_tasks
    v = np.repeat(-loss[:, None], t, axis=1)
    np.fill_diagonal(v, np.nan)
    return TaskAffinity(
        list(truth.task_names), v, "difficulty",
        meta={"formula": "-mean_s L_single[s, source]", "split": truth.split},
    )  # fmt: skip
