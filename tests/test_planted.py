"""Suites with a known answer (stgmtl.payoff.planted) and the study's statistics (.study)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from scipy import stats
from torch import nn
from torch.utils.data import TensorDataset

from stgmtl.payoff import PlantedSuite, Splits, exact_null_suite, planted_suite
from stgmtl.payoff.planted import noisy_targets
from stgmtl.payoff.search import partition_from_affinity
from stgmtl.payoff.splits import data_fingerprint
from stgmtl.payoff.study import (
    NULL_SEED_STRIDE,
    Trial,
    effect_by_side,
    exact_null_trial,
    false_positive_rate,
    planted_trial,
    power_by_strength,
    rate,
    recommends_planted,
    trained_sets,
)
from stgmtl.specialise import TrainConfig
from stgmtl.specialise.data import make_loader, targets_of

pytestmark = pytest.mark.usefixtures("single_thread")

DIMS = 8


def _data(n: int, seed: int, t: int = 4) -> TensorDataset:
    """Every task is 'feature 0 > 0' (plus a little noise) on Gaussian inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIMS, generator=g)
    y = torch.stack([(x[:, 0] + 0.1 * torch.randn(n, generator=g) > 0) for _ in range(t)], 1)
    return TensorDataset(x, y.float())


def _splits(n_train: int = 400, t: int = 4) -> Splits:
    return Splits(_data(n_train, 0, t), _data(300, 1, t), _data(1000, 2, t))


def bottleneck_mlp(num_tasks: int, width: float) -> nn.Module:
    """8 inputs -> round(32 width) ReLU units -> one bottleneck unit -> one logit per task.

    At any width one model passes one number to all heads, so random-label tasks that pull that
    unit about hurt the clean tasks whatever the budget; a network of their own does not.
    """
    h = max(1, round(32 * width))
    return nn.Sequential(nn.Linear(DIMS, h), nn.ReLU(), nn.Linear(h, 1), nn.Linear(1, num_tasks))


# ---------------------------------------------------------------------------- the suites
def test_noise_fraction_equals_the_knob_exactly_and_only_on_the_noisy_side() -> None:
    base = _splits(t=6)
    for strength in (0.0, 0.3, 1.0):
        suite = planted_suite(base, strength=strength, instance=3)
        assert isinstance(suite, PlantedSuite) and isinstance(suite, Splits)
        clean, noisy = suite.sides
        assert (
            len(noisy) == 3
            and len(clean) == 3
            and set(clean) | set(noisy) == set(suite.task_names())
        )
        for split, d in (("train", base.train), ("test", base.test)):
            n = len(d)
            assert suite.replaced[split] == {t: round(strength * n) / n for t in noisy}
        names = suite.task_names()
        y0, y1 = targets_of(base.train), targets_of(suite.train)
        for t in clean:  # clean tasks untouched
            assert torch.equal(y0[:, names.index(t)], y1[:, names.index(t)])
    # strength 1: the noisy tasks are fair coins, unrelated to the inputs
    suite = planted_suite(_splits(n_train=4000, t=4), strength=1.0, noisy=["task_1", "task_3"])
    y = targets_of(suite.train)
    assert suite.sides == (("task_0", "task_2"), ("task_1", "task_3"))
    for c in (1, 3):
        assert abs(float(y[:, c].mean()) - 0.5) < 0.04
        assert abs(stats.spearmanr(y[:, c], y[:, 0])[0]) < 0.06
    assert stats.spearmanr(y[:, 2], y[:, 0])[0] > 0.8


def test_replaced_labels_are_a_seeded_draw_of_exactly_m_positions() -> None:
    y = torch.zeros(50, 3)
    out, frac = noisy_targets(y, [1], 0.4, (0, 1))
    assert frac == [0.4] and torch.equal(out[:, [0, 2]], y[:, [0, 2]])
    again, _ = noisy_targets(y, [1], 0.4, (0, 1))
    assert torch.equal(out, again)  # seeded
    other, _ = noisy_targets(y, [1], 0.4, (1, 1))
    assert not torch.equal(out, other)  # another instance, another draw
    # ones where a replaced label's coin came up 1; the rest of the 20 replaced stayed 0
    assert 0 < int(out[:, 1].sum()) <= 20


def test_batches_carry_the_planted_targets_and_the_fingerprint_changes() -> None:
    base = _splits()
    suite = planted_suite(base, strength=0.5, instance=1)
    seen = torch.zeros_like(suite.train.targets)
    for _x, y, idx in make_loader(suite.train, 64, shuffle=True, seed=3):
        seen[idx] = y
    assert torch.equal(seen, suite.train.targets)
    assert data_fingerprint(suite) != data_fingerprint(base)
    assert data_fingerprint(suite) == data_fingerprint(
        planted_suite(base, strength=0.5, instance=1)
    )
    assert data_fingerprint(suite) != data_fingerprint(
        planted_suite(base, strength=0.5, instance=2)
    )


def test_sides_mixing_and_the_oracle_partition() -> None:
    suite = planted_suite(_splits(t=6), strength=1.0, noisy=["task_0", "task_4", "task_5"])
    assert suite.planted
    assert not suite.mixes([["task_1", "task_2", "task_3"], ["task_0", "task_4", "task_5"]])
    assert not suite.mixes([["task_1"], ["task_2", "task_3"], ["task_0", "task_4", "task_5"]])
    assert suite.mixes([["task_1", "task_0"], ["task_2", "task_3", "task_4", "task_5"]])
    labels = partition_from_affinity(suite.oracle_affinity(), 2).labels
    assert labels[0] == labels[4] == labels[5] and labels[1] == labels[2] == labels[3]
    assert labels[0] != labels[1]
    with pytest.raises(ValueError, match="strength"):
        planted_suite(_splits(), strength=1.5)
    with pytest.raises(ValueError, match="noisy"):
        planted_suite(_splits(), strength=0.5, noisy=["task_0", "task_1", "task_2", "task_3"])
    with pytest.raises(ValueError, match="noisy"):
        planted_suite(_splits(), strength=0.5, noisy=["nope"])


def test_the_exact_null_is_the_suite_unchanged_on_one_side() -> None:
    base = _splits()
    null = exact_null_suite(base, instance=2)
    assert null.kind == "null" and not null.planted and null.sides[1] == ()
    assert null.train is base.train and data_fingerprint(null) == data_fingerprint(base)
    assert not null.mixes([["task_0", "task_1"], ["task_2", "task_3"]])
    rec = {"verdict": "grouping", "groups": [["task_0", "task_1"], ["task_2", "task_3"]]}
    assert not recommends_planted(rec, null)  # nothing planted: never a hit


# ---------------------------------------------------------------------------- trained checks
RECIPE = TrainConfig(width=1.0, epochs=6, batch_size=64, lr=0.05, pos_weight=None)


@pytest.mark.slow
def test_exact_null_candidates_are_identical_recipe_runs_on_other_seeds(tmp_path) -> None:
    null = exact_null_suite(_splits(), instance=1)
    trial = exact_null_trial(null, bottleneck_mlp, RECIPE, tmp_path, seeds=(0, 1), candidates=2,
                             confirm_seeds=3)  # fmt: skip
    assert trial.kind == "null" and trial.strength == 0.0 and trial.instance == 1
    assert trial.verdict in ("grouping", "one model") and trial.hit == (trial.verdict == "grouping")
    if trial.detail:  # a candidate beat the reference on validation and was retrained
        assert trial.detail["fresh_seeds"] == [1002, 1003, 1004]  # after 1000, 1001
        assert trial.detail["candidate"] in (1, 2)
    # the cache holds only one-model runs (one system) on the exploration and candidate seeds
    from stgmtl.payoff.execution import run_all
    from stgmtl.payoff.runs import RunContext, RunSpec, factory_identity
    from stgmtl.payoff.tables import runs_table

    ctx = RunContext(null, bottleneck_mlp, RECIPE, str(tmp_path), data_fingerprint(null),
                     factory_identity(bottleneck_mlp))  # fmt: skip
    names = tuple(null.task_names())
    seeds = [1000 + s + c * NULL_SEED_STRIDE for s in (0, 1) for c in (0, 1, 2)]
    runs, systems = runs_table(run_all([RunSpec("network", names, seed=s) for s in seeds], ctx,
                                       progress=False))  # fmt: skip
    assert systems.height == 1 and sorted(set(runs["seed"].to_list())) == sorted(seeds)
    # same recipe, other seed: other weights, so the losses differ (no identical copies)
    assert (
        runs.filter(runs["seed"] == 1000)["loss"].to_list()
        != runs.filter(runs["seed"] == 1000 + NULL_SEED_STRIDE)["loss"].to_list()
    )


def small_mlp(num_tasks: int, width: float) -> nn.Module:
    """8 inputs -> round(16 width) ReLU units -> one logit per task."""
    h = max(1, round(16 * width))
    return nn.Sequential(nn.Linear(DIMS, h), nn.ReLU(), nn.Linear(h, num_tasks))


@pytest.mark.slow
def test_planted_split_beats_one_model_at_the_budget_on_a_small_instance(tmp_path) -> None:
    # six tasks read one feature; four become random-label tasks (strength 1) that pull the
    # shared hidden layer about: a network of the clean tasks' own and one of the noisy tasks'
    # beat one model at 2x parameters on every seed. At strength 0 nothing is planted and the
    # six alike tasks gain from one model: the knob moves the measured effect across zero
    noisy = ["task_2", "task_3", "task_4", "task_5"]
    recipe = TrainConfig(width=1.0, epochs=10, batch_size=32, lr=0.02, pos_weight=None)
    strong = planted_suite(_splits(n_train=200, t=6), strength=1.0, noisy=noisy)
    trial = planted_trial(strong, small_mlp, recipe, tmp_path / "strong", n_bootstrap=10,
                          n_permutations=10)  # fmt: skip
    assert len(trial.effect) == 3 and min(trial.effect) > 0.01
    # validation chose the planted split, and the fresh seeds confirmed its loss gain
    assert trial.unmixed
    assert sorted(sorted(g) for g in trial.groups) == [["task_0", "task_1"], sorted(noisy)]
    assert trial.detail["loss_p"] < 0.05 and len(trial.detail["relative_loss"]) == 5
    assert trial.hit == (trial.verdict == "grouping")  # the ROC AUC half decides the rest
    none = planted_suite(_splits(n_train=200, t=6), strength=0.0, noisy=noisy)
    flat = planted_trial(none, small_mlp, recipe, tmp_path / "none", n_bootstrap=10,
                         n_permutations=10, confirm_seeds=0)  # fmt: skip
    assert max(flat.effect) < 0 and not flat.hit


# ---------------------------------------------------------------------------- statistics
def _trial(kind: str, strength: float, hit: bool, effect=(), verdict=None) -> Trial:
    v = verdict or ("grouping" if hit else "one model")
    return Trial(kind, strength, 0, v, [], hit, list(effect))


def test_rate_is_k_over_n_with_the_clopper_pearson_interval() -> None:
    r = rate([True, False, True, True])
    assert (r.k, r.n, r.rate) == (3, 4, 0.75)
    # hand-computed: Beta(0.025; 3, 2) and Beta(0.975; 4, 1)
    assert r.lo == pytest.approx(0.194120, abs=1e-6)
    assert r.hi == pytest.approx(0.993690, abs=1e-6)
    zero = rate([False] * 10)
    assert zero.lo == 0.0 and zero.hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)
    full = rate([True] * 5)
    assert full.hi == 1.0 and full.lo == pytest.approx(0.025 ** (1 / 5), abs=1e-12)
    with pytest.raises(ValueError, match="hits"):
        rate([])


def test_power_by_strength_and_false_positive_rate_by_hand() -> None:
    trials = [
        _trial("planted", 1.0, True, (0.10, 0.20)),
        _trial("planted", 1.0, True, (0.30,)),
        _trial("planted", 1.0, False, (0.00,), verdict="grouping"),  # confirmed but mixed
        _trial("planted", 0.5, False, (-0.1, 0.1)),
        _trial("null", 0.0, False),
        _trial("null", 0.0, True),
        _trial("null", 0.0, False),
        _trial("null", 0.0, False),
    ]
    tab = power_by_strength(trials)
    assert tab["strength"].to_list() == [0.5, 1.0]
    one = tab.filter(tab["strength"] == 1.0).row(0, named=True)
    assert (one["n"], one["hits"], one["power"], one["confirmed"]) == (3, 2, 2 / 3, 3)
    assert one["effect"] == pytest.approx(0.15) and one["effect_n"] == 4
    assert one["effect_sd"] == pytest.approx(np.std([0.1, 0.2, 0.3, 0.0], ddof=1))
    # the effect's interval is over instances (means 0.15, 0.30, 0.00), df = 2, by hand:
    m, sd = 0.15, np.std([0.15, 0.30, 0.00], ddof=1)
    half = 4.302652729911275 * sd / np.sqrt(3)  # t(0.975, 2)
    assert one["effect_lo"] == pytest.approx(m - half) and one["effect_hi"] == pytest.approx(
        m + half
    )
    assert one["lo"] == pytest.approx(stats.beta.ppf(0.025, 2, 2))
    assert one["hi"] == pytest.approx(stats.beta.ppf(0.975, 3, 1))
    half = tab.filter(tab["strength"] == 0.5).row(0, named=True)
    assert (half["hits"], half["power"], half["lo"]) == (0, 0.0, 0.0)
    fp = false_positive_rate(trials)
    assert (fp.k, fp.n, fp.rate) == (1, 4, 0.25)
    assert fp.lo == pytest.approx(0.006309, abs=1e-6) and fp.hi == pytest.approx(0.805880, abs=1e-6)


def test_recommends_planted_needs_a_confirmed_unmixed_grouping() -> None:
    suite = planted_suite(_splits(), strength=0.5, noisy=["task_2", "task_3"])
    good = [["task_0", "task_1"], ["task_2", "task_3"]]
    assert recommends_planted({"verdict": "grouping", "groups": good}, suite)
    assert not recommends_planted({"verdict": "one model", "groups": good}, suite)
    assert not recommends_planted({"verdict": "unconfirmed", "groups": good}, suite)
    mixed = [["task_0", "task_2"], ["task_1", "task_3"]]
    assert not recommends_planted({"verdict": "grouping", "groups": mixed}, suite)
    assert not recommends_planted({"verdict": "grouping", "groups": [list(suite.task_names())]},
                                  suite)  # fmt: skip
    nothing = planted_suite(_splits(), strength=0.0, noisy=["task_2", "task_3"])
    assert not recommends_planted({"verdict": "grouping", "groups": good}, nothing)
    # served groups can look unmixed while a chosen network trained both sides together: one
    # model serving the noisy side plus a clean-side network is mixed (judged on what trained)
    names = list(suite.task_names())
    systems = pl.DataFrame(
        {
            "system": ["one", "clean"],
            "tasks": [json.dumps(names), json.dumps(["task_0", "task_1"])],
            "groups": ["[]", "[]"],
        }
    )
    rec = {
        "verdict": "grouping",
        "groups": good,
        "systems": [{"system": "clean"}, {"system": "one"}],
    }
    assert recommends_planted(rec, suite)  # the served groups alone
    assert not recommends_planted(rec, suite, systems)
    assert trained_sets(rec, systems) == [["task_0", "task_1"], names]
    grouped = systems.with_columns(
        pl.Series("groups", [json.dumps(good), "[]"]), pl.Series("system", ["sep", "x"])
    )
    rec2 = {"verdict": "grouping", "groups": good, "systems": [{"system": "sep"}]}
    assert recommends_planted(rec2, suite, grouped)


# ---------------------------------------------------------------------------- the command
def test_planted_preset_and_its_options() -> None:
    import argparse

    from stgmtl.payoff_command import PAYOFF_PRESETS, payoff_settings

    ns = argparse.Namespace(quick=False, suite="planted", strength=0.5, instance=None)
    st = payoff_settings(ns)
    assert st["strength"] == 0.5 and st["instance"] == 0 and st["truth"] == "none"
    assert st["ks"] == "2" and st["budget"] == 2.0 and st["confirm_seeds"] == 5
    # the other presets are unchanged by the new one
    assert "strength" not in PAYOFF_PRESETS["cifar10-15"]
    assert all("strength" not in PAYOFF_PRESETS[n] for n in ("cifar100", "quick"))


def test_strength_outside_the_planted_suite_is_one_line(capsys, tmp_path) -> None:
    from stgmtl import cli

    try:
        code = cli.main(["payoff", "--strength", "0.5", "--out", str(tmp_path / "o")])
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 1 and "--strength" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_tiny_planted_run_on_real_cifar10(capsys, tmp_path, cifar_root) -> None:
    from stgmtl import cli
    from stgmtl.datasets import cifar10_planted_splits

    suite = cifar10_planted_splits(strength=0.4, instance=1, root=cifar_root, test_limit=300)
    assert len(suite.sides[1]) == 5 and suite.replaced["train"] == dict.fromkeys(
        suite.sides[1], round(0.4 * 3200) / 3200
    )
    null = cifar10_planted_splits(kind="null", root=cifar_root, test_limit=300)
    assert null.kind == "null" and len(null.sides[0]) == 10
    argv = ["payoff", "--suite", "planted", "--strength", "1", "--data-root", str(cifar_root),
            "--seeds", "0,1", "--epochs", "1", "--width", "0.125", "--val-size", "200",
            "--test-limit", "300", "--signals", "label", "--confirm-seeds", "2",
            "--random-partitions", "0", "--no-report", "--out", str(tmp_path / "p"),
            "-q"]  # fmt: skip
    code = cli.main(argv)
    out = capsys.readouterr().out
    assert code == 0 and "Planted label-noise at strength 1" in out
    assert "Known answer" in out


def test_planted_effect_reads_the_planted_partitions_test_gain_per_seed() -> None:
    import json

    import polars as pl

    from stgmtl.payoff.study import planted_effect

    payoff = pl.DataFrame(
        {
            "split": ["test", "test", "val", "test", "test"],
            "source": ["planted", "planted", "planted", "label", "planted"],
            "k": [2, 2, 2, 2, 3],
            "seed": [1, 0, 0, 0, 0],
            "gain_vs_budget": [0.2, 0.1, 0.9, 0.5, 0.7],
        }
    )
    assert planted_effect(payoff) == [0.1, 0.2]  # test split, source planted, k = 2, by seed
    assert planted_effect(payoff, source="label") == [0.5]
    assert planted_effect(pl.DataFrame()) == []
    t = Trial("planted", 1.0, 2, "grouping", [["a"], ["b"]], True, [0.1], 3.0, {"loss_p": 0.01})
    assert Trial(**json.loads(json.dumps(t.to_dict()))) == t


def test_effect_by_side_separates_the_sides_by_hand() -> None:
    from types import SimpleNamespace

    suite = planted_suite(_splits(), strength=1.0, noisy=["task_2", "task_3"])
    names = list(suite.task_names())  # task_0, task_1 clean; task_2, task_3 noisy
    parts = pl.DataFrame(
        {
            "partition": ["planted:k2"] * 4 + ["one model (2x)"] * 4,
            "source": ["planted"] * 4 + ["one model"] * 4,
            "task": names * 2,
            "system": ["A", "A", "B", "B", "R", "R", "R", "R"],
        }
    )
    systems = pl.DataFrame({"system": ["A", "B", "R"], "budget": [2.0, 2.0, 2.0]})
    loss = {"A": [0.9, 1.1], "B": [2.0, 2.2], "R": [1.0, 1.0, 2.0, 2.0]}
    rows = []
    for seed in (0, 1):
        for i, t in enumerate(names):
            sys_ = "A" if i < 2 else "B"
            rows.append({"system": sys_, "seed": seed, "task": t, "split": "test",
                         "loss": loss[sys_][i % 2] + seed})  # fmt: skip
            rows.append({"system": "R", "seed": seed, "task": t, "split": "test",
                         "loss": loss["R"][i] + seed})  # fmt: skip
    result = SimpleNamespace(partitions=parts, systems=systems, runs=pl.DataFrame(rows))
    tab = effect_by_side(result, suite)
    got = {(r["side"], r["seed"]): r["gain"] for r in tab.iter_rows(named=True)}
    for seed in (0, 1):
        clean = np.mean(
            [(1 + seed - (0.9 + seed)) / (1 + seed), (1 + seed - (1.1 + seed)) / (1 + seed)]
        )
        noisy = np.mean(
            [(2 + seed - (2.0 + seed)) / (2 + seed), (2 + seed - (2.2 + seed)) / (2 + seed)]
        )
        assert got[("clean", seed)] == pytest.approx(clean)
        assert got[("noisy", seed)] == pytest.approx(noisy)
    with pytest.raises(ValueError, match="source"):
        effect_by_side(result, suite, source="nope")
