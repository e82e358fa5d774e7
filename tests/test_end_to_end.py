"""The whole pipeline on a small real CIFAR subset: record -> group -> grouped training -> metrics.

Needs the real data (``$STGMTL_DATA``); skipped with a reason otherwise. Sized to run in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import stgmtl
from stgmtl import demo
from stgmtl.datasets import cifar100_suite
from stgmtl.models import build_model, model_factory
from stgmtl.specialise import METHODS, TrainConfig, compare_methods, grouping_agreement

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.usefixtures("single_thread")


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_pipeline_on_cifar100_subset(cifar_root: Path) -> None:
    train = cifar100_suite("train45k", root=cifar_root, limit=500, seed=0)
    test = cifar100_suite("test", root=cifar_root, limit=300)
    torch.manual_seed(0)
    dm = stgmtl.fit_datamaps(
        train.loader(100, shuffle=True, seed=0),
        build_model("cnn", 100, 0.125),
        epochs=2,
        pos_weight=train.pos_weight(),
        task_names=train.task_names,
        snapshot_epochs=[1, 2],
        progress=False,
        random_state=0,
    )
    assert dm.num_tasks == 100 and dm.num_samples == 500
    assert np.isfinite(dm.confidence).all() and (dm.count == 2).all()
    groups = stgmtl.group(dm, k=5, random_state=0, progress=False)
    assert groups.membership.shape == (100, 5)
    agree = grouping_agreement(groups.labels, train.task_superclass, n_permutations=20)
    from sklearn.metrics import normalized_mutual_info_score

    ref = normalized_mutual_info_score(train.task_superclass, groups.labels)
    assert agree["nmi"] == pytest.approx(ref, abs=1e-12)
    cfg = TrainConfig(width=0.125, epochs=1, batch_size=100, seed=0)
    with pytest.warns(DeprecationWarning, match="stgmtl.payoff.run_payoff"):
        table = compare_methods(
            model_factory("cnn"), train, test, groups.membership, cfg, progress=False
        )
    assert set(table["method"]) == set(METHODS) and table.height == 4 * 100
    assert table.filter(pl.col("roc_auc").is_not_nan())["roc_auc"].is_between(0, 1).all()


@pytest.mark.slow
def test_cifar10_15_example_runs(cifar_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STGMTL_DATA", str(cifar_root))
    example = _load_example("cifar10_15_tasks")
    args = ["--limit", "300", "--epochs", "2", "--width", "0.125", "--no-progress"]
    assert example.main([*args, "--out", str(tmp_path), "--no-plots"]) == 0
    assert (tmp_path / "groups").is_dir() and (tmp_path / "datamaps").is_dir()


def _payoff_settings(argv: list[str]) -> dict:
    from stgmtl.cli import build_parser
    from stgmtl.payoff_command import payoff_settings

    args = build_parser().parse_args(argv)
    return {"suite": args.suite, **payoff_settings(args)}


def test_the_studies_are_presets_of_the_payoff_harness(tmp_path: Path) -> None:
    # the example's --study runs `stgmtl payoff` on its k, model and seeds ...
    example = _load_example("cifar10_15_tasks")
    args = example.parse_args(["--study", "-k", "4", "--study-seeds", "3,4", "--out", "x"])
    argv = example.study_argv(args)
    assert argv[:3] == ["payoff", "--suite", "cifar10-15"]
    st = _payoff_settings(argv)
    assert (st["ks"], st["seeds"], st["model"], st["truth"]) == ("4", "3,4", "cnn", "none")
    assert st["epochs"] == 8 and st["width"] == 0.5  # the suite's preset (its training curve)
    # ... and the demo's on CIFAR-100, its --study-* options mapped, the rest the preset's
    a = demo.parse_args(["--study", "--study-k", "5", "--study-train-epochs", "2"])
    argv = demo.study_argv(a, tmp_path)
    st = _payoff_settings(argv)
    assert (st["ks"], st["epochs"], st["suite"]) == ("5", 2, "cifar100")
    assert st["train_limit"] == 10_000 and "--out" in argv
    assert argv[argv.index("--out") + 1] == str(tmp_path / "payoff")


@pytest.mark.slow
def test_cifar100_demo_runs(cifar_root: Path, tmp_path: Path) -> None:
    args = [
        "--data-root",
        str(cifar_root),
        "--train-limit",
        "300",
        "--epochs",
        "2",
        "--k",
        "5",
        "--width",
        "0.125",
        "--features",
        "confusion",
        "--permutations",
        "20",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    assert demo.main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train_images"] == 300 and summary["snapshots"] == [2]
    assert sum(len(g) for g in summary["groups"]) == 100
    assert summary["config"]["features"] == "confusion"
    # the printed agreement is that of the saved groups against the superclasses
    from sklearn.metrics import normalized_mutual_info_score

    saved = stgmtl.TaskGroups.load(tmp_path / "groups")
    assert saved.groups == summary["groups"]
    sup = cifar100_suite("test", root=cifar_root, limit=1).task_superclass
    nmi = normalized_mutual_info_score(sup, saved.labels)
    assert summary["agreement"]["nmi"] == pytest.approx(nmi, abs=1e-12)
    other = summary["agreement_other_features"]
    assert other["features"] == "datamap" and other["nmi"] != summary["agreement"]["nmi"]
    assert stgmtl.DataMaps.load(tmp_path / "datamaps").num_samples == 300
    for name in ("datamaps.png", "memberships.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_cifar100_demo_presets() -> None:
    args = demo.parse_args([])
    assert (args.model, args.scheduler, args.lr, args.features) == (
        "wide-cnn",
        "onecycle",
        4e-3,
        "confusion",
    )
    args = demo.parse_args(["--preset", "stg-mtl", "--lr", "2e-3"])
    assert (args.model, args.scheduler, args.lr, args.features) == (
        "cnn",
        "constant",
        2e-3,
        "datamap",
    )


def test_demo_group_header_breaks_ties_by_order() -> None:
    # the header's superclass must not depend on string hash order (PYTHONHASHSEED)
    from types import SimpleNamespace

    sup = {"a": "x", "b": "y", "c": "y"}
    text = demo.describe_groups(
        SimpleNamespace(groups=[["a", "b"], ["b", "a"], ["a", "b", "c"]]), sup
    )
    headers = [line for line in text.splitlines() if line.startswith("group")]
    assert headers == [
        "group  0 ( 2 tasks;  50% x)",
        "group  1 ( 2 tasks;  50% y)",
        "group  2 ( 3 tasks;  67% y)",
    ]
