"""Predict the gain of training a group together from a few trained groups (ETAP-style).

ETAP (Ayman, Mukhopadhyay, Laszka, ICLR 2026) extends a pairwise affinity score to groups, maps
it to the measured gain through a non-linear (B-spline) transform and corrects the residual with
a ridge model fitted on a limited number of trained groups. This module does the same for any
recorded signal of stgmtl, with scikit-learn only (re-derived from the paper's description; no
code of the paper's):

**The model** (:class:`GainPredictor`), per (group, member task) row of
:func:`~stgmtl.payoff.group_features.group_features`:

1. *calibration*: each chosen signal statistic goes through its own cubic B-spline basis
   (``sklearn.preprocessing.SplineTransformer``, uniform or quantile knots, constant
   extrapolation)
   and one ridge fits the sum of these per-signal non-linear maps to the gain;
2. *residual*: a second ridge fits what the calibration leaves, from the group's membership
   (which task is the recipient, which tasks are its partners) and its size.

Knots, both ridge penalties, the signal set and the statistics are chosen by an inner
``sklearn.model_selection.GridSearchCV`` over group-wise K folds of task sets
(:func:`outer_folds`, as ``GroupKFold`` with a seeded order, for
any scikit-learn >= 1.3) (:func:`fit_predictor`).

**The evaluation** (:func:`evaluate_predictor`): outer folds over *task sets* (every member row
of a group, every seed's gain of it, in the same fold), so the claim is "the gain of unseen
combinations of seen tasks". Held-out R^2 and Spearman's rho of predicted against measured
(seed-mean) gains, pooled over the outer folds, each with a percentile bootstrap interval over
tasks (a replicate draws ``T`` tasks with replacement and weighs each row by the product of its
members' draw counts); the noise ceiling of the measured gains (:func:`noise_ceiling`). Baselines
on the same folds: each raw signal's ``in_mean`` through a linear fit, ridge on membership
alone, Standley et al.'s higher-order estimate from the measured pair gains of the training
folds, and the controls (the same calibrated predictor reading only the harness's ``random``
or ``label`` control signal, where present; the calibrated predictor itself never reads them).
:func:`learning_curve` repeats the evaluation with only ``n`` trained groups.

**Pooled scores can be read too kindly.** A task's gains in every group share its reference
loss (its single-task network's, per seed), so the seed-mean gains of one task move together
with that reference's seed noise; a method that learns "which task is the recipient" (membership,
or any predictor with a residual on it) predicts that shared part on held-out groups, and the
pooled R^2 / Spearman can even exceed :func:`noise_ceiling` (which is computed over rows, per
seed). :func:`within_task_scores` asks the question a grouping decision needs instead: for a
given task, which of its groups help it most (Spearman within each recipient task, averaged
over tasks; the shared reference cancels), with its own within-task noise ceiling.

Predictions are **predicted** gains (``origin = "predicted"``, :mod:`~stgmtl.payoff.gains`),
never mixed with measured ones: :func:`cross_fitted_gains` returns a table of predicted gains for
every candidate (out-of-fold for trained groups), which
:func:`~stgmtl.payoff.gains.select_from_gains` accepts only on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler

from stgmtl._checks import check_int, fail, seed_from
from stgmtl.payoff.gains import mean_gains
from stgmtl.payoff.group_features import SIGNAL_STATS, membership_columns, signal_columns
from stgmtl.payoff.scoring import CONTROLS
from stgmtl.payoff.stats import seed_reliability, spearman_brown
from stgmtl.payoff.truth import spearman

__all__ = [
    "DEFAULT_GRID",
    "GainPredictor",
    "PredictorEvaluation",
    "cross_fitted_gains",
    "evaluate_predictor",
    "fit_predictor",
    "learning_curve",
    "noise_ceiling",
    "outer_folds",
    "standley_estimate",
    "training_table",
    "within_task_scores",
]

#: The inner grid (``signals`` is added per call: each signal alone, and all together).
DEFAULT_GRID: dict[str, list[Any]] = {
    "n_knots": [3, 5],
    "knots": ["uniform", "quantile"],
    "stats": [("in_mean",), SIGNAL_STATS],
    "alpha_map": [0.3, 3.0, 30.0],
    "alpha_residual": [1.0, 10.0, 100.0],
}


class GainPredictor(RegressorMixin, BaseEstimator):
    """Per-signal B-spline calibration plus a ridge residual on membership (module docstring).

    Parameters
    ----------
    columns : sequence of str
        Names of the columns of ``X`` (a :func:`group_features` table's columns after
        ``group`` and ``task``).
    signals : sequence of str, optional
        Signals read by the calibration (default every signal in ``columns``; empty: no
        calibration, the residual model alone).
    stats : sequence of str
        Statistics of each signal read (:data:`~stgmtl.payoff.group_features.SIGNAL_STATS`).
    n_knots : int
        Knots of each cubic spline (``n_knots + 2`` basis functions per statistic).
    knots : {"uniform", "quantile"}
        Knot placement over the training range (``"quantile"`` resists heavy-tailed signals).
    alpha_map, alpha_residual : float
        Ridge penalties of the calibration and of the residual model.
    residual : bool
        Fit the residual model.
    """

    def __init__(
        self,
        columns: Sequence[str] = (),
        signals: Sequence[str] | None = None,
        stats: Sequence[str] = ("in_mean",),
        n_knots: int = 4,
        knots: str = "uniform",
        alpha_map: float = 1.0,
        alpha_residual: float = 10.0,
        residual: bool = True,
    ) -> None:
        self.columns = columns
        self.signals = signals
        self.stats = stats
        self.n_knots = n_knots
        self.knots = knots
        self.alpha_map = alpha_map
        self.alpha_residual = alpha_residual
        self.residual = residual

    def _index(self) -> tuple[list[int], list[int]]:
        cols = list(self.columns)
        sig = signal_columns(cols, self.signals, self.stats)
        if self.signals is not None and len(self.signals) and not sig:
            raise fail("signals", f"signals with columns in X ({signal_columns(cols)[:6]} ...)",
                       self.signals)  # fmt: skip
        res = [*membership_columns(cols), *(["size"] if "size" in cols else [])]
        return [cols.index(c) for c in sig], [cols.index(c) for c in res]

    def fit(self, X: Any, y: Any) -> GainPredictor:  # noqa: N803 (scikit-learn's names)
        """Fit the calibration on the signal columns, then the residual on membership."""
        x = np.asarray(X, dtype=np.float64)
        t = np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.columns) or x.shape[0] != t.shape[0]:
            raise fail("X", f"(n, {len(self.columns)}) matching y", x.shape)
        self.sig_idx_, self.res_idx_ = self._index()
        if self.sig_idx_:
            self.map_ = make_pipeline(
                SplineTransformer(n_knots=int(self.n_knots), degree=3, knots=self.knots,
                                  extrapolation="constant"),
                Ridge(alpha=float(self.alpha_map)),
            )  # fmt: skip
            self.map_.fit(x[:, self.sig_idx_], t)
            base = self.map_.predict(x[:, self.sig_idx_])
        else:
            self.map_ = None
            self.mean_ = float(t.mean())
            base = np.full(t.shape, self.mean_)
        self.res_ = None
        if self.residual and self.res_idx_:
            self.res_ = Ridge(alpha=float(self.alpha_residual)).fit(x[:, self.res_idx_], t - base)
        return self

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """Predicted gains of the rows of ``X``."""
        x = np.asarray(X, dtype=np.float64)
        out = (
            self.map_.predict(x[:, self.sig_idx_])
            if self.map_ is not None
            else np.full(x.shape[0], self.mean_)
        )
        if self.res_ is not None:
            out = out + self.res_.predict(x[:, self.res_idx_])
        return np.asarray(out, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# data


def training_table(gains: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """Measured seed-mean gains joined to the features of their (group, task) rows.

    Parameters
    ----------
    gains : polars.DataFrame
        Per-seed **measured** gains (:func:`~stgmtl.payoff.gains.group_gains`).
    features : polars.DataFrame
        :func:`~stgmtl.payoff.group_features.group_features` of (at least) those groups.

    Returns
    -------
    polars.DataFrame
        The features' columns plus ``gain`` (mean over seeds), ``seeds`` and ``reference``
        (the gains' one reference, :func:`~stgmtl.payoff.gains.check_reference`; raises on a
        mix).
    """
    from stgmtl.payoff.gains import check_origin

    if check_origin(gains) != "measured":
        raise fail("gains", "measured gains (a predictor learns from trained groups only)",
                   "predicted gains")  # fmt: skip
    m = mean_gains(gains).select("group", "task", "gain", "seeds", "reference")
    out = features.join(m, on=["group", "task"], how="inner")
    if out.height == 0:
        raise fail("features", "rows of the measured groups", "no (group, task) in common")
    return out


def _xy(table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    skip = ("group", "task", "gain", "seeds", "reference", "origin")
    cols = [c for c in table.columns if c not in skip]
    x = table.select(cols).to_numpy().astype(np.float64)
    y = table["gain"].to_numpy().astype(np.float64) if "gain" in table.columns else np.zeros(0)
    return x, y, table["group"].to_numpy(), cols


def _signals_in(columns: Sequence[str]) -> list[str]:
    return sorted({c.rsplit(":", 1)[0] for c in signal_columns(columns)})


def fit_predictor(
    table: pl.DataFrame,
    *,
    signals: Sequence[str] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    n_inner: int = 4,
    random_state: Any = 0,
) -> GridSearchCV:
    """Fit a :class:`GainPredictor` with its settings chosen by inner group-wise CV.

    Parameters
    ----------
    table : polars.DataFrame
        :func:`training_table` rows (the training groups only).
    signals : sequence of str, optional
        Candidate signals (default every signal in the table but the harness's controls,
        ``random`` and ``label``); the grid tries each alone and all together. A name that is
        not a signal of the table raises (a failing fit is never scored away: the search runs
        with ``error_score="raise"``).
    grid : mapping, optional
        Grid of :class:`GainPredictor` parameters (default :data:`DEFAULT_GRID`); a
        ``"signals"`` entry replaces the per-signal choices.
    n_inner : int
        Inner group-wise folds over task sets (:func:`outer_folds`; fewer when there are
        fewer groups; at least 2 groups are needed).

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Refitted on the whole table (``best_estimator_``, ``best_params_``).
    """
    x, y, groups, cols = _xy(table)
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise fail("table", "rows of at least 2 trained groups", n_groups)
    available = _signals_in(cols)
    if signals is None:
        sigs = [s for s in available if s not in CONTROLS]
    else:
        sigs = [str(s) for s in signals]
        unknown = [s for s in sigs if s not in available]
        if unknown:
            raise fail("signals", f"signals of the table (available: {available})", unknown)
    param = dict(DEFAULT_GRID if grid is None else grid)
    if "signals" not in param:
        choices: list[Any] = [(s,) for s in sigs] + ([tuple(sigs)] if len(sigs) > 1 else [])
        param["signals"] = choices or [()]
    param = {k: list(v) for k, v in param.items()}
    fold = outer_folds(groups, check_int("n_inner", n_inner, low=2), random_state)
    cv = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(fold.max() + 1)]
    search = GridSearchCV(GainPredictor(columns=tuple(cols)), param, cv=cv, scoring="r2",
                          error_score="raise")  # fmt: skip
    return search.fit(x, y)


def standley_estimate(train: pl.DataFrame, test: pl.DataFrame) -> np.ndarray:
    """Standley et al.'s higher-order estimate of ``test``'s gains from ``train``'s pairs.

    The gain of ``(G, i)`` is the mean of the measured pair gains ``(j -> i)`` in ``train``
    over the partners ``j`` of ``G``; partners without a trained pair are skipped; with none,
    ``i``'s mean gain over its trained pairs; with none of those, the mean of all pair gains
    (of all training rows when ``train`` has no pair).
    """
    pairs = train.filter(pl.col("size") == 2)
    gain: dict[tuple[str, str], float] = {}
    by_task: dict[str, list[float]] = {}
    for gid, task, g in pairs.select("group", "task", "gain").iter_rows():
        partner = next(p for p in str(gid).split("+") if p != task)
        gain[(partner, task)] = float(g)
        by_task.setdefault(task, []).append(float(g))
    overall = float(np.mean((pairs if pairs.height else train)["gain"].to_numpy()))
    out = []
    for gid, task in test.select("group", "task").iter_rows():
        vals = [gain[(p, task)] for p in str(gid).split("+") if p != task and (p, task) in gain]
        out.append(float(np.mean(vals)) if vals else float(np.mean(by_task.get(task, [overall]))))
    return np.array(out)


def outer_folds(groups: Any, n_outer: int, random_state: Any = 0) -> np.ndarray:
    """Fold of each row: K-fold over task sets, as
    ``GroupKFold`` (every row of a group, every seed's, in one
    fold), with the groups dealt to the folds in a seeded random order (``min(n_outer, number
    of groups)`` folds, their numbers of groups differing by at most one)."""
    g = np.asarray(groups)
    uniq = sorted(set(g.tolist()))
    n = min(check_int("n_outer", n_outer, low=2), len(uniq))
    rng = np.random.default_rng([seed_from("random_state", random_state), 17])
    fold_of = {uniq[p]: i % n for i, p in enumerate(rng.permutation(len(uniq)).tolist())}
    return np.array([fold_of[x] for x in g.tolist()], dtype=np.int64)


# --------------------------------------------------------------------------------------------
# scores


def _scores(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    ok = np.isfinite(p) & np.isfinite(y)
    if w is not None:
        ok &= w > 0
    if ok.sum() < 3:
        return float("nan"), float("nan")
    yy, pp = y[ok], p[ok]
    if w is None:
        return float(r2_score(yy, pp)), spearman(yy, pp)
    ww = w[ok].astype(int)
    return float(r2_score(yy, pp, sample_weight=ww)), spearman(np.repeat(yy, ww), np.repeat(pp, ww))


def _task_weights(members: list[list[int]], t: int, rng: np.random.Generator) -> np.ndarray:
    counts = np.bincount(rng.integers(0, t, size=t), minlength=t)
    return np.array([np.prod(counts[m]) for m in members])


def noise_ceiling(gains: pl.DataFrame) -> dict[str, float]:
    """How reproducible the measured gains are across seeds, over (group, task) rows.

    :func:`~stgmtl.payoff.stats.seed_reliability` of the per-seed gains (the one computation
    :meth:`~stgmtl.payoff.truth.GroundTruth.reliability` uses too): for each pair of seeds, the
    Spearman and Pearson correlations of their gains over the rows measured on **every** seed
    (a row missing on some seed is left out, so each row's mean is over the ``S`` seeds the
    Spearman-Brown step assumes; ``rows`` counts those kept); their means ``r`` through
    Spearman-Brown for ``S`` seeds give the reliability of the seed mean.
    ``ceiling_spearman = sqrt(reliability_spearman)`` is about the largest Spearman a perfect
    predictor can reach against the measured means, ``ceiling_r2 = reliability_pearson`` the
    largest R^2 (NaN with one seed or ``r <= 0``).
    """
    out = seed_reliability(_seed_values(gains))
    out["ceiling_spearman"] = float(np.sqrt(out["reliability_spearman"]))
    out["ceiling_r2"] = out["reliability_pearson"]
    return out


def _seed_values(gains: pl.DataFrame) -> np.ndarray:
    """``(S, rows)`` per-seed gains of the (group, task) rows (NaN where a seed lacks one)."""
    wide = gains.pivot(on="seed", index=["group", "task"], values="gain")
    seeds = [c for c in wide.columns if c not in ("group", "task")]
    return np.vstack([wide[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in seeds])


@dataclass
class PredictorEvaluation:
    """Held-out predictions and scores of :func:`evaluate_predictor`.

    Attributes
    ----------
    predictions : polars.DataFrame
        One row per (group, task): ``group, size, task, fold, gain`` (measured seed mean) and
        one column per method of its held-out prediction.
    scores : polars.DataFrame
        ``method, r2, r2_lo, r2_hi, spearman, spearman_lo, spearman_hi, rows`` (95 %
        percentile bootstrap over tasks) and, for every method but ``"calibrated"``,
        ``r2_gap``, ``spearman_gap`` (calibrated minus the method) with the paired bootstrap
        interval of the difference (``*_gap_lo``, ``*_gap_hi``; an interval above 0: the
        calibrated predictor is better).
    ceiling : dict
        :func:`noise_ceiling` (empty without per-seed gains).
    chosen : list of dict
        The calibrated predictor's inner-CV choice per outer fold.
    """

    predictions: pl.DataFrame
    scores: pl.DataFrame
    ceiling: dict[str, float] = field(default_factory=dict)
    chosen: list[dict[str, Any]] = field(default_factory=list)


def _methods(
    train: pl.DataFrame,
    test: pl.DataFrame,
    *,
    grid: Mapping[str, Sequence[Any]] | None,
    n_inner: int,
    random_state: Any,
    raw: Sequence[str],
    chosen: list[dict[str, Any]] | None = None,
) -> dict[str, np.ndarray]:
    """Held-out predictions of every method, fitted on ``train`` only."""
    xtr, ytr, _, cols = _xy(train)
    xte = _xy(test)[0]
    out: dict[str, np.ndarray] = {}
    search = fit_predictor(train, grid=grid, n_inner=n_inner, random_state=random_state)
    if chosen is not None:
        chosen.append(dict(search.best_params_))
    out["calibrated"] = search.predict(xte)
    for control in (c for c in CONTROLS if c in _signals_in(cols)):
        ctl = fit_predictor(train, grid={**dict(grid or DEFAULT_GRID), "signals": [(control,)]},
                            n_inner=n_inner, random_state=random_state)  # fmt: skip
        out[f"{control} (calibrated)"] = ctl.predict(xte)
    memb = fit_predictor(
        train,
        grid={"signals": [()], "alpha_residual": list(DEFAULT_GRID["alpha_residual"])},
        n_inner=n_inner,
        random_state=random_state,
    )
    out["membership"] = memb.predict(xte)
    out["standley"] = standley_estimate(train, test)
    for s in raw:
        j = cols.index(f"{s}:in_mean")
        lin = make_pipeline(StandardScaler(), LinearRegression()).fit(xtr[:, [j]], ytr)
        out[f"raw:{s}"] = lin.predict(xte[:, [j]])
    return out


def _score_table(
    pred: pl.DataFrame, methods: Sequence[str], task_names: list[str], n_bootstrap: int,
    random_state: Any,
) -> pl.DataFrame:  # fmt: skip
    """Scores with percentile intervals, and each method's paired difference from
    ``"calibrated"`` (calibrated minus method, on the same bootstrap replicates)."""
    y = pred["gain"].to_numpy()
    pos = {t: i for i, t in enumerate(task_names)}
    members = [[pos[t] for t in str(g).split("+")] for g in pred["group"].to_list()]
    rng = np.random.default_rng([seed_from("random_state", random_state), 3])
    weights = [_task_weights(members, len(task_names), rng) for _ in range(n_bootstrap)]
    point = {m: np.array(_scores(y, pred[m].to_numpy())) for m in methods}
    boot = {m: np.array([_scores(y, pred[m].to_numpy(), w) for w in weights]) for m in methods}

    def interval(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if n_bootstrap < 2 or not np.isfinite(b).any():
            return np.full(2, np.nan), np.full(2, np.nan)
        return np.nanpercentile(b, 2.5, axis=0), np.nanpercentile(b, 97.5, axis=0)

    rows = []
    for m in methods:
        lo, hi = interval(boot[m])
        row = {"method": m, "r2": point[m][0], "r2_lo": lo[0], "r2_hi": hi[0],
               "spearman": point[m][1], "spearman_lo": lo[1], "spearman_hi": hi[1],
               "rows": int(np.isfinite(pred[m].to_numpy()).sum())}  # fmt: skip
        if "calibrated" in boot and m != "calibrated":
            d = point["calibrated"] - point[m]
            dlo, dhi = interval(boot["calibrated"] - boot[m])
            row |= {"r2_gap": d[0], "r2_gap_lo": dlo[0], "r2_gap_hi": dhi[0],
                    "spearman_gap": d[1], "spearman_gap_lo": dlo[1],
                    "spearman_gap_hi": dhi[1]}  # fmt: skip
        rows.append({k: float(v) if k not in ("method", "rows") else v for k, v in row.items()})
    return pl.DataFrame(rows)


def evaluate_predictor(
    table: pl.DataFrame,
    *,
    seed_gains: pl.DataFrame | None = None,
    n_outer: int = 5,
    n_inner: int = 4,
    grid: Mapping[str, Sequence[Any]] | None = None,
    n_bootstrap: int = 500,
    random_state: Any = 0,
) -> PredictorEvaluation:
    """Held-out scores of the calibrated predictor and its baselines (module docstring).

    Parameters
    ----------
    table : polars.DataFrame
        :func:`training_table` of every trained group.
    seed_gains : polars.DataFrame, optional
        The per-seed measured gains, for :func:`noise_ceiling`.
    n_outer, n_inner : int
        Outer folds over task sets (:func:`outer_folds`) and inner folds of the grid search.
    grid : mapping, optional
        The inner grid (:func:`fit_predictor`).
    n_bootstrap : int
        Bootstrap replicates over tasks for the intervals.
    random_state : int

    Returns
    -------
    PredictorEvaluation
    """
    check_int("n_bootstrap", n_bootstrap, low=1)
    _, _, groups, cols = _xy(table)
    fold = outer_folds(groups, n_outer, random_state)
    raw = _signals_in(cols)
    preds: dict[str, np.ndarray] = {}
    chosen: list[dict[str, Any]] = []
    for f in range(int(fold.max()) + 1):
        train, test = table.filter(pl.Series(fold != f)), table.filter(pl.Series(fold == f))
        if set(train["group"].to_list()) & set(test["group"].to_list()):
            raise RuntimeError("a task set is in both the training and the held-out fold")
        got = _methods(train, test, grid=grid, n_inner=n_inner, random_state=random_state,
                       raw=raw, chosen=chosen)  # fmt: skip
        for m, p in got.items():
            preds.setdefault(m, np.full(table.height, np.nan))[fold == f] = p
    pred = table.select("group", "size", "task", "gain").with_columns(
        pl.Series("fold", fold), *[pl.Series(m, p) for m, p in preds.items()]
    )
    names = sorted({t for g in table["group"].to_list() for t in str(g).split("+")})
    scores = _score_table(pred, list(preds), names, n_bootstrap, random_state)
    ceiling = noise_ceiling(seed_gains) if seed_gains is not None else {}
    return PredictorEvaluation(pred, scores, ceiling, chosen)


def within_task_scores(
    evaluation: PredictorEvaluation,
    seed_gains: pl.DataFrame | None = None,
    *,
    n_bootstrap: int = 500,
    min_rows: int = 3,
    random_state: Any = 0,
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Held-out Spearman **within each recipient task**, averaged over tasks (module docstring).

    Parameters
    ----------
    evaluation : PredictorEvaluation
        From :func:`evaluate_predictor` (its held-out ``predictions``).
    seed_gains : polars.DataFrame, optional
        The per-seed measured gains, for the within-task noise ceiling.
    n_bootstrap : int
        Replicates of the percentile interval (tasks drawn with replacement).
    min_rows : int
        Fewest held-out groups of a task for its Spearman (tasks with fewer are left out).
    random_state : int

    Returns
    -------
    scores : polars.DataFrame
        ``method, spearman_within, lo, hi, tasks``: the mean over tasks of Spearman's rho
        between a method's held-out predictions and the measured seed-mean gains among that
        task's groups, with a 95 % percentile bootstrap interval over tasks.
    ceiling : dict
        ``seed_spearman_within`` (mean over tasks of the mean seed-to-seed Spearman among the
        task's rows), ``reliability_within`` (:func:`~stgmtl.payoff.stats.spearman_brown` for
        the number of seeds), ``ceiling_within`` (its square root); empty without
        ``seed_gains``.
    """
    check_int("n_bootstrap", n_bootstrap, low=1)
    check_int("min_rows", min_rows, low=3)
    pred = evaluation.predictions
    methods = [c for c in pred.columns if c not in ("group", "size", "task", "fold", "gain")]
    tasks = sorted(set(pred["task"].to_list()))
    per: dict[str, np.ndarray] = {}
    for m in methods:
        vals = []
        for t in tasks:
            sub = pred.filter((pl.col("task") == t) & pl.col(m).is_finite())
            ok = sub.height >= min_rows
            vals.append(spearman(sub[m].to_numpy(), sub["gain"].to_numpy()) if ok else np.nan)
        per[m] = np.asarray(vals, dtype=np.float64)
    rng = np.random.default_rng([seed_from("random_state", random_state), 5])
    draws = rng.integers(0, len(tasks), size=(n_bootstrap, len(tasks)))
    rows = []
    for m, v in per.items():
        boot = np.array([np.nanmean(v[d]) if np.isfinite(v[d]).any() else np.nan for d in draws])
        lo, hi = (np.nanpercentile(boot, [2.5, 97.5]) if n_bootstrap > 1 and np.isfinite(boot).any()
                  else (np.nan, np.nan))  # fmt: skip
        mean = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        rows.append({"method": m, "spearman_within": mean, "lo": float(lo), "hi": float(hi),
                     "tasks": int(np.isfinite(v).sum())})  # fmt: skip
    ceiling: dict[str, float] = {}
    if seed_gains is not None:
        n_seeds = seed_gains["seed"].n_unique()
        rhos = [
            seed_reliability(_seed_values(seed_gains.filter(pl.col("task") == t)),
                             min_rows=min_rows)["seed_spearman"]
            for t in tasks
        ]  # fmt: skip
        r = float(np.nanmean(rhos)) if np.isfinite(rhos).any() else float("nan")
        rel = spearman_brown(r, n_seeds)
        top = float(np.sqrt(rel)) if rel == rel else float("nan")
        ceiling = {"seed_spearman_within": r, "reliability_within": rel, "ceiling_within": top}
    return pl.DataFrame(rows), ceiling


def learning_curve(
    table: pl.DataFrame,
    sizes: Sequence[int],
    *,
    repeats: int = 3,
    n_outer: int = 5,
    n_inner: int = 3,
    grid: Mapping[str, Sequence[Any]] | None = None,
    raw: Sequence[str] = (),
    random_state: Any = 0,
) -> pl.DataFrame:
    """Held-out R^2 and Spearman when only ``n`` of the training folds' groups were trained.

    For each outer fold, each ``n`` in ``sizes`` and each repeat, ``n`` groups are drawn
    (seeded) from the fold's training groups; every method is fitted on them and predicts the
    held-out fold; scores pool the held-out rows of all folds. Returns one row per
    ``(n, method)`` with the mean and standard deviation over repeats: ``n_groups`` is the
    number of groups actually trained on (``n`` capped at the fewest training groups of any
    fold; sizes that cap to the same number are run once), ``n_requested`` the ``n`` asked for.
    """
    check_int("repeats", repeats, low=1)
    _, _, groups, _ = _xy(table)
    fold = outer_folds(groups, n_outer, random_state)
    rng = np.random.default_rng([seed_from("random_state", random_state), 5])
    rows = []
    y = table["gain"].to_numpy()
    n_folds = int(fold.max()) + 1
    fewest = min(len(set(groups[fold != f].tolist())) for f in range(n_folds))
    used: dict[int, int] = {}
    for req in sorted({check_int("sizes", s, low=4) for s in sizes}):
        used.setdefault(min(req, fewest), req)
    for n, req in used.items():
        for rep in range(repeats):
            preds: dict[str, np.ndarray] = {}
            for f in range(n_folds):
                tr_groups = sorted(set(groups[fold != f].tolist()))
                pick = set(rng.choice(tr_groups, n, replace=False).tolist())
                train = table.filter(pl.col("group").is_in(list(pick)))
                test = table.filter(pl.Series(fold == f))
                got = _methods(train, test, grid=grid, n_inner=n_inner,
                               random_state=random_state, raw=raw)  # fmt: skip
                for m, p in got.items():
                    preds.setdefault(m, np.full(table.height, np.nan))[fold == f] = p
            for m, p in preds.items():
                r2, rho = _scores(y, p)
                rows.append({"n_groups": n, "n_requested": req, "repeat": rep, "method": m,
                             "r2": r2, "spearman": rho})  # fmt: skip
    return (
        pl.DataFrame(rows)
        .group_by("n_groups", "n_requested", "method", maintain_order=True)
        .agg(
            pl.col("r2").mean().alias("r2"),
            pl.col("r2").std().alias("r2_sd"),
            pl.col("spearman").mean().alias("spearman"),
            pl.col("spearman").std().alias("spearman_sd"),
            pl.len().alias("repeats"),
        )
    )


def cross_fitted_gains(
    table: pl.DataFrame,
    candidates: pl.DataFrame,
    *,
    n_outer: int = 5,
    n_inner: int = 4,
    grid: Mapping[str, Sequence[Any]] | None = None,
    random_state: Any = 0,
) -> pl.DataFrame:
    """Predicted gains of every candidate (group, task), for the selection path.

    A candidate group that was trained gets its out-of-fold prediction (from the predictor fitted
    without its fold); one that was not gets the prediction of the predictor fitted on every
    trained group. The result is a gain table of ``origin = "predicted"``
    (:mod:`~stgmtl.payoff.gains`) with the training table's reference:
    ``group, size, task, seed (-1), gain, reference, origin``.

    Parameters
    ----------
    table : polars.DataFrame
        :func:`training_table` of the trained groups.
    candidates : polars.DataFrame
        :func:`~stgmtl.payoff.group_features.group_features` of every candidate group.
    """
    from stgmtl.payoff.gains import check_reference

    reference = check_reference(table, "table")
    _, _, groups, cols = _xy(table)
    cand_cols = [c for c in candidates.columns if c not in ("group", "task")]
    if cand_cols != cols:
        raise fail("candidates", "the feature columns of the training table", cand_cols[:5])
    xc = candidates.select(cols).to_numpy().astype(np.float64)
    out = fit_predictor(table, grid=grid, n_inner=n_inner, random_state=random_state).predict(xc)
    fold = outer_folds(groups, n_outer, random_state)
    trained = candidates["group"].is_in(table["group"].to_list()).to_numpy()
    for f in range(int(fold.max()) + 1):
        held = set(groups[fold == f].tolist())
        rows = trained & candidates["group"].is_in(list(held)).to_numpy()
        if rows.any():
            model = fit_predictor(table.filter(pl.Series(fold != f)), grid=grid, n_inner=n_inner,
                                  random_state=random_state)  # fmt: skip
            out[rows] = model.predict(xc[rows])
    return candidates.select("group", "size", "task").with_columns(
        pl.lit(-1, dtype=pl.Int64).alias("seed"),
        pl.Series("gain", out, dtype=pl.Float64),
        pl.lit(reference).alias("reference"),
        pl.lit("predicted").alias("origin"),
    )
