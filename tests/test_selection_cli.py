"""Selection in the presentation layer: ``stgmtl select`` / ``stgmtl group`` on saved task
affinities end to end, the affinity heatmap, and the report's affinity section."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import stgmtl
from stgmtl import cli
from stgmtl.affinity import TaskAffinity
from stgmtl.datamaps import DataMaps
from stgmtl.grouping import TaskGroups
from stgmtl.grouping.selection import TaskSelection, select
from stgmtl.plots import affinity_figure
from stgmtl.report import render_report


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _affinity(signal="tag", seed=0, sizes=(2, 2, 2)) -> TaskAffinity:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    v = np.where(labels[:, None] == labels[None, :], 1.0, -0.5) + 0.1 * rng.normal(
        size=(labels.size, labels.size)
    )
    names = [f"g{labels[i]}_{i}" for i in range(labels.size)]
    return TaskAffinity(task_names=names, values=v, signal=signal)


@pytest.fixture
def saved(tmp_path) -> Path:
    return _affinity().save(tmp_path / "aff")


@pytest.fixture
def signals(tmp_path) -> Path:
    root = tmp_path / "signals"
    root.mkdir()
    _affinity("tag", 0).save(root / "a")
    _affinity("grad-cosine", 1).save(root / "b")
    return root


@pytest.mark.parametrize(
    ("argv", "kwargs"),
    [
        (("--method", "tag", "--k", "3"), {"method": "tag", "n_groups": 3}),
        (("--method", "partition"), {"method": "partition"}),
        (("--method", "partition", "--k", "2", "--objective", "total"),
         {"method": "partition", "n_groups": 2, "objective": "total"}),
        (("--method", "standley", "--budget", "3"), {"method": "standley", "budget": 3.0}),
        (("--method", "kmeans", "--k", "3"), {"method": "kmeans", "n_groups": 3}),
    ],
)  # fmt: skip
def test_select_saves_what_the_library_computes(capsys, tmp_path, saved, argv, kwargs):
    out = tmp_path / "sel"
    code, stdout, err = _run(capsys, "select", str(saved), *argv, "-o", str(out))
    assert code == 0, err
    got = TaskSelection.load(out)
    want = select(TaskAffinity.load(saved), **kwargs)
    assert got.groups == want.groups and got.score == pytest.approx(want.score)
    np.testing.assert_array_equal(got.serving, want.serving)
    assert stdout.count("network ") == got.n_groups and "score" in stdout
    assert f"wrote {out}" in err


def test_select_standley_on_trained_tables(capsys, tmp_path):
    rows = [("a", "a", 0.5), ("b", "b", 0.6), ("c", "c", 0.4), ("a|b", "a", 0.3),
            ("a|b", "b", 0.35), ("a|c", "a", 0.45), ("a|c", "c", 0.5), ("b|c", "b", 0.7),
            ("b|c", "c", 0.45)]  # fmt: skip
    val = tmp_path / "val.csv"
    pl.DataFrame(rows, schema=["network", "task", "score"], orient="row").write_csv(val)
    test = tmp_path / "test.parquet"
    pl.DataFrame([(n, t, s + 0.01) for n, t, s in rows], schema=["network", "task", "score"],
                 orient="row").write_parquet(test)  # fmt: skip
    out = tmp_path / "sel"
    code, stdout, err = _run(capsys, "select", "--method", "standley", "--scores", str(val),
                             "--test-scores", str(test), "--lower-is-better", "--budget", "1.5",
                             "-o", str(out))  # fmt: skip
    assert code == 0, err
    got = TaskSelection.load(out)
    # losses: a and b together (0.3, 0.35) plus c alone (0.4) beats every other 1.5 budget
    assert sorted(map(tuple, got.groups)) == [("a", "b"), ("c",)]
    np.testing.assert_allclose(got.task_scores, [0.3, 0.35, 0.4])
    np.testing.assert_allclose(got.test_task_scores, [0.31, 0.36, 0.41])
    assert "test score" in stdout


def test_group_on_a_saved_affinity_and_signal_choice(capsys, tmp_path, saved, signals):
    out = tmp_path / "groups"
    code, _, err = _run(capsys, "group", str(saved), "--k", "3", "-o", str(out), "-q")
    assert code == 0, err
    want = stgmtl.group(TaskAffinity.load(saved), 3, random_state=0, progress=False)
    np.testing.assert_array_equal(TaskGroups.load(out).membership, want.membership)
    code, _, err = _run(capsys, "group", str(signals), "--signal", "grad-cosine", "--k", "3",
                        "-o", str(out), "-q")  # fmt: skip
    assert code == 0, err
    want = stgmtl.group(_affinity("grad-cosine", 1), 3, random_state=0, progress=False)
    np.testing.assert_array_equal(TaskGroups.load(out).membership, want.membership)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("select", "{signals}", "--k", "2", "-o", "{out}"),
         "holds 2 task affinities (tag, grad-cosine); pick one with --signal"),
        (("select", "{signals}", "--signal", "x", "--k", "2", "-o", "{out}"),
         "--signal 'x' is not in"),
        (("select", "{saved}", "-o", "{out}"), "--method tag needs --k"),
        (("select", "{saved}", "--method", "standley", "-o", "{out}"), "needs --budget"),
        (("select", "{saved}", "--k", "2", "--budget", "1", "-o", "{out}"),
         "--budget is for --method standley"),
        (("select", "-o", "{out}"), "give either AFFINITY or --scores"),
        (("select", "{saved}", "--method", "tag", "--k", "2", "--max-tasks", "3", "-o", "{out}"),
         "affinity: expected at most max_tasks=3 tasks"),
        (("select", "{saved}", "--method", "standley", "--budget", "0.5", "-o", "{out}"),
         "budget: expected at least 1, the cost of the cheapest set"),
        (("group", "{saved}", "--k", "2", "--features", "confusion", "-o", "{out}"),
         "--features confusion reads DataMaps"),
        (("group", "{signals}", "--signal", "tag", "--k", "9", "-o", "{out}"),
         "--k must be between 1 and the number of tasks (6)"),
    ],
)  # fmt: skip
def test_select_user_errors_are_one_line(capsys, tmp_path, saved, signals, argv, needle):
    fill = {"saved": str(saved), "signals": str(signals), "out": str(tmp_path / "o")}
    code, out, err = _run(capsys, *(a.format(**fill) for a in argv))
    assert code == 1, err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_select_help(capsys):
    code, out, _ = _run(capsys, "select", "--help")
    assert code == 0 and out.startswith("usage: stgmtl select")
    for option in ("--method", "--budget", "--scores", "--signal", "--objective"):
        assert option in out


# --------------------------------------------------------------------- heatmap and report


def test_affinity_figure_orders_tasks_by_group_and_masks_the_diagonal():
    aff = _affinity(sizes=(2, 3, 2))
    perm = [6, 0, 3, 1, 5, 2, 4]  # shuffle the tasks so that groups are not contiguous
    shuffled = TaskAffinity(task_names=[aff.task_names[i] for i in perm],
                            values=aff.values[np.ix_(perm, perm)], signal="tag")  # fmt: skip
    sel = select(shuffled, "tag", n_groups=3)
    fig = affinity_figure(shuffled, sel)
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert rows == cols and sorted(rows) == sorted(shuffled.task_names)
    groups_in_order = [sel.serving[shuffled.task_names.index(n)] for n in rows]
    assert groups_in_order == sorted(groups_in_order)  # grouped
    image = ax.images[0].get_array()
    assert image.mask[np.diag_indices(7)].all()  # diagonal hidden
    i, j = shuffled.task_names.index(rows[0]), shuffled.task_names.index(rows[1])
    assert image[0, 1] == pytest.approx(shuffled.values[i, j])  # row = source, col = recipient
    with pytest.raises(ValueError, match="groups: expected groups"):
        affinity_figure(shuffled, select(_affinity(), "tag", n_groups=2))


def test_report_renders_the_affinity_section():
    aff = _affinity(sizes=(2, 2, 2))
    other = _affinity("grad-cosine", 3)
    other.values[0, 1] = np.nan
    sel = select(aff, "tag", n_groups=3)
    html = render_report(groups=sel, affinities={"tag": aff, "grad-cosine": other},
                         progress=False)  # fmt: skip
    assert '<section id="affinity">' in html
    assert len(re.findall(r'class="affinity-heatmap"', html)) == 2
    assert 'data-signal="grad-cosine"' in html and "29 of 30 ordered pairs observed" in html
    # strongest partner of each task: its group-mate in the planted affinity
    rows = re.findall(r'<tr class="partner-row"><td>([^<]+)</td><td>([^<]+)</td>', html)
    assert len(rows) == 12
    for task, partner in rows[:6]:
        assert task.split("_")[0] == partner.split("_")[0]
    assert "affinity signal(s)" in html
    alone = render_report(affinities=aff, progress=False)  # an affinity is enough for a report
    assert '<p class="meta">1 affinity signal(s). Generated' in alone
    assert 'id="groups"' not in alone and 'id="datamaps"' not in alone
    with pytest.raises(ValueError, match=r"affinities\['x'\].values: expected shape \(1, 1\)"):
        render_report(affinities={"x": type("A", (), {"task_names": ["a"], "values": [1, 2]})()})


def test_report_cli_takes_affinities(capsys, tmp_path, signals):
    rng = np.random.default_rng(0)
    names = _affinity().task_names
    conf = rng.uniform(0.05, 0.95, (6, 40))
    maps = DataMaps(task_names=names, sample_ids=np.arange(40), confidence=conf,
                    variability=conf * 0.1, correctness=(conf > 0.5) * 1.0,
                    count=np.ones((6, 40), np.int32), targets=(conf > 0.5).astype(np.int32),
                    task_type="binary")  # fmt: skip
    maps.save(tmp_path / "maps")
    out = tmp_path / "r.html"
    code, _, err = _run(capsys, "report", str(tmp_path / "maps"), "--affinity", str(signals),
                        "--k", "3", "-q", "-o", str(out))  # fmt: skip
    assert code == 0, err
    html = out.read_text()
    assert 'data-signal="tag"' in html and 'data-signal="grad-cosine"' in html
