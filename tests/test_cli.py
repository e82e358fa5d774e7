"""The ``stgmtl`` command line: help, one-line user errors, and each subcommand end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    run = subprocess.run([sys.executable, "-m", "stgmtl", "--help"], capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
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


def test_demo_runs_the_example_script_with_its_arguments(capsys, tmp_path, monkeypatch):
    script = tmp_path / "examples" / "cifar100_grouping.py"
    script.parent.mkdir()
    marker = tmp_path / "ran.txt"
    script.write_text(
        "import sys, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text(' '.join(sys.argv[1:]))\n"
        "sys.exit(3)\n"
    )
    monkeypatch.setattr(cli, "_demo_script", lambda: script)
    code, _, _ = _run(capsys, "demo", "--", "--epochs", "1")
    assert code == 3  # the script's own exit status
    assert marker.read_text() == "--epochs 1"


def test_demo_outside_a_checkout_says_where_it_lives(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_demo_script", lambda: None)
    code, _, err = _run(capsys, "demo")
    assert code == 1 and "source repository" in err and len(err.strip().splitlines()) == 1


def test_demo_script_is_found_in_this_checkout():
    found = cli._demo_script()
    expected = Path(cli.__file__).resolve().parents[1] / "examples" / "cifar100_grouping.py"
    assert found == (expected if expected.is_file() else None)
