"""The two-images planted mechanism and the single-task-loss (difficulty) control."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stgmtl.datasets.suites import TaskSuite
from stgmtl.payoff import Splits, two_image_suite
from stgmtl.payoff.planted import partner_indices, planted_suite
from stgmtl.payoff.splits import data_fingerprint
from stgmtl.payoff.truth import GroundTruth, difficulty_control

NAMES = ["a", "b", "c", "d"]


def _suite(n: int, seed: int, split: str) -> TaskSuite:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,), generator=g)
    targets = torch.nn.functional.one_hot(labels, 4).float()
    return TaskSuite(
        images, targets, NAMES, sample_ids=np.arange(n) + 1000 * seed, mean=(0.5,) * 3,
        std=(0.25,) * 3, labels=labels.numpy(), name="toy", split=split,
    )  # fmt: skip


def _splits() -> Splits:
    return Splits(_suite(60, 1, "train"), _suite(20, 2, "val"), _suite(30, 3, "test"))


def _grey_ref(images: torch.Tensor) -> np.ndarray:
    x = images.double().numpy()
    return np.clip(np.round(0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]), 0, 255)


def test_partner_is_a_derangement_of_exactly_the_drawn_share() -> None:
    for n, s in [(50, 1.0), (50, 0.5), (7, 0.3), (10, 0.0), (10, 0.1)]:
        p = partner_indices(n, s, (3, 1))
        m = int(round(s * n))
        moved = p != np.arange(n)
        assert moved.sum() == (m if m >= 2 else 0)
        assert sorted(p.tolist()) == list(range(n))  # a permutation: every image used once
        assert np.array_equal(p, partner_indices(n, s, (3, 1)))
    assert not np.array_equal(partner_indices(50, 1.0, (3, 1)), partner_indices(50, 1.0, (4, 1)))


def test_channels_and_labels_follow_the_own_image_and_the_partner() -> None:
    base = _splits()
    suite = two_image_suite(base, strength=1.0, second=["b", "d"], instance=2)
    assert suite.mechanism == "two-images" and suite.sides == (("a", "c"), ("b", "d"))
    assert suite.side_names == ("first", "second") and suite.planted
    for i, (old, new) in enumerate(
        zip((base.train, base.val, base.test), (suite.train, suite.val, suite.test), strict=True)
    ):
        p = partner_indices(len(old), 1.0, (2, 25, 3, i))
        grey = _grey_ref(old.images)
        assert np.array_equal(new.images[:, 0].numpy(), grey)
        assert np.array_equal(new.images[:, 1].numpy(), grey[p])
        assert not new.images[:, 2].any()
        y, y0 = new.targets.numpy(), old.targets.numpy()
        assert np.array_equal(y[:, [0, 2]], y0[:, [0, 2]])  # first side: the own image
        assert np.array_equal(y[:, [1, 3]], y0[p][:, [1, 3]])  # second side: the partner's
        assert np.array_equal(new.sample_ids, old.sample_ids)
    assert suite.replaced == {s: {"b": 1.0, "d": 1.0} for s in ("train", "val", "test")}
    # normalisation from the new training inputs; the blank channel is left unscaled
    x = suite.train.images.double() / 255
    assert suite.train.mean.flatten()[0].item() == pytest.approx(x[:, 0].mean().item(), abs=1e-6)
    assert suite.train.std.flatten()[2].item() == 1.0
    assert data_fingerprint(suite) != data_fingerprint(two_image_suite(base, strength=0.5))


def test_strength_zero_is_the_grey_suite_with_nothing_planted() -> None:
    base = _splits()
    suite = two_image_suite(base, strength=0.0, n_second=2)
    assert not suite.planted
    assert torch.equal(suite.train.images[:, 0], suite.train.images[:, 1])
    assert torch.equal(suite.test.targets, base.test.targets)


def test_bad_inputs_say_what_to_fix() -> None:
    from torch.utils.data import TensorDataset

    flat = TensorDataset(torch.zeros(4, 5), torch.zeros(4, 2))
    with pytest.raises(TypeError, match="uint8 images"):
        two_image_suite(Splits(flat, flat, flat), strength=1.0)
    with pytest.raises(ValueError, match="strength"):
        two_image_suite(_splits(), strength=1.5)
    with pytest.raises(ValueError, match="two_image_suite"):
        planted_suite(_splits(), strength=1.0, mechanism="two-images")


def test_difficulty_control_is_minus_the_partners_single_loss() -> None:
    single = np.array([[0.2, 0.5, 0.9], [0.4, 0.7, 0.7]])
    truth = GroundTruth(
        task_names=["x", "y", "z"], seeds=[0, 1], split="val", single=single,
        pair=np.full((2, 3, 3), np.nan), all_tasks=np.full((2, 3), np.nan),
    )  # fmt: skip
    a = difficulty_control(truth)
    expect = np.array([[np.nan, -0.3, -0.3], [-0.6, np.nan, -0.6], [-0.8, -0.8, np.nan]])
    np.testing.assert_allclose(a.values, expect)
    assert a.signal == "difficulty" and a.meta["split"] == "val"
    broken = GroundTruth(["x", "y"], [0], "val", np.array([[0.1, np.nan]]),
                         np.full((1, 2, 2), np.nan), np.full((1, 2), np.nan))  # fmt: skip
    with pytest.raises(ValueError, match="single-task loss for every task"):
        difficulty_control(broken)


def test_shipped_cifar10_two_image_suite_and_its_exact_null(cifar_root) -> None:
    from stgmtl.datasets import cifar10_planted_splits

    kw = {"mechanism": "two-images", "root": cifar_root, "test_limit": 200}
    suite = cifar10_planted_splits(strength=1.0, instance=3, **kw)
    null = cifar10_planted_splits(strength=1.0, instance=3, kind="null", **kw)
    base = cifar10_planted_splits(strength=0.0, kind="null", root=cifar_root, test_limit=200)
    assert suite.mechanism == "two-images" and len(suite.sides[1]) == 5
    assert null.kind == "null" and null.sides == (tuple(suite.task_names()), ())
    # the null is the two-image suite itself (same inputs and labels), not the colour suite
    assert torch.equal(null.train.images, suite.train.images)
    assert torch.equal(null.test.targets, suite.test.targets)
    assert data_fingerprint(null) == data_fingerprint(suite)
    assert data_fingerprint(null) != data_fingerprint(base)
    # the first side keeps its labels; every second-side label moved with its image
    first = [suite.task_names().index(t) for t in suite.sides[0]]
    assert torch.equal(suite.train.targets[:, first], base.train.targets[:, first])
    assert suite.replaced["train"][suite.sides[1][0]] == 1.0


def test_the_planted_preset_takes_the_mechanism(capsys, tmp_path) -> None:
    import argparse

    from stgmtl import cli
    from stgmtl.payoff_command import payoff_settings

    ns = argparse.Namespace(quick=False, suite="planted", strength=None, mechanism="two-images")
    st = payoff_settings(ns)
    assert st["mechanism"] == "two-images" and st["strength"] == 1.0
    assert payoff_settings(argparse.Namespace(quick=False, suite="planted"))["mechanism"] == (
        "label-noise"
    )
    try:
        code = cli.main(["payoff", "--mechanism", "two-images", "--out", str(tmp_path / "o")])
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 1 and "--mechanism" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_two_image_split_beats_one_model_at_the_budget_on_real_cifar10(tmp_path, cifar_root):
    """The known answer is real: on a small shipped instance (cnn 0.25, 4 epochs, 2 seeds) the
    planted grouping (a network per side at 1x) beats one model at 2x parameters on each seed."""
    from stgmtl.datasets import cifar10_planted_splits
    from stgmtl.models import model_factory
    from stgmtl.payoff.study import effect_by_side, planted_trial
    from stgmtl.payoff.tables import PayoffResult
    from stgmtl.specialise import TrainConfig

    suite = cifar10_planted_splits(
        strength=1.0, mechanism="two-images", root=cifar_root, test_limit=1000
    )
    recipe = TrainConfig(width=0.25, epochs=4, batch_size=256, lr=1e-3)
    trial = planted_trial(
        suite, model_factory("cnn"), recipe, tmp_path / "t", seeds=(0, 1), confirm_seeds=0,
        random_partitions=0, signals={"planted": suite.oracle_affinity()},
    )  # fmt: skip
    assert len(trial.effect) == 2 and min(trial.effect) > 0, trial.effect
    sides = effect_by_side(PayoffResult.load(tmp_path / "t" / "result"), suite)
    assert set(sides["side"]) == {"first", "second"} and sides.height == 4


def test_the_planted_flag_needs_something_moved_and_names_the_parameter() -> None:
    tiny = Splits(_suite(20, 1, "train"), _suite(20, 2, "val"), _suite(20, 3, "test"))
    assert not two_image_suite(tiny, strength=0.01).planted  # round(0.2) = 0 samples moved
    assert two_image_suite(tiny, strength=0.5).planted
    with pytest.raises(ValueError, match="^second"):
        two_image_suite(tiny, strength=1.0, second=["zz"])
    with pytest.raises(ValueError, match="^n_second"):
        two_image_suite(tiny, strength=1.0, n_second=4)


def test_cifar10_planted_splits_refuses_an_unknown_mechanism() -> None:
    from stgmtl.datasets import cifar10_planted_splits

    for kind in ("planted", "null"):  # before any data is read
        with pytest.raises(ValueError, match="mechanism: expected one of"):
            cifar10_planted_splits(kind=kind, mechanism="rotation", root="/nonexistent")


def _toy_truth_data() -> Splits:
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)

    def part(n: int) -> TensorDataset:
        x = torch.randn(n, 6, generator=g)
        y = torch.stack([(x[:, 0] > 0), (x[:, 1] > 0), (x[:, 0] + x[:, 2] > 0)], 1).float()
        return TensorDataset(x, y)

    return Splits(part(120), part(60), part(60))


def _toy_factory(num_tasks: int, width: float) -> torch.nn.Module:
    h = max(2, int(8 * width))
    return torch.nn.Sequential(
        torch.nn.Linear(6, h), torch.nn.ReLU(), torch.nn.Linear(h, num_tasks)
    )


@pytest.mark.slow
def test_the_harness_scores_the_difficulty_control_from_validation_losses(tmp_path) -> None:
    from stgmtl.payoff import run_payoff
    from stgmtl.payoff.tables import PayoffResult
    from stgmtl.specialise import TrainConfig

    recipe = TrainConfig(width=1.0, epochs=2, batch_size=32, lr=1e-2)
    res = run_payoff(
        _toy_truth_data(), _toy_factory, recipe, tmp_path / "o", seeds=(0, 1), truth="pairs",
        signals=["label"], ks=(1,), random_partitions=0, confirm_seeds=0, singles=True,
    )  # fmt: skip
    row = res.signal_scores.filter(res.signal_scores["signal"] == "difficulty").to_dicts()
    assert row and row[0]["control"] and np.isnan(row[0]["p_holm"])
    assert "difficulty" in res.settings["controls"]
    # its matrix is minus the mean single-task *validation* loss of the partner
    runs = res.runs.filter(res.runs["kind"] == "network")
    singles = res.systems.filter(res.systems["num_tasks"] == 1)
    val, test = {}, {}
    for system, task in zip(singles["system"], singles["tasks"], strict=True):
        t = json.loads(task)[0] if isinstance(task, str) else list(task)[0]
        r = runs.filter((runs["system"] == system) & (runs["task"] == t))
        val[t] = r.filter(r["split"] == "val")["loss"].mean()
        test[t] = r.filter(r["split"] == "test")["loss"].mean()
    names = res.task_names
    d = res.signals["difficulty"].values
    for j, src in enumerate(names):
        assert d[j, (j + 1) % 3] == pytest.approx(-val[src])
        assert d[j, (j + 1) % 3] != pytest.approx(-test[src])
    saved = PayoffResult.load(tmp_path / "o" / "result")
    assert "difficulty" in saved.signals
    with pytest.raises(ValueError, match="difficulty"):
        run_payoff(_toy_truth_data(), _toy_factory, recipe, tmp_path / "p",
                   signals=["label", "difficulty"], truth="pairs")  # fmt: skip
