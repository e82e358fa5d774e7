"""The self-contained HTML report: groups, membership heatmap, affinities, data maps, evaluation.

One file that opens offline in any browser: inline CSS, figures as base64 PNG data URIs, no
scripts, no fonts, no links to anything outside the file. Every input is optional and duck-typed
on the shared types' attributes, so plain objects (and the real :class:`~stgmtl.datamaps.DataMaps`,
:class:`~stgmtl.grouping.grouper.TaskGroups` and evaluation frames) all work::

    from stgmtl.report import write_report
    write_report("report.html", datamaps=maps, groups=groups, evaluation=table,
                 affinities={"tag": tag_affinity})
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from stgmtl._checks import check_random_state
from stgmtl._io import atomic_file
from stgmtl._version import __version__
from stgmtl.payoff.scoring import SCORE_COLUMNS, reliability_sentence
from stgmtl.payoff.tables import SUMMARY_COLUMNS, labelled
from stgmtl.plots import affinity_figure, datamap_grid, membership_figure
from stgmtl.plots.payoff import (
    payoff_figure,
    selection_figure,
    signal_scores_figure,
    soft_hard_figure,
    truth_figure,
)
from stgmtl.specialise.metrics import seed_means

__all__ = ["render_report", "write_report"]

_METRICS = ("f1", "balanced_accuracy", "roc_auc")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1100px;padding:1.5rem;color:#1d232a;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #e3e7ec;padding-bottom:.25rem;margin-top:2rem}
.meta{color:#5b6570;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d5dbe1;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:.5rem 0}
.group{border:1px solid #e3e7ec;border-radius:6px;padding:.3rem 1rem;margin:1rem 0}
.soft{color:#5b6570}.note{color:#5b6570;font-size:.85rem}
details{margin:.6rem 0}summary{cursor:pointer;font-weight:600}
"""


# --------------------------------------------------------------------------------------------
# public API


def render_report(
    datamaps: Any | None = None,
    groups: Any | None = None,
    evaluation: pl.DataFrame | None = None,
    *,
    title: str = "stgmtl report",
    affinities: Any | None = None,
    max_tasks_per_figure: int = 12,
    max_points: int = 1000,
    soft_threshold: float = 0.2,
    random_state: Any = 0,
    progress: bool = True,
    payoff: Any | None = None,
) -> str:
    """Build the report and return it as one HTML string.

    Parameters
    ----------
    datamaps : DataMaps or None
        Anything with ``task_names`` (T), ``confidence``, ``variability``, ``correctness`` and
        ``count`` arrays of shape (T, N). Gives the per-task data-map figures.
    groups : TaskGroups or None
        Anything with ``task_names`` (T), ``membership`` (T, k), ``labels`` (T,). Gives the group
        list and the membership heatmap; data maps are then drawn one figure per group.
    evaluation : polars.DataFrame or None
        Columns ``method``, ``seed``, ``task`` and any of ``f1``, ``balanced_accuracy``,
        ``roc_auc``. Gives a per-method summary (mean over tasks, then mean +- std over seeds) and
        a per-task table.
    title : str
        Page title and heading.
    affinities : TaskAffinity, list of them, or dict name -> TaskAffinity, optional
        Anything with ``task_names`` and a ``(T, T)`` ``values`` (``[i, j]`` = effect of task
        ``i`` on task ``j``). Gives one heatmap per affinity (tasks ordered by ``groups`` when
        they are of the same tasks) and each task's strongest partner.
    max_tasks_per_figure : int
        At most this many task panels per data-map figure (the rest are listed by name).
    max_points : int
        At most this many samples drawn per task panel (a seeded random subset).
    soft_threshold : float
        A task is listed as a soft member of every non-argmax group where its membership is at
        least this.
    random_state : None, int, numpy Generator or RandomState
        Seed of the point subsampling.
    progress : bool
        Show a progress bar while the data-map figures are drawn.
    payoff : PayoffResult or None
        The payoff harness's result (:func:`stgmtl.payoff.run_payoff`): its recommendation,
        signal scores, payoff, soft-vs-hard and budgeted-selection tables and their figures.

    Returns
    -------
    str
        The complete HTML document.
    """
    if (
        datamaps is None
        and groups is None
        and evaluation is None
        and affinities is None
        and payoff is None
    ):
        raise ValueError(
            "render_report needs at least one of datamaps, groups, evaluation, affinities, payoff;"
            " got none"
        )
    if max_tasks_per_figure < 1:
        raise ValueError(f"max_tasks_per_figure: expected >= 1, got {max_tasks_per_figure}")
    if max_points < 1:
        raise ValueError(f"max_points: expected >= 1, got {max_points}")
    groups_view = _groups_view(groups) if groups is not None else None
    maps_view = _maps_view(datamaps) if datamaps is not None else None
    if evaluation is not None:
        evaluation = _check_evaluation(evaluation)
    affinity_views = _affinity_views(affinities) if affinities is not None else []

    parts = [_header(title, maps_view, groups_view, evaluation, len(affinity_views))]
    if groups_view is not None:
        parts.append(_groups_section(groups_view, soft_threshold))
    if affinity_views:
        parts.append(_affinity_section(affinity_views, groups_view))
    if maps_view is not None:
        rng = check_random_state("random_state", random_state)
        parts.append(
            _datamaps_section(
                maps_view, groups_view, max_tasks_per_figure, max_points, rng, progress
            )
        )
    if evaluation is not None:
        parts.append(_evaluation_section(evaluation))
    if payoff is not None:
        parts.append(_payoff_section(payoff))
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Path:
    """Render the report (see :func:`render_report` for the arguments) and write it atomically.

    Parameters
    ----------
    path : str or PathLike
        Where the ``.html`` file goes; its folder must exist. Replaced only once fully written.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"report path {str(path)!r}: folder {str(path.parent)!r} does not exist"
        )
    text = render_report(*args, **kwargs)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# input views: check shapes once, where the objects enter


@dataclass
class _Groups:
    task_names: list[str]
    membership: np.ndarray  # (T, k)
    labels: np.ndarray  # (T,)

    @property
    def k(self) -> int:
        return int(self.membership.shape[1])

    def members(self, g: int) -> list[int]:
        """Tasks whose argmax group is ``g``, strongest membership first."""
        idx = np.flatnonzero(self.labels == g)
        return [int(i) for i in idx[np.argsort(-self.membership[idx, g], kind="stable")]]


@dataclass
class _Maps:
    task_names: list[str]
    confidence: np.ndarray  # (T, N), and the same for the others
    variability: np.ndarray
    correctness: np.ndarray
    count: np.ndarray


def _groups_view(groups: Any) -> _Groups:
    names = _task_names(groups, "groups")
    membership = _matrix(groups, "groups", "membership", len(names))
    labels = getattr(groups, "labels", None)
    labels = membership.argmax(axis=1) if labels is None else np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(names),):
        raise ValueError(f"groups.labels: expected shape ({len(names)},), got {labels.shape}")
    return _Groups(names, membership, labels)


def _maps_view(maps: Any) -> _Maps:
    names = _task_names(maps, "datamaps")
    stats = ("confidence", "variability", "correctness", "count")
    return _Maps(names, *(_matrix(maps, "datamaps", a, len(names)) for a in stats))


@dataclass
class _Affinity:
    label: str
    task_names: list[str]
    values: np.ndarray  # (T, T): [i, j] = effect of i on j
    source: Any  # the object, for the figure


def _affinity_views(affinities: Any) -> list[_Affinity]:
    if isinstance(affinities, dict):
        items = [(str(k), v) for k, v in affinities.items()]
    elif isinstance(affinities, (list, tuple)):
        items = [(str(getattr(a, "signal", f"affinity {i}")), a) for i, a in enumerate(affinities)]
    else:
        items = [(str(getattr(affinities, "signal", "affinity")), affinities)]
    views = []
    for label, aff in items:
        names = _task_names(aff, "affinities")
        values = np.asarray(getattr(aff, "values", None), dtype=np.float64)
        if values.shape != (len(names), len(names)):
            raise ValueError(
                f"affinities[{label!r}].values: expected shape ({len(names)}, {len(names)}), "
                f"got {values.shape}"
            )
        views.append(_Affinity(label, names, values, aff))
    return views


def _task_names(obj: Any, arg: str) -> list[str]:
    names = getattr(obj, "task_names", None)
    if names is None:
        raise TypeError(f"{arg}: expected an object with task_names, got {type(obj).__name__}")
    return [str(n) for n in names]


def _matrix(obj: Any, arg: str, attr: str, rows: int) -> np.ndarray:
    if not hasattr(obj, attr):
        raise TypeError(
            f"{arg}: expected an object with a {attr!r} attribute, got {type(obj).__name__}"
        )
    arr = np.asarray(getattr(obj, attr), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != rows:
        raise ValueError(f"{arg}.{attr}: expected shape (T={rows}, ...), got {arr.shape}")
    return arr


def _check_evaluation(evaluation: Any) -> pl.DataFrame:
    if not isinstance(evaluation, pl.DataFrame):
        raise TypeError(f"evaluation: expected a polars DataFrame, got {type(evaluation).__name__}")
    missing = {"method", "task"} - set(evaluation.columns)
    if missing:
        raise ValueError(
            f"evaluation is missing column(s) {sorted(missing)}; has {evaluation.columns}"
        )
    if not any(m in evaluation.columns for m in _METRICS):
        raise ValueError(
            f"evaluation needs one of the columns {list(_METRICS)}; has {evaluation.columns}"
        )
    if "seed" not in evaluation.columns:
        evaluation = evaluation.with_columns(pl.lit(0).alias("seed"))
    return evaluation


# --------------------------------------------------------------------------------------------
# sections


def _header(
    title: str,
    maps: _Maps | None,
    groups: _Groups | None,
    ev: pl.DataFrame | None,
    n_affinities: int = 0,
) -> str:

    facts = []
    if maps is not None:
        facts.append(
            f"{len(maps.task_names)} tasks, {maps.confidence.shape[1]} samples in the data maps"
        )
    if groups is not None:
        facts.append(f"k = {groups.k} groups")
    if ev is not None:
        facts.append(f"{ev['method'].n_unique()} methods evaluated")
    if n_affinities:
        facts.append(f"{n_affinities} affinity signal(s)")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lead = f"{_e('; '.join(facts))}. " if facts else ""
    return (
        f'<header><h1>{_e(title)}</h1><p class="meta">{lead}'
        f"Generated by stgmtl {_e(__version__)} on {stamp}.</p></header>"
    )


def _groups_section(groups: _Groups, soft_threshold: float) -> str:
    rows = []
    for g in range(groups.k):
        hard = groups.members(g)
        soft_idx = np.flatnonzero(
            (groups.labels != g) & (groups.membership[:, g] >= soft_threshold)
        )
        hard_txt = ", ".join(
            f"{_e(groups.task_names[i])} ({groups.membership[i, g]:.2f})" for i in hard
        )
        soft_txt = ", ".join(
            f"{_e(groups.task_names[i])} ({groups.membership[i, g]:.2f})" for i in soft_idx
        )
        rows.append(
            f'<tr class="group-row" data-group="{g}"><td class="num">{g}</td>'
            f'<td class="num">{len(hard)}</td><td>{hard_txt or "&mdash;"}</td>'
            f'<td class="soft">{soft_txt or "&mdash;"}</td></tr>'
        )
    table = (
        '<table id="groups-table"><thead><tr><th>group</th><th>tasks</th>'
        "<th>members (membership)</th>"
        f"<th>also partly here (membership &ge; {soft_threshold:g})</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    heat = _img(_membership_figure(groups), "membership heatmap", "membership-heatmap")
    return (
        '<section id="groups"><h2>Task groups</h2>'
        "<p>Each task belongs to every group with a fuzzy membership (rows sum to 1); it is listed "
        "under its strongest group.</p>"
        f"{table}<h3>Membership heatmap</h3>{heat}</section>"
    )


def _affinity_section(views: list[_Affinity], groups: _Groups | None) -> str:
    blocks = []
    for view in views:
        same = groups is not None and sorted(groups.task_names) == sorted(view.task_names)
        fig = affinity_figure(view.source, groups if same else None)
        off = view.values.copy()
        np.fill_diagonal(off, np.nan)
        rows, strongest = [], set()
        for j, name in enumerate(view.task_names):
            col = off[:, j]
            if np.isnan(col).all():
                rows.append(
                    f'<tr class="partner-row"><td>{_e(name)}</td><td>&mdash;</td>'
                    '<td class="num">&mdash;</td></tr>'
                )
                continue
            i = int(np.nanargmax(col))
            strongest.add(i)
            rows.append(
                f'<tr class="partner-row"><td>{_e(name)}</td><td>{_e(view.task_names[i])}</td>'
                f'<td class="num">{_num(float(col[i]))}</td></tr>'
            )
        nobody = [n for i, n in enumerate(view.task_names) if i not in strongest]
        observed = int(np.isfinite(off).sum())
        t = len(view.task_names)
        orientation = getattr(view.source, "orientation", None)
        facts = f"{t} tasks, {observed} of {t * (t - 1)} ordered pairs observed" + (
            f", orientation {orientation}" if orientation else ""
        )
        blocks.append(
            f'<div class="group affinity" data-signal="{_e(view.label)}">'
            f'<h3>{_e(view.label)}</h3><p class="note">{_e(facts)}.</p>'
            f"{_img(fig, f'affinity heatmap: {view.label}', 'affinity-heatmap')}"
            f"<details><summary>Strongest partner of each task</summary>"
            f'<table class="affinity-partners"><thead><tr><th>task (recipient)</th>'
            f"<th>strongest partner (source)</th><th>affinity</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            '<p class="note">Nobody&rsquo;s strongest partner: '
            f"{_e(', '.join(nobody)) if nobody else '&mdash;'}</p></details></div>"
        )
    return (
        '<section id="affinity"><h2>Task affinity</h2>'
        "<p>Row <i>i</i>, column <i>j</i>: the effect of task <i>i</i> (source) on task <i>j</i> "
        "(recipient); red helps, blue harms, grey is unobserved or the diagonal. Tasks are "
        "ordered and framed by group when the groups are of the same tasks.</p>"
        f"{''.join(blocks)}</section>"
    )


def _datamaps_section(
    maps: _Maps,
    groups: _Groups | None,
    max_tasks: int,
    max_points: int,
    rng: np.random.Generator,
    progress: bool,
) -> str:

    name_to_row = {n: i for i, n in enumerate(maps.task_names)}
    if groups is not None:
        blocks = [
            (
                f"Group {g}",
                [
                    name_to_row[groups.task_names[i]]
                    for i in groups.members(g)
                    if groups.task_names[i] in name_to_row
                ],
            )
            for g in range(groups.k)
        ]
    else:
        blocks = [("All tasks", list(range(len(maps.task_names))))]
    html_blocks = []
    for label, rows in tqdm(blocks, desc="data-map figures", disable=not progress, delay=2.0):
        if not rows:
            continue
        shown, rest = rows[:max_tasks], rows[max_tasks:]
        fig = _datamap_figure(maps, shown, max_points, rng)
        more = ""
        if rest:
            more = (
                f'<p class="note">Not drawn ({len(rest)} more): '
                f"{_e(', '.join(maps.task_names[r] for r in rest))}</p>"
            )
        html_blocks.append(
            f'<div class="group"><h3>{_e(label)}</h3>'
            f"{_img(fig, f'data maps: {label}', 'datamap')}{more}</div>"
        )
    return (
        '<section id="datamaps"><h2>Data maps</h2>'
        "<p>One panel per task: each point is a sample, at its mean true-label probability across "
        "epochs (confidence, y) and its standard deviation (variability, x), coloured by the "
        "fraction of epochs it was predicted correctly.</p>"
        f"{''.join(html_blocks)}</section>"
    )


def _evaluation_section(ev: pl.DataFrame) -> str:
    metrics = [m for m in _METRICS if m in ev.columns]
    per_seed = seed_means(ev, metrics)
    summary = (
        per_seed.group_by("method")
        .agg(
            pl.col("seed").n_unique().alias("seeds"),
            *[pl.col(m).mean().alias(f"{m} mean") for m in metrics],
            *[pl.col(m).std().alias(f"{m} std") for m in metrics],
        )
        .sort(f"{metrics[0]} mean", descending=True, nulls_last=True)
    )
    cols = ["method", "seeds"]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols) + "".join(
        f"<th>{_e(m)} (mean &plusmn; std)</th>" for m in metrics
    )
    rows = []
    for r in summary.iter_rows(named=True):
        cells = [f"<td>{_e(str(r['method']))}</td>", f'<td class="num">{r["seeds"]}</td>']
        cells += [f'<td class="num">{_pm(r[f"{m} mean"], r[f"{m} std"])}</td>' for m in metrics]
        rows.append(f'<tr class="eval-row">{"".join(cells)}</tr>')
    summary_html = (
        f'<table id="evaluation-summary"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )

    key = metrics[0]
    wide = (
        ev.group_by("task", "method")
        .agg(pl.col(key).fill_nan(None).mean())
        .pivot(on="method", index="task", values=key)
        .sort("task")
    )
    methods = [c for c in wide.columns if c != "task"]
    head2 = "<th>task</th>" + "".join(f"<th>{_e(m)}</th>" for m in methods)
    rows2 = []
    for r in wide.iter_rows(named=True):
        nums = "".join(f'<td class="num">{_num(r[m])}</td>' for m in methods)
        rows2.append(f'<tr class="task-row"><td>{_e(str(r["task"]))}</td>{nums}</tr>')
    per_task = (
        f"<details><summary>Per task: {_e(key)}, mean over seeds</summary>"
        f'<table id="evaluation-per-task"><thead><tr>{head2}</tr></thead>'
        f"<tbody>{''.join(rows2)}</tbody></table></details>"
    )
    return (
        '<section id="evaluation"><h2>Evaluation</h2>'
        "<p>Per method: the metric averaged over tasks within each seed, then mean &plusmn; "
        "standard deviation over seeds. A task where a metric is undefined (NaN, e.g. ROC AUC "
        "without positives) is left out of that metric's mean.</p>"
        f"{summary_html}{per_task}</section>"
    )


# --------------------------------------------------------------------------------------------
# --- payoff section (issue 12: does the grouping pay off?) ---------------------------------


def _frame_html(df: pl.DataFrame, table_id: str, digits: int = 4) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for r in df.iter_rows():
        cells = []
        for v in r:
            if isinstance(v, float):
                text = "&mdash;" if not np.isfinite(v) else f"{v:.{digits}f}"
                cells.append(f'<td class="num">{text}</td>')
            else:
                cells.append(f"<td>{_e(str(v))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _payoff_section(result: Any) -> str:
    rec = getattr(result, "recommendation", {}) or {}
    parts = ['<section id="payoff"><h2>Does the grouping pay off?</h2>']
    if rec:
        parts.append(
            f'<p id="recommendation"><strong>{_e(str(rec.get("message", "")))}</strong></p>'
        )
        groups = rec.get("groups") or []
        if groups and not rec.get("one_model_best"):
            items = "".join(f"<li>{_e(', '.join(g))}</li>" for g in groups)
            parts.append(f"<p>Recommended groups:</p><ul>{items}</ul>")
    scores = result.signal_scores
    if scores.height:
        cols = [c for c in SCORE_COLUMNS if c in scores.columns]
        parts.append(
            "<h3>Signals against the measured gains (test)</h3><p>Rank correlation over "
            "directed task pairs with 95% bootstrap intervals over tasks, the one-sided Mantel "
            "permutation p-value (raw, and Holm-corrected across the signals), the critical "
            "rho at 5 %, top-1 partner accuracy, and sign accuracy on the pairs the moderated "
            "pair tests decide (none below 5 seeds).</p>"
        )
        sentence = reliability_sentence(scores)
        if sentence:
            parts.append(f'<p id="truth-reliability">{_e(sentence)}</p>')
        parts.append(_frame_html(labelled(scores.select(cols)), "payoff-signals", 3))
        parts.append(_img(signal_scores_figure(scores), "signal scores", "payoff-figure"))
    summary = result.summary
    if summary.height:
        test = summary.filter(pl.col("split") == "test")
        cols = [c for c in SUMMARY_COLUMNS if c in test.columns]
        parts.append(
            "<h3>Payoff of each grouping (test)</h3><p>Mean relative loss decrease "
            "against one model for all tasks at 1x parameters and against single-task "
            "models, mean ROC AUC, the parameters and multiply-adds of each grouping's "
            "systems (at their asserted budgets), and the regret against the best partition "
            "on test (an oracle, labelled so). The verdict above rests on the fresh-seed "
            "confirmation, not on this table.</p>"
        )
        parts.append(_frame_html(labelled(test.select(cols)), "payoff-summary"))
        try:
            parts.append(_img(payoff_figure(summary), "payoff", "payoff-figure"))
        except ValueError:
            pass
    svh = result.soft_vs_hard
    if svh.height:
        parts.append("<h3>Soft or hard memberships</h3>")
        parts.append(_frame_html(labelled(svh), "payoff-soft-hard"))
        parts.append(_img(soft_hard_figure(svh), "soft vs hard", "payoff-figure"))
    sel = result.selection
    if sel.height:
        parts.append("<h3>Budgeted selection (chosen on validation; test reported, not used)</h3>")
        parts.append(_frame_html(labelled(sel), "payoff-selection"))
        parts.append(_img(selection_figure(sel), "selection", "payoff-figure"))
    if result.truth.height:
        parts.append("<h3>Measured pair gains</h3>")
        parts.append(
            _img(
                truth_figure(result.truth, result.task_names),
                "pair gains",
                "payoff-figure",
            )
        )
    parts.append("</section>")
    return "".join(parts)


# --- end payoff section ---------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# figures (matplotlib, Agg; no pyplot state is touched)


def _membership_figure(groups: _Groups) -> Any:
    return membership_figure(groups.membership, groups.labels, groups.task_names)


def _datamap_figure(maps: _Maps, rows: list[int], max_points: int, rng: np.random.Generator) -> Any:
    panels = []
    for r in rows:
        seen = np.flatnonzero(maps.count[r] > 0)
        if seen.size > max_points:
            seen = np.sort(rng.choice(seen, size=max_points, replace=False))
        panels.append(
            (
                _shorten(maps.task_names[r], 28),
                maps.variability[r, seen],
                maps.confidence[r, seen],
                maps.correctness[r, seen],
            )
        )
    return datamap_grid(panels, ncols=6, panel_size=(2.2, 2.1), dpi=80)


def _img(fig: Any, alt: str, css_class: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="{css_class}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


# --------------------------------------------------------------------------------------------
# small text helpers


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _num(x: float | None) -> str:
    return "&mdash;" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _pm(mean: float | None, std: float | None) -> str:
    if std is None or not np.isfinite(std):
        return _num(mean)
    return f"{_num(mean)} &plusmn; {std:.3f}"
