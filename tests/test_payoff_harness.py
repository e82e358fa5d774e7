"""The payoff harness end to end on tiny synthetic suites: runs, cache, executor, recommend."""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import stgmtl
from stgmtl.datasets.suites import TaskSuite
from stgmtl.models import model_factory
from stgmtl.payoff import PayoffResult, Splits, recommend, run_payoff
from stgmtl.payoff import runs as runs_module
from stgmtl.payoff import worker as worker_module
from stgmtl.payoff.execution import run_all
from stgmtl.payoff.runs import RunContext, RunSpec
from stgmtl.payoff.splits import data_fingerprint
from stgmtl.payoff.tables import system_id
from stgmtl.payoff.worker import execute_run
from stgmtl.report import render_report
from stgmtl.specialise import TrainConfig

pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------------------- planted suites
DIMS = 16


def _planted(n: int, seed: int, sources: tuple[int, ...], noise: float) -> TensorDataset:
    """Task j is 'input feature sources[j] plus task noise > 0' on Gaussian inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIMS, generator=g)
    y = torch.stack([(x[:, s] + noise * torch.randn(n, generator=g) > 0) for s in sources], 1)
    return TensorDataset(x, y.float())


def bottleneck_mlp(num_tasks: int, width: float) -> nn.Module:
    """16 inputs -> round(64 width) ReLU units -> a one-unit bottleneck -> one logit per task.

    Width scales the hidden layer only: a wider network still passes one number to its heads,
    so one model at any budget cannot serve two families that read different features, while
    one network per family can (the planted answer survives the budget-matched one model).
    """
    h = max(1, round(64 * width))
    return nn.Sequential(nn.Linear(DIMS, h), nn.ReLU(), nn.Linear(h, 1), nn.Linear(1, num_tasks))


def _splits(sources: tuple[int, ...], n_train: int, noise: float) -> Splits:
    sizes = ((n_train, 0), (512, 1), (2048, 2))
    return Splits(*(_planted(n, s, sources, noise) for n, s in sizes))


RECIPE = TrainConfig(width=1.0, epochs=6, batch_size=64, lr=0.05, pos_weight=None)


def _run(
    sources: tuple[int, ...],
    tmp_path,
    n_train: int = 512,
    noise: float = 0.2,
    recipe: TrainConfig = RECIPE,
    truth: str = "auto",
) -> PayoffResult:
    return run_payoff(
        _splits(sources, n_train, noise), bottleneck_mlp, recipe, tmp_path / "out", truth=truth,
        seeds=(0, 1, 2), ks=(2,), signals={}, random_partitions=1, n_bootstrap=20,
        n_permutations=20, budget=2.0, progress=False, log=None,
    )  # fmt: skip


@pytest.mark.slow
def test_recommend_a_grouping_where_tasks_need_different_features(tmp_path) -> None:
    # a, b read feature 0; c, d read feature 1: one model's one-unit bottleneck cannot serve
    # both families at any width, two networks (one per family) can. Pairs only: with every
    # subset as a candidate, validation may pick a 3-task network that served the right family
    # on the exploration seeds by luck, and the fresh seeds reject it (as they should)
    result = _run((0, 0, 1, 1), tmp_path, truth="pairs")
    rec = result.recommendation
    assert rec["verdict"] == "grouping" and not rec["one_model_best"]
    assert sorted(sorted(g) for g in rec["groups"]) == [["task_0", "task_1"], ["task_2", "task_3"]]
    conf = rec["confirmation"]
    assert conf["seeds"] == [3, 4, 5, 6, 7]  # fresh: after the exploration seeds 0, 1, 2
    assert conf["loss"]["accepted"] and conf["loss"]["df"] == 4 and conf["loss"]["p_value"] < 0.05
    assert rec["cost"] <= 2.0 and "Train the candidate grouping" in rec["message"]
    # choosing alone (validation) never gives the verdict
    alone = recommend(result)
    assert alone.verdict == "unconfirmed" and alone.one_model_best
    # every budgeted system is within its band, and the 2x one model was trained as a reference
    systems = result.systems
    ref = float(
        systems.filter(pl.col("system") == system_id(RunSpec("network", tuple(result.task_names))))[
            "parameters"
        ][0]
    )
    for row in systems.filter(pl.col("budget") > 1).iter_rows(named=True):
        assert 0.95 * 2 * ref <= row["parameters"] <= 2 * ref
    assert any(s.endswith("@2x") and s.startswith("net:") for s in systems["system"].to_list())
    # the validation truth's k = 2 partition is the planted one, and it pays on test
    best = result.summary.filter((pl.col("source") == "truth (val)") & (pl.col("split") == "test"))
    assert best["gain_vs_one"].mean() > 0.1
    # saved, loaded, reported
    loaded = PayoffResult.load(tmp_path / "out" / "result")
    assert loaded.recommendation == result.recommendation
    assert loaded.summary.equals(result.summary)
    html = render_report(payoff=loaded, progress=False)
    assert 'id="recommendation"' in html and "payoff-summary" in html


@pytest.mark.slow
def test_recommend_one_model_where_tasks_share_one_noisy_feature(tmp_path) -> None:
    # every task reads feature 0 through heavy label noise from 128 images: training them
    # together pools the evidence, so one model beats any split of the tasks
    recipe = TrainConfig(width=1.0, epochs=10, batch_size=32, lr=0.05, pos_weight=None)
    result = _run((0, 0, 0, 0), tmp_path, n_train=128, noise=1.0, recipe=recipe)
    test = result.summary.filter((pl.col("split") == "test") & (pl.col("k") > 1))
    assert test["gain_vs_one"].max() < 0  # the planted answer holds on test
    rec = result.recommendation
    assert rec["one_model_best"] and rec["verdict"] == "one model"
    # either validation finds nothing better, or the fresh seeds reject what it found
    assert rec["message"].startswith("One model for all tasks") or (
        "the candidate was not confirmed" in rec["message"]
    )
    assert json.loads(json.dumps(rec))["one_model_best"] is True


# ------------------------------------------------------------------------- runs and caching
def _toy(n: int, t: int, seed: int) -> TaskSuite:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    chan = images.float().mean((2, 3))
    targets = torch.stack([chan[:, j % 3] > chan.mean(1) for j in range(t)], 1).float()
    return TaskSuite(
        images,
        targets,
        [f"t{j}" for j in range(t)],
        sample_ids=np.arange(n),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )


def _toy_splits() -> Splits:
    return Splits(_toy(96, 3, 0), _toy(48, 3, 1), _toy(48, 3, 2))


TINY = TrainConfig(width=0.125, epochs=1, batch_size=32)


def _ctx(tmp_path, data) -> RunContext:
    sp = data if isinstance(data, Splits) else data()
    f = model_factory("cnn")
    return RunContext(data, f, TINY, str(tmp_path / "cache"), data_fingerprint(sp), f.cache_id,
                      threads=1)  # fmt: skip


def _specs() -> list[RunSpec]:
    names = ("t0", "t1", "t2")
    return [
        RunSpec("network", ("t0",), seed=0),
        RunSpec("network", ("t0", "t2"), seed=1),
        RunSpec("separate", names, (("t0", "t1"), ("t2",)), seed=0),
        RunSpec("separate", names, (("t0", "t1"), ("t2",)), ((0.8, 0.2), (0.7, 0.3), (0.1, 0.9))),
        RunSpec("branched", names, (("t1",), ("t0", "t2")), seed=0),
    ]


def test_second_run_trains_nothing_and_reads_the_same_results(tmp_path, monkeypatch) -> None:
    ctx = _ctx(tmp_path, _toy_splits())
    first = run_all(_specs(), ctx, progress=False)
    assert not any(r.cached for r in first)
    assert {r.spec.kind for r in first} == {"network", "separate", "branched"}
    for r in first:
        assert r.metrics.height == 2 * len(r.spec.tasks)
        assert set(r.metrics["split"]) == {"val", "test"}

    def boom(*_a, **_k):
        raise AssertionError("trained although cached")

    monkeypatch.setattr(worker_module, "train_model", boom)
    second = run_all([*_specs(), _specs()[0]], ctx, progress=False)
    assert all(r.cached for r in second) and len(second) == 6
    for a, b in zip(first, second, strict=False):
        assert a.key == b.key and a.metrics.equals(b.metrics) and a.parameters == b.parameters
    weights = runs_module.load_weights(ctx, first[2].key)
    assert len(weights) == 2  # the two separate networks


def test_a_finished_run_is_a_verified_folder(tmp_path) -> None:
    ctx = _ctx(tmp_path, _toy_splits())
    r = execute_run(_specs()[0], ctx)
    folder = tmp_path / "cache" / "runs" / r.key
    (folder / "metrics.parquet").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt or was changed"):
        execute_run(_specs()[0], ctx)


def test_equal_budget_runs_have_one_models_parameters(tmp_path) -> None:
    ctx = _ctx(tmp_path, _toy_splits())
    one, _, sep, _, br = run_all(_specs(), ctx, progress=False)
    full = execute_run(RunSpec("network", ("t0", "t1", "t2")), ctx)
    for r in (sep, br):
        assert 0.8 * full.parameters <= r.parameters <= full.parameters
    assert one.parameters < full.parameters  # a narrower head


def test_paired_seeds_give_the_same_first_layer(tmp_path) -> None:
    ctx = _ctx(tmp_path, _toy_splits())
    torch.manual_seed(0)
    a = model_factory("cnn")(1, 0.125)
    torch.manual_seed(0)
    b = model_factory("cnn")(2, 0.125)
    torch.testing.assert_close(a.features[0].weight, b.features[0].weight)
    r1 = execute_run(RunSpec("network", ("t0",), seed=0), ctx)
    r2 = execute_run(RunSpec("network", ("t0",), seed=0), ctx)
    assert r1.metrics.equals(r2.metrics)


@pytest.mark.slow
def test_process_pool_executor_gives_the_in_process_results(tmp_path) -> None:
    data = _toy_splits
    inline = run_all(_specs(), _ctx(tmp_path / "a", data), progress=False)
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = run_all(_specs(), _ctx(tmp_path / "b", data), executor=pool, progress=False)
    for a, b in zip(inline, pooled, strict=True):
        assert a.key == b.key and not b.cached
        # one torch thread in both: the same arithmetic, the same numbers
        assert a.metrics.equals(b.metrics)


def test_exports() -> None:
    assert stgmtl.recommend is recommend and stgmtl.run_payoff is run_payoff
    assert stgmtl.PayoffResult is PayoffResult
