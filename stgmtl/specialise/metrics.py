"""Per-task test metrics (F1, balanced accuracy, ROC AUC, accuracy) as polars tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import rankdata
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from stgmtl._checks import check_random_state

__all__ = ["METRICS", "grouping_agreement", "seed_means", "summarise", "task_metrics"]

#: Metric columns of :func:`task_metrics` tables.
METRICS = ("f1", "balanced_accuracy", "roc_auc", "accuracy")


def task_metrics(
    logits: np.ndarray,
    targets: np.ndarray,
    task_names: Sequence[str],
    *,
    method: str = "model",
    seed: int = 0,
    threshold: float = 0.0,
) -> pl.DataFrame:
    """One row of metrics per task (vectorised over tasks; equal to ``sklearn.metrics``).

    Parameters
    ----------
    logits : np.ndarray
        ``(N, T)`` scores; a sample is predicted positive when its score > ``threshold``
        (logit 0 = probability 0.5). ROC AUC uses the scores directly.
    targets : np.ndarray
        ``(N, T)`` in {0, 1}.
    task_names : sequence of str
        ``T`` names.
    method : str
        Value of the ``method`` column.
    seed : int
        Value of the ``seed`` column.
    threshold : float, default 0.0

    Returns
    -------
    polars.DataFrame
        Columns ``method, seed, task, f1, balanced_accuracy, roc_auc, accuracy, positives``
        (``roc_auc`` and ``balanced_accuracy`` are NaN for a task whose targets hold one
        class only; ``f1`` is 0 when there are no positives and none predicted).
    """
    s = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)
    if s.ndim != 2 or s.shape != y.shape or s.shape[1] != len(task_names):
        raise ValueError(
            f"logits {s.shape} and targets {y.shape} must both be (N, T) with "
            f"T = len(task_names) = {len(task_names)}"
        )
    if not np.isin(y, (0, 1)).all():
        raise ValueError("targets: expected only 0 and 1, got other values")
    y = y.astype(bool)
    pred = s > threshold
    n = y.shape[0]
    pos = y.sum(0)
    neg = n - pos
    tp = (pred & y).sum(0)
    fp = (pred & ~y).sum(0)
    fn = pos - tp
    tn = neg - fp
    both = (pos > 0) & (neg > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        bal = np.where(both, 0.5 * (tp / pos + tn / neg), np.nan)
        # ROC AUC = Mann-Whitney U / (P N), with average ranks for ties (= sklearn's value)
        ranks = rankdata(s, axis=0)
        auc = (np.where(y, ranks, 0.0).sum(0) - pos * (pos + 1) / 2) / (pos * neg)
    return pl.DataFrame(
        {
            "method": [method] * len(task_names),
            "seed": np.full(len(task_names), int(seed), dtype=np.int64),
            "task": [str(t) for t in task_names],
            "f1": f1.astype(np.float64),
            "balanced_accuracy": bal.astype(np.float64),
            "roc_auc": np.where(both, auc, np.nan).astype(np.float64),
            "accuracy": ((tp + tn) / n).astype(np.float64),
            "positives": pos.astype(np.int64),
        }
    )


def seed_means(table: pl.DataFrame, metrics: Sequence[str] = METRICS) -> pl.DataFrame:
    """Each metric averaged over tasks within a (method, seed): the one rule for NaN.

    A task whose metric is NaN (ROC AUC and balanced accuracy of a task whose test targets
    hold one class only) is left out of that metric's mean; a mean over no defined value is
    null. The study table, the HTML report and the evaluation plot all use this.

    Returns
    -------
    polars.DataFrame
        Columns ``method, seed`` and the metrics, sorted by method then seed.
    """
    missing = [c for c in ("method", "seed", *metrics) if c not in table.columns]
    if missing:
        raise ValueError(
            f"table: expected columns method, seed, {list(metrics)}, missing {missing}"
        )
    return (
        table.group_by("method", "seed")
        .agg(pl.col(m).fill_nan(None).mean() for m in metrics)
        .sort("method", "seed")
    )


def summarise(table: pl.DataFrame, metrics: Sequence[str] = METRICS) -> pl.DataFrame:
    """Mean and spread of each metric per method.

    Each metric is first averaged over tasks within a (method, seed) by :func:`seed_means`
    (tasks where it is NaN left out); then the mean, the standard deviation (ddof 1; null for
    one seed), min and max over seeds are reported.

    Returns
    -------
    polars.DataFrame
        One row per method: ``method, seeds, <metric>_mean, <metric>_std, <metric>_min,
        <metric>_max`` for each metric, sorted by method.
    """
    per_seed = seed_means(table, metrics)
    aggs: list[pl.Expr] = [pl.col("seed").n_unique().alias("seeds")]
    for m in metrics:
        aggs += [
            pl.col(m).mean().alias(f"{m}_mean"),
            pl.col(m).std().alias(f"{m}_std"),
            pl.col(m).min().alias(f"{m}_min"),
            pl.col(m).max().alias(f"{m}_max"),
        ]
    return per_seed.group_by("method").agg(aggs).sort("method")


def grouping_agreement(
    labels: np.ndarray | Sequence[int],
    reference: np.ndarray | Sequence[object],
    *,
    n_permutations: int = 1000,
    random_state: Any = 0,
) -> dict[str, float]:
    """NMI and ARI of a task grouping against reference classes, beside random groups.

    The random baseline permutes ``labels`` over the tasks (random groups of exactly the same
    sizes), ``n_permutations`` times with a seeded generator.

    Parameters
    ----------
    labels : array-like of int
        ``(T,)`` group of each task (e.g. ``TaskGroups.labels``).
    reference : array-like
        ``(T,)`` reference class of each task (e.g. CIFAR-100 superclass names).
    n_permutations : int, default 1000
    random_state : None, int, numpy Generator or RandomState, default 0
        Seed of the permutations.

    Returns
    -------
    dict
        ``nmi``, ``ari``; ``nmi_random_mean``, ``nmi_random_std``, ``ari_random_mean``,
        ``ari_random_std``; ``nmi_p``, ``ari_p``: the fraction of permutations scoring at
        least as high (with the +1 correction), and ``n_permutations``.
    """
    lab = np.asarray(labels)
    ref = np.asarray(reference)
    if lab.ndim != 1 or lab.shape != ref.shape:
        raise ValueError(f"labels {lab.shape} and reference {ref.shape} must both be (T,)")
    if not isinstance(n_permutations, int) or n_permutations < 1:
        raise ValueError(f"n_permutations: expected a positive int, got {n_permutations!r}")
    rng = check_random_state("random_state", random_state)
    nmi = float(normalized_mutual_info_score(ref, lab))
    ari = float(adjusted_rand_score(ref, lab))
    perm_nmi = np.empty(n_permutations)
    perm_ari = np.empty(n_permutations)
    for i in range(n_permutations):
        p = rng.permutation(lab)
        perm_nmi[i] = normalized_mutual_info_score(ref, p)
        perm_ari[i] = adjusted_rand_score(ref, p)
    return {
        "nmi": nmi,
        "ari": ari,
        "nmi_random_mean": float(perm_nmi.mean()),
        "nmi_random_std": float(perm_nmi.std(ddof=1)) if n_permutations > 1 else 0.0,
        "ari_random_mean": float(perm_ari.mean()),
        "ari_random_std": float(perm_ari.std(ddof=1)) if n_permutations > 1 else 0.0,
        "nmi_p": float((1 + (perm_nmi >= nmi).sum()) / (1 + n_permutations)),
        "ari_p": float((1 + (perm_ari >= ari).sum()) / (1 + n_permutations)),
        "n_permutations": n_permutations,
    }
