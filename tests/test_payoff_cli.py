"""``stgmtl payoff``: documented options, presets, errors, and one tiny run on real CIFAR-10."""

from __future__ import annotations

import argparse

import polars as pl
import pytest

from stgmtl import cli
from stgmtl.datasets import cifar10_15_splits
from stgmtl.payoff import PayoffResult
from stgmtl.payoff_command import PAYOFF_PRESETS, payoff_settings


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_documents_the_contract(capsys) -> None:
    code, out, _ = _run(capsys, "payoff", "--help")
    assert code == 0 and out.startswith("usage: stgmtl payoff")
    for option in (
        "--suite",
        "--tasks",
        "--seeds",
        "--budget",
        "--out",
        "--quick",
        "--signals",
        "--architectures",
        "--workers",
    ):
        assert option in out
    code, out, _ = _run(capsys, "--help")
    assert "payoff" in out


def test_presets_and_explicit_options() -> None:
    ns = argparse.Namespace(quick=False, suite="cifar100", epochs=5, seeds=None, tasks=None)
    st = payoff_settings(ns)
    assert st["epochs"] == 5 and st["ks"] == PAYOFF_PRESETS["cifar100"]["ks"]
    assert payoff_settings(argparse.Namespace(quick=True, suite="cifar10-15"))["seeds"] == "0,1"


def test_bad_input_is_one_line(capsys, tmp_path, cifar_root) -> None:
    code, _, err = _run(
        capsys, "payoff", "--suite", "cifar100", "--tasks", "apple,pearr", "--data-root",
        str(cifar_root), "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 1 and "tasks" in err and "pearr" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "result").exists()
    code, _, err = _run(capsys, "payoff", "--group-sizes", "2", "--out", str(tmp_path / "o"))
    assert code == 1 and "group_sizes" in err and "Traceback" not in err


def test_cifar10_splits_never_share_images(cifar_root) -> None:
    sp = cifar10_15_splits(root=cifar_root, val_size=400)
    train, val = set(sp.train.sample_ids.tolist()), set(sp.val.sample_ids.tolist())
    assert not train & val and len(train) + len(val) == 4000
    assert sp.val.targets[:, :10].sum(0).tolist() == [40.0] * 10  # stratified by class
    assert sp.test.split == "test" and len(sp.test) == 9966


@pytest.mark.slow
def test_a_tiny_run_on_real_cifar10(capsys, tmp_path, cifar_root) -> None:
    out = tmp_path / "payoff"
    argv = [
        "payoff",
        "--data-root",
        str(cifar_root),
        "--tasks",
        "living_being,not_living_being",
        "--seeds",
        "0,1",
        "--epochs",
        "1",
        "--width",
        "0.125",
        "--val-size",
        "200",
        "--test-limit",
        "300",
        "--ks",
        "2",
        "--random-partitions",
        "0",
        "--budget",
        "1",
        "--architectures",
        "network,branched",
        "--out",
        str(out),
        "-q",
    ]
    code, stdout, err = _run(capsys, *argv)
    assert code == 0, err
    assert "plan:" in stdout and "estimated time" in stdout
    result = PayoffResult.load(out / "result")
    assert result.task_names == ["living_being", "not_living_being"]
    assert set(result.runs["seed"].to_list()) == {0, 1}
    assert result.summary.filter(pl.col("architecture") == "branched").height > 0
    assert (out / "report.html").is_file() and (out / "figures" / "payoff.png").is_file()
    assert result.recommendation["message"]
    # a second run trains nothing: every run comes from the cache
    code, stdout, err = _run(capsys, *argv)
    assert code == 0 and "already in the cache" in stdout
    again = PayoffResult.load(out / "result")
    assert again.runs["cached"].all()
