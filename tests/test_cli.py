"""The ``stgmtl`` command line: help, one-line user errors, and each subcommand end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stgmtl import cli

SUBCOMMANDS = ("group", "choose-k", "plot", "report", "demo")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_python_dash_m_and_top_level_help():
    root = Path(cli.__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "stgmtl", "--help"], capture_output=True,
                         text=True, timeout=60, check=False, cwd=root)  # fmt: skip
    assert run.returncode == 0, run.stderr
    for name in SUBCOMMANDS:
        assert name in run.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_subcommand_has_help(capsys, command):
    code, out, _ = _run(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: stgmtl {command}")


def test_version(capsys):
    import stgmtl

    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.strip() == f"stgmtl {stgmtl.__version__}"


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        ((), 2, "required: COMMAND"),
        (("frobnicate",), 2, "invalid choice: 'frobnicate'"),
        (("group", "maps"), 2, "required: --k, -o/--output"),
        (("group", "maps", "--k", "0", "-o", "g"), 2, "expected a number >= 1, got 0"),
        (("group", "maps", "--k", "two", "-o", "g"), 2, "expected a whole number, got 'two'"),
        (("group", "no/such/maps", "--k", "3", "-o", "g"), 1, "DATAMAPS 'no/such/maps' not found"),
        (("report", "no_maps", "-o", "r.html"), 1, "DATAMAPS 'no_maps' not found"),
        (("report", "m", "-o", "no/dir/r.html"), 1, "folder 'no/dir' does not exist"),
        (("plot", "no_maps", "-o", "x.png"), 1, "DATAMAPS 'no_maps' not found"),
        (("choose-k", "no_maps"), 1, "DATAMAPS 'no_maps' not found"),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    capsys, tmp_path, monkeypatch, argv, code, needle
):
    monkeypatch.chdir(tmp_path)
    got, out, err = _run(capsys, *argv)
    assert got == code
    assert out == ""
    assert needle in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_traceback_flag_shows_the_exception(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cli._UserError, match="not found"):
        cli.main(["--traceback", "group", "missing", "--k", "2", "-o", "g"])


def test_demo_passes_its_arguments_to_the_packaged_demo(capsys, monkeypatch):
    import stgmtl.demo

    seen: list[list[str]] = []
    monkeypatch.setattr(stgmtl.demo, "main", lambda argv: seen.append(list(argv)) or 3)
    for argv, passed in (
        (["demo", "--", "--epochs", "1"], ["--epochs", "1"]),
        (["demo", "--epochs", "1", "--out", "x"], ["--epochs", "1", "--out", "x"]),
        (["demo", "--", "--help"], ["--help"]),
        (["--traceback", "demo", "-k", "5"], ["-k", "5"]),
        (["demo"], []),
    ):
        code, _, _ = _run(capsys, *argv)
        assert code == 3  # the demo's own exit status
        assert seen.pop() == passed


def test_demo_runs_outside_a_checkout(tmp_path):
    """``stgmtl demo`` is a module of the installed package, not a script of the source tree."""
    proc = subprocess.run(
        [sys.executable, "-m", "stgmtl", "demo", "--", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: stgmtl demo") and "--preset" in proc.stdout


# ---------------------------------------------------------------------------------------------
# end to end on real (planted) data maps

FAMILIES, PER_FAMILY, SAMPLES, EPOCHS = 3, 3, 80, 4


@pytest.fixture(scope="module")
def saved_maps(tmp_path_factory) -> Path:
    """Data maps with 3 planted task families: tasks of a family see the same logits + noise."""
    import torch

    from stgmtl.record import DataMapRecorder

    rng = np.random.default_rng(0)
    t = FAMILIES * PER_FAMILY
    family = np.repeat(np.arange(FAMILIES), PER_FAMILY)
    names = [f"fam{f}_task{i % PER_FAMILY}" for i, f in enumerate(family)]
    rec = DataMapRecorder(t, SAMPLES, task_names=names, snapshot_epochs=range(1, EPOCHS + 1))
    difficulty = rng.normal(scale=2.0, size=(FAMILIES, SAMPLES))
    speed = np.array([0.2, 1.0, 3.0])
    y = rng.random((SAMPLES, t)) < 0.5
    for epoch in range(EPOCHS):
        margin = (difficulty[family] + speed[family, None] * epoch).T  # (N, T)
        margin = margin + rng.normal(scale=0.05, size=margin.shape)
        logits = np.where(y, margin, -margin)
        rec.update(torch.tensor(logits), torch.tensor(y), torch.arange(SAMPLES))
        rec.end_epoch()
    path = tmp_path_factory.mktemp("maps") / "datamaps"
    rec.compute().save(path)
    return path


def test_group_saves_what_the_library_computes(capsys, tmp_path, saved_maps):
    from stgmtl import TaskGroups, group
    from stgmtl.datamaps import DataMaps

    out = tmp_path / "groups.parquet"
    code, stdout, err = _run(capsys, "group", str(saved_maps), "--k", "3", "-o", str(out))
    assert code == 0, err
    saved = TaskGroups.load(out)
    expected = group(DataMaps.load(saved_maps), k=3, random_state=0)
    np.testing.assert_allclose(saved.membership, expected.membership)
    # the planted families come back, and are printed one group per line
    assert sorted(sorted(g) for g in saved.groups) == [
        [f"fam{f}_task{i}" for i in range(PER_FAMILY)] for f in range(FAMILIES)
    ]
    assert len(stdout.strip().splitlines()) == 3 and stdout.startswith("group 0 (3 tasks): fam")


def test_group_with_confusion_features(capsys, tmp_path, saved_maps):
    from stgmtl import TaskGroups, group
    from stgmtl.datamaps import DataMaps

    out = tmp_path / "groups"
    args = ("group", str(saved_maps), "--k", "3", "--features", "confusion", "-o", str(out), "-q")
    code, _, err = _run(capsys, *args)
    assert code == 0, err
    maps = DataMaps.load(saved_maps)
    expected = group(maps, k=3, random_state=0, features="confusion")
    np.testing.assert_allclose(TaskGroups.load(out).membership, expected.membership)
    datamap = group(maps, k=3, random_state=0)
    assert not np.allclose(expected.membership, datamap.membership)  # the option took effect
    code, _, err = _run(capsys, "group", str(saved_maps), "--k", "3", "--features", "x", "-o", "g")
    assert code == 2 and "invalid choice" in err


def test_group_rejects_k_above_the_number_of_tasks(capsys, tmp_path, saved_maps):
    code, out, err = _run(capsys, "group", str(saved_maps), "--k", "10", "-o", str(tmp_path / "g"))
    assert code == 1 and out == ""
    assert (
        err.strip()
        == "stgmtl group: error: --k must be between 1 and the number of tasks (9), got 10"
    )


def test_a_corrupt_datamaps_folder_is_a_one_line_error(capsys, tmp_path):
    bad = tmp_path / "maps"
    bad.mkdir()
    (bad / "junk.txt").write_text("not data maps")
    code, _, err = _run(capsys, "group", str(bad), "--k", "2", "-o", str(tmp_path / "g"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_choose_k_prints_scores_and_the_pick(capsys, tmp_path, saved_maps):
    import polars as pl

    table = tmp_path / "scores.csv"
    code, out, err = _run(capsys, "choose-k", str(saved_maps), "--k-max", "5", "-o", str(table))
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "chosen k: 3"
    assert pl.read_csv(table)["k"].to_list() == [2, 3, 4, 5]
    code, _, err = _run(capsys, "choose-k", str(saved_maps), "--k-max", "9")
    assert code == 1 and "--k-max <= tasks - 1 = 8" in err


def test_plot_kinds(capsys, tmp_path, saved_maps):
    groups = tmp_path / "groups"
    assert _run(capsys, "group", str(saved_maps), "--k", "3", "-o", str(groups), "-q")[0] == 0
    for kind in ("datamap", "memberships", "taskmap"):
        png = tmp_path / f"{kind}.png"
        code, _, err = _run(capsys, "plot", str(saved_maps), "--kind", kind,
                            "--groups", str(groups), "-o", str(png))  # fmt: skip
        assert code == 0, err
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = _run(capsys, "plot", str(saved_maps), "--task", "fam0_task0", "--task", "nope",
                        "-o", str(tmp_path / "x.png"))  # fmt: skip
    assert code == 1 and "--task 'nope' is not a task" in err
    code, _, err = _run(capsys, "plot", str(saved_maps), "--kind", "memberships",
                        "-o", str(tmp_path / "y.png"))  # fmt: skip
    assert code == 1 and "needs --groups" in err


def test_report_with_groups_and_evaluation(capsys, tmp_path, saved_maps):
    import polars as pl

    groups = tmp_path / "groups"
    _run(capsys, "group", str(saved_maps), "--k", "3", "-o", str(groups), "-q")
    evaluation = tmp_path / "eval.csv"
    pl.DataFrame({"method": ["one_model", "stg_mtl"], "seed": [0, 0], "task": ["fam0_task0"] * 2,
                  "f1": [0.5, 0.75], "balanced_accuracy": [0.5, 0.7], "roc_auc": [0.6, 0.8]}
                 ).write_csv(evaluation)  # fmt: skip
    html_path = tmp_path / "report.html"
    code, _, err = _run(capsys, "report", str(saved_maps), "--groups", str(groups),
                        "--evaluation", str(evaluation), "-o", str(html_path), "-q",
                        "--title", "My run")  # fmt: skip
    assert code == 0, err
    text = html_path.read_text()
    assert "<title>My run</title>" in text and text.count('class="group-row"') == 3
    assert '<td class="num">0.750</td>' in text.replace(" &plusmn;", "")  # one seed: no std
    # --k groups on the fly; --groups and --k together is a user error
    code, _, err = _run(capsys, "report", str(saved_maps), "--k", "2", "-q",
                        "-o", str(tmp_path / "r2.html"))  # fmt: skip
    assert code == 0 and (tmp_path / "r2.html").read_text().count('class="group-row"') == 2
    code, _, err = _run(capsys, "report", str(saved_maps), "--k", "2", "--groups", str(groups),
                        "-o", str(tmp_path / "r3.html"))  # fmt: skip
    assert code == 2 and "not allowed with argument" in err
    code, _, err = _run(capsys, "report", str(saved_maps), "--evaluation", str(tmp_path / "e.xlsx"),
                        "-o", str(tmp_path / "r4.html"))  # fmt: skip
    assert code == 1 and "--evaluation" in err and "not found" in err
