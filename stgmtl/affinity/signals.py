"""The free affinity signals: task affinities read from recorded data maps (numpy, no torch).

"Free" because they need nothing beyond what :class:`~stgmtl.DataMapRecorder` already keeps
during training (per-sample confidence, variability, targets and per-epoch snapshots), so their
cost is that of the recording plus one small matrix computation at the end. Each function
returns a :class:`~stgmtl.affinity.TaskAffinity` whose ``values[i, j]`` reads "effect of task
``i`` on task ``j``, larger = more helpful"; the formula and orientation are stored in its
``meta`` (and so in the saved manifest).

Signals (``signal`` name, orientation, formula):

``"datamap"`` (symmetric)
    Negated RMS distance between two tasks' data maps: ``-sqrt(mean_{n, s} (f_s[i, n] -
    f_s[j, n])**2)`` over the samples observed for both tasks and the statistics ``s`` (default
    confidence and variability). Tasks that find the same samples easy, hard or ambiguous are
    close (STG-MTL's view of task similarity). Diagonal 0.
``"confusion"`` (symmetric)
    ``S = (A + A.T) / 2`` with ``A[i, j]`` the mean probability that task ``i`` says yes
    (``sigmoid(z_i)``, recovered from the recorded true-label confidence and target by
    :func:`says_yes`) on task ``j``'s positives (:func:`confusion_matrix`). Binary tasks only.
    Diagonal NaN.
``"label"`` (source->recipient by default)
    Label co-occurrence on the samples observed for both tasks. ``statistic="uncertainty"``
    (default): ``U(j | i) = I(Y_i; Y_j) / H(Y_j)``, the fraction of task ``j``'s label entropy
    that task ``i``'s label explains (Theil's uncertainty coefficient, in ``[0, 1]``; 1 for
    identical or complementary tasks, 0 for independent ones); ``"conditional_entropy"``:
    ``-H(Y_j | Y_i)`` in bits; ``"phi"``: the phi coefficient (Pearson correlation of the binary
    labels, symmetric, negative for complementary tasks).
``"colearning"`` (symmetric)
    Do two tasks learn the same samples in the same epochs? The change of each sample's
    confidence between consecutive snapshot epochs, ``d[e, t, n] = c[e, t, n] - c[e-1, t, n]``,
    centred per (epoch, task) over the observed samples, then correlated over all (epoch,
    sample) pairs: ``sum d_i d_j / sqrt(sum d_i**2 * sum d_j**2)`` (a Pearson correlation;
    entries missing for a task contribute 0). With ``snapshot_kind="epoch"`` snapshots ``c`` is
    each epoch's mean confidence; with cumulative snapshots it is the running mean. Needs at
    least two snapshots. Diagonal 1.

:func:`says_yes` and :func:`confusion_matrix` live here (the data stage) so that both the
confusion feature (:mod:`stgmtl.features.confusion`) and this signal read the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from stgmtl._checks import check_choice, check_names, fail
from stgmtl.affinity.core import TaskAffinity
from stgmtl.datamaps import STATS, DataMaps

__all__ = [
    "FREE_SIGNALS",
    "LABEL_STATISTICS",
    "colearning_signal",
    "confusion_from",
    "confusion_matrix",
    "confusion_signal",
    "datamap_signal",
    "free_signals",
    "label_signal",
    "says_yes",
]

#: The signals computed from data maps alone, in the order :func:`free_signals` returns them.
FREE_SIGNALS = ("datamap", "confusion", "label", "colearning")
#: Statistics of :func:`label_signal`.
LABEL_STATISTICS = ("uncertainty", "conditional_entropy", "phi")


# ---------------------------------------------------------------------------- confusion rule
def says_yes(dm: DataMaps, *, snapshot: int | str = "final") -> np.ndarray:
    """``(T, N)`` float64 mean probability that each task says yes on each sample.

    ``confidence`` where the task's recorded target is 1, ``1 - confidence`` where it is 0, and
    0 where the sample was never observed for that task (no evidence of firing).
    """
    if dm.task_type != "binary":
        raise fail(
            "dm",
            "data maps of binary (one-vs-rest or multi-label) tasks",
            f"task_type={dm.task_type!r}",
        )
    conf = np.asarray(dm.stat("confidence", snapshot), dtype=np.float64)
    y = np.asarray(dm.targets)
    yes = np.where(y == 1, conf, 1.0 - conf)
    yes[(y < 0) | ~np.isfinite(conf)] = 0.0
    return yes


def confusion_matrix(dm: DataMaps, *, snapshot: int | str = "final") -> np.ndarray:
    """Cross-task confusion ``A[t, u]``: mean probability that ``t`` says yes on ``u``'s positives.

    Parameters
    ----------
    dm : DataMaps
        Data maps of binary tasks, with ``targets`` recorded.
    snapshot : int or "final"
        The confidence of the final state or of one snapshot epoch.

    Returns
    -------
    np.ndarray
        float64 ``(T, T)`` with a zero diagonal. Columns of tasks without any recorded positive
        are zero. Never-observed (task, sample) entries count as no confusion.
    """
    fired = says_yes(dm, snapshot=snapshot)  # (T, N)
    positives = sp.csr_matrix(np.asarray(dm.targets) == 1, dtype=np.float64)  # (T, N)
    return confusion_from(positives, fired)


def confusion_from(positives: sp.csr_matrix, fired: np.ndarray) -> np.ndarray:
    """``A[t, u]``: mean of ``fired[t]`` over task ``u``'s (weighted) positives.

    Parameters
    ----------
    positives : scipy.sparse.csr_matrix
        ``(T, N)`` weights of each task's positive samples (1 / 0, or resampling weights).
    fired : numpy.ndarray
        ``(T, N)`` probability that each task says yes on each sample.

    Returns
    -------
    numpy.ndarray
        float64 ``(T, T)`` with a zero diagonal; columns of tasks without positives are zero.
    """
    n_pos = np.asarray(positives.sum(axis=1)).ravel()
    # (positives @ fired.T)[u, t] = sum over u's positives of fired[t]; sparse @ dense.
    a = np.asarray((positives @ fired.T).T)  # (T, T): [t, u]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(n_pos > 0, a / n_pos, 0.0)
    np.fill_diagonal(a, 0.0)
    return a


# ---------------------------------------------------------------------------------- helpers
def _snapshots(dm: DataMaps, snapshots: bool) -> list[int | str]:
    return list(dm.snapshot_epochs) if snapshots else []


def _affinity(
    dm: DataMaps,
    signal: str,
    values: np.ndarray,
    *,
    orientation: str,
    counts: np.ndarray | None,
    snaps: list[tuple[int, np.ndarray]],
    meta: dict[str, Any],
) -> TaskAffinity:
    return TaskAffinity(
        task_names=list(dm.task_names),
        values=values,
        signal=signal,
        orientation=orientation,
        counts=counts,
        snapshot_epochs=[e for e, _ in snaps],
        snapshots=np.stack([m for _, m in snaps]) if snaps else None,
        meta={"source": "datamaps", "epochs": int(dm.epochs), **meta},
    )


def _symmetrise(a: np.ndarray) -> np.ndarray:
    """``(a + a.T) / 2``, exactly symmetric (NaN where either side is NaN)."""
    return (a + a.T) / 2.0


# --------------------------------------------------------------------------------- datamap
def _datamap_values(dm: DataMaps, stats: Sequence[str], snapshot: int | str) -> np.ndarray:
    t = dm.num_tasks
    num = np.zeros((t, t))
    both = None
    for name in stats:
        f = np.asarray(dm.stat(name, snapshot), dtype=np.float64)
        m = np.isfinite(f).astype(np.float64)
        fz = np.where(m > 0, f, 0.0)
        q = fz * fz
        # sum_n m_i m_j (f_i - f_j)^2 = (q m^T) + (m q^T) - 2 f f^T, all masked
        num += q @ m.T + m @ q.T - 2.0 * (fz @ fz.T)
        mm = m @ m.T
        both = mm if both is None else np.minimum(both, mm)
    assert both is not None
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.maximum(num, 0.0) / (len(stats) * both))
    rms[both == 0] = np.nan
    out = -_symmetrise(rms)
    np.fill_diagonal(out, np.where(np.diag(both) > 0, 0.0, np.nan))
    return out


def datamap_signal(
    dm: DataMaps,
    *,
    stats: Sequence[str] = ("confidence", "variability"),
    snapshots: bool = True,
) -> TaskAffinity:
    """Negated RMS distance between the tasks' data maps (``signal="datamap"``, symmetric).

    ``values[i, j] = -sqrt(mean over samples n observed for both tasks and statistics s of
    (f_s[i, n] - f_s[j, n])**2)``, on the final (whole-run) statistics; diagonal 0.

    Parameters
    ----------
    dm : DataMaps
    stats : sequence of str
        Statistics compared (any of confidence, variability, correctness).
    snapshots : bool
        Also compute one matrix per snapshot epoch of ``dm``.

    Returns
    -------
    TaskAffinity
    """
    stats = list(stats)
    if not stats or any(s not in STATS for s in stats):
        raise fail("stats", f"a non-empty subset of {STATS}", stats)
    observed = np.isfinite(np.asarray(dm.confidence, dtype=np.float64)).astype(np.float64)
    counts = (observed @ observed.T).astype(np.int64)
    snaps = [(int(e), _datamap_values(dm, stats, e)) for e in _snapshots(dm, snapshots)]
    return _affinity(
        dm,
        "datamap",
        _datamap_values(dm, stats, "final"),
        orientation="symmetric",
        counts=counts,
        snaps=snaps,
        meta={
            "formula": "-sqrt(mean_{n,s} (f_s[i,n] - f_s[j,n])^2), samples observed for both",
            "stats": stats,
            "snapshot_kind": dm.snapshot_kind,
        },
    )


# ------------------------------------------------------------------------------- confusion
def _confusion_values(dm: DataMaps, snapshot: int | str) -> np.ndarray:
    s = _symmetrise(confusion_matrix(dm, snapshot=snapshot))
    np.fill_diagonal(s, np.nan)
    return s


def confusion_signal(dm: DataMaps, *, snapshots: bool = True) -> TaskAffinity:
    """Symmetric cross-task confusion (``signal="confusion"``), binary tasks.

    ``values = (A + A.T) / 2`` with ``A = confusion_matrix(dm)``: ``A[i, j]`` is the mean
    probability that task ``i`` says yes on task ``j``'s positives. Diagonal NaN;
    ``counts[i, j]`` is the number of positives behind the pair (``n_pos[i] + n_pos[j]``).

    Parameters
    ----------
    dm : DataMaps
        Data maps of binary tasks with recorded targets.
    snapshots : bool
        Also compute one matrix per snapshot epoch of ``dm``.

    Returns
    -------
    TaskAffinity
    """
    values = _confusion_values(dm, "final")
    n_pos = (np.asarray(dm.targets) == 1).sum(axis=1).astype(np.int64)
    counts = n_pos[:, None] + n_pos[None, :]
    snaps = [(int(e), _confusion_values(dm, e)) for e in _snapshots(dm, snapshots)]
    return _affinity(
        dm,
        "confusion",
        values,
        orientation="symmetric",
        counts=counts,
        snaps=snaps,
        meta={
            "formula": "(A + A^T) / 2, A[i,j] = mean over j's positives of P(task i says yes)",
            "snapshot_kind": dm.snapshot_kind,
        },
    )


# ----------------------------------------------------------------------------------- label
def _contingency(targets: np.ndarray) -> tuple[np.ndarray, int]:
    """Joint counts ``n[i, a, j, b]`` of (label a of task i, label b of task j), and ``C``."""
    y = np.asarray(targets)
    if y.ndim != 2 or y.dtype.kind not in "iu":
        raise fail("targets", "a (T, N) integer array (-1 = not observed)", y.shape)
    t = y.shape[0]
    c = int(max(int(y.max(initial=-1)) + 1, 2))
    onehot = np.zeros((t, c, y.shape[1]))
    for a in range(c):
        onehot[:, a, :] = y == a
    flat = onehot.reshape(t * c, -1)
    return (flat @ flat.T).reshape(t, c, t, c), c


def _entropy_terms(n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pair (over the jointly observed samples): total, H(Y_i), H(Y_j), I(Y_i; Y_j) in bits."""
    total = n.sum(axis=(1, 3))  # (T, T)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = n / total[:, None, :, None]
        pi = p.sum(axis=3)  # (T, C, T): marginal of i, per pair
        pj = p.sum(axis=1)  # (T, T, C): marginal of j, per pair
        h_i = -np.nansum(np.where(pi > 0, pi * np.log2(pi), 0.0), axis=1)
        h_j = -np.nansum(np.where(pj > 0, pj * np.log2(pj), 0.0), axis=2)
        ratio = p / (pi[:, :, :, None] * pj[:, None, :, :])
        mi = np.nansum(np.where(p > 0, p * np.log2(ratio), 0.0), axis=(1, 3))
    return total, h_i, h_j, np.maximum(mi, 0.0)


def label_signal(
    data: DataMaps | np.ndarray,
    *,
    statistic: str = "uncertainty",
    task_names: Sequence[str] | None = None,
) -> TaskAffinity:
    """Label co-occurrence affinity (``signal="label"``) from recorded or given targets.

    Every statistic is computed on the samples observed for both tasks of a pair.

    * ``"uncertainty"`` (default, source->recipient): ``values[i, j] = I(Y_i; Y_j) / H(Y_j)``,
      the fraction of task ``j``'s label entropy explained by task ``i``'s label; 1 for
      identical or complementary labels, 0 for independent ones; NaN where ``H(Y_j) = 0``.
    * ``"conditional_entropy"`` (source->recipient): ``values[i, j] = -H(Y_j | Y_i)`` in bits
      (0 is best).
    * ``"phi"`` (symmetric, binary tasks): the phi coefficient ``(n11 n00 - n10 n01) /
      sqrt(n1. n0. n.1 n.0)``, the correlation of the two labels (-1 for complementary tasks).

    Parameters
    ----------
    data : DataMaps or np.ndarray
        Data maps (their recorded ``targets``) or a ``(T, N)`` integer target array
        (``-1`` = not observed; class ids for multi-class tasks).
    statistic : {"uncertainty", "conditional_entropy", "phi"}
    task_names : sequence of str, optional
        Names when ``data`` is an array.

    Returns
    -------
    TaskAffinity
        ``counts[i, j]``: samples observed for both tasks.
    """
    check_choice("statistic", statistic, LABEL_STATISTICS)
    if isinstance(data, DataMaps):
        targets, names, epochs = np.asarray(data.targets), list(data.task_names), data.epochs
    else:
        targets = np.asarray(data)
        if targets.ndim != 2:
            raise fail("data", "DataMaps or a (T, N) integer target array", targets.shape)
        names, epochs = task_names, 0  # type: ignore[assignment]
    n, c = _contingency(targets)
    total, h_i, h_j, mi = _entropy_terms(n)
    counts = total.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if statistic == "uncertainty":
            values = np.where(h_j > 1e-12, mi / h_j, np.nan)
            formula = "I(Y_i; Y_j) / H(Y_j)"
        elif statistic == "conditional_entropy":
            values = -np.maximum(h_j - mi, 0.0)
            formula = "-H(Y_j | Y_i) in bits"
        else:
            if c != 2:
                raise fail(
                    "statistic",
                    "'uncertainty' or 'conditional_entropy' for multi-class "
                    "targets ('phi' needs binary labels)",
                    statistic,
                )
            n11, n10, n01, n00 = n[:, 1, :, 1], n[:, 1, :, 0], n[:, 0, :, 1], n[:, 0, :, 0]
            den = np.sqrt((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00))
            values = np.where(den > 0, (n11 * n00 - n10 * n01) / den, np.nan)
            values = _symmetrise(values)
            formula = "(n11 n00 - n10 n01) / sqrt(n1. n0. n.1 n.0)"
    values = np.where(total > 0, values, np.nan)
    aff = TaskAffinity(
        task_names=check_names("task_names", names, targets.shape[0]),
        values=values,
        signal="label",
        orientation="symmetric" if statistic == "phi" else "source->recipient",
        counts=counts,
        meta={
            "source": "targets",
            "epochs": int(epochs),
            "statistic": statistic,
            "formula": formula,
        },
    )
    return aff


# ------------------------------------------------------------------------------ colearning
def _colearning_values(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correlation of per-sample confidence changes over snapshots ``conf`` ``(S, T, N)``."""
    s, t, _ = conf.shape
    gram = np.zeros((t, t))
    counts = np.zeros((t, t))
    for e in range(1, s):
        d = conf[e] - conf[e - 1]
        m = np.isfinite(d)
        cnt = m.sum(axis=1, keepdims=True)
        dz = np.where(m, d, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, dz.sum(axis=1, keepdims=True) / cnt, 0.0)
        dz = np.where(m, dz - mean, 0.0)
        gram += dz @ dz.T
        mf = m.astype(np.float64)
        counts += mf @ mf.T
    diag = np.sqrt(np.diag(gram))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = gram / np.outer(diag, diag)
    values[(counts == 0) | ~np.isfinite(values)] = np.nan
    return _symmetrise(values), counts.astype(np.int64)


def colearning_signal(dm: DataMaps, *, snapshots: bool = True) -> TaskAffinity:
    """Co-learning affinity (``signal="colearning"``, symmetric) from snapshot confidences.

    ``values[i, j]``: Pearson correlation, over all (transition, sample) pairs, of the change of
    confidence between consecutive snapshot epochs, centred per (transition, task). Two tasks
    that gain (or lose) confidence on the same samples at the same time score near 1.

    Parameters
    ----------
    dm : DataMaps
        Data maps with at least two snapshot epochs (record with ``snapshot_epochs`` covering
        every epoch; ``snapshot_kind="epoch"`` gives per-epoch confidences).
    snapshots : bool
        Also give the matrix from the transitions up to each snapshot epoch after the second.

    Returns
    -------
    TaskAffinity
        ``counts[i, j]``: (transition, sample) pairs observed for both tasks.
    """
    s = len(dm.snapshot_epochs)
    if s < 2:
        raise fail(
            "dm",
            "data maps with at least 2 snapshot epochs (record with snapshot_epochs covering "
            "every epoch) for the colearning signal",
            f"{s} snapshot(s)",
        )
    conf = np.asarray(dm.snapshot_confidence, dtype=np.float64)
    values, counts = _colearning_values(conf)
    snaps = (
        [(int(dm.snapshot_epochs[k]), _colearning_values(conf[: k + 1])[0]) for k in range(1, s)]
        if snapshots
        else []
    )
    return _affinity(
        dm,
        "colearning",
        values,
        orientation="symmetric",
        counts=counts,
        snaps=snaps,
        meta={
            "formula": "corr over (transition e, sample n) of c[e,i,n] - c[e-1,i,n] and the "
            "same for j, centred per (e, task)",
            "snapshot_kind": dm.snapshot_kind,
            "transitions": s - 1,
        },
    )


# -------------------------------------------------------------------------------------- all
def free_signals(
    dm: DataMaps, signals: Sequence[str] = FREE_SIGNALS, **options: Any
) -> dict[str, TaskAffinity]:
    """The free signals ``signals`` of data maps ``dm``, as ``{name: TaskAffinity}``.

    Parameters
    ----------
    dm : DataMaps
    signals : sequence of str
        Any of :data:`FREE_SIGNALS` (default all; ``"confusion"`` needs binary tasks and
        ``"colearning"`` at least two snapshot epochs).
    **options
        ``label_statistic`` for :func:`label_signal`, ``datamap_stats`` for
        :func:`datamap_signal`.

    Returns
    -------
    dict of str to TaskAffinity
    """
    if isinstance(signals, str):
        raise fail("signals", "a sequence of signal names", signals, error=TypeError)
    names = list(signals)
    bad = [s for s in names if s not in FREE_SIGNALS]
    if bad or not names or len(set(names)) != len(names):
        raise fail("signals", f"distinct names from {FREE_SIGNALS}", names)
    unknown = sorted(set(options) - {"label_statistic", "datamap_stats"})
    if unknown:
        raise fail("options", "label_statistic or datamap_stats", unknown, error=TypeError)
    makers = {
        "datamap": lambda: datamap_signal(
            dm, stats=options.get("datamap_stats", ("confidence", "variability"))
        ),
        "confusion": lambda: confusion_signal(dm),
        "label": lambda: label_signal(dm, statistic=options.get("label_statistic", "uncertainty")),
        "colearning": lambda: colearning_signal(dm),
    }
    return {name: makers[name]() for name in names}
