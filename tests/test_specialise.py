"""Grouped training: weighted loss, ensembles, one-hot memberships, baselines, tiny runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torch.utils.data import TensorDataset

from stgmtl.datasets.suites import TaskSuite, cifar10_suite
from stgmtl.models import build_model, model_factory
from stgmtl.specialise import (
    METHODS,
    TrainConfig,
    compare_methods,
    count_parameters,
    ensemble_logits,
    group_width,
    membership_weighted_bce,
    predict_logits,
    random_groups,
    train_group_models,
    train_model,
    train_one_model,
)
from stgmtl.specialise.training import check_membership

TINY = TrainConfig(width=0.125, epochs=1, batch_size=32, seed=0)
CNN = model_factory("cnn")

pytestmark = pytest.mark.usefixtures("single_thread")


def _toy_suite(n: int = 64, t: int = 3, seed: int = 0) -> TaskSuite:
    """Planted tasks: task j is 'channel j is brighter than the image mean' (learnable)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    chan = images.float().mean((2, 3))
    targets = torch.stack([chan[:, j % 3] > chan.mean(1) for j in range(t)], 1).float()
    return TaskSuite(
        images,
        targets,
        [f"task{j}" for j in range(t)],
        sample_ids=np.arange(n),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )


def _bce_reference(z: np.ndarray, y: np.ndarray, w: np.ndarray, pw: np.ndarray) -> float:
    p = 1.0 / (1.0 + np.exp(-z))
    per = -(pw * y * np.log(p) + (1 - y) * np.log(1 - p))  # (B, T)
    return float((w * per.mean(0)).sum())


def test_membership_weighted_loss_matches_hand_reference() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4))
    y = (rng.random((6, 4)) < 0.4).astype(float)
    w = np.array([0.7, 0.0, 0.2, 0.1])
    pw = np.array([3.0, 1.0, 9.0, 0.5])
    got = membership_weighted_bce(
        torch.tensor(z), torch.tensor(y), torch.tensor(w), torch.tensor(pw)
    )
    assert got.item() == pytest.approx(_bce_reference(z, y, w, pw), rel=1e-10)
    got = membership_weighted_bce(torch.tensor(z), torch.tensor(y), torch.tensor(w))
    assert got.item() == pytest.approx(_bce_reference(z, y, w, np.ones(4)), rel=1e-10)


def test_weighted_ensemble_equals_weighted_sum() -> None:
    rng = np.random.default_rng(1)
    g = rng.normal(size=(3, 5, 4)).astype(np.float32)  # k=3 models, N=5, T=4
    w = rng.dirichlet(np.ones(3), size=4)  # (T, k)
    got = ensemble_logits(g, w, "weighted")
    ref = np.zeros((5, 4))
    for t in range(4):
        for c in range(3):
            ref[:, t] += w[t, c] * g[c, :, t]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    own = ensemble_logits(g, w, "own")
    for t in range(4):
        np.testing.assert_array_equal(own[:, t], g[w[t].argmax(), :, t])
    with pytest.raises(ValueError, match="mode: expected"):
        ensemble_logits(g, w, "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="disagree"):
        ensemble_logits(g, w.T, "weighted")


def test_one_hot_membership_predicts_with_the_group_model() -> None:
    suite = _toy_suite(n=40, t=4)
    w = np.eye(2)[[0, 1, 1, 0]]
    gm = train_group_models(CNN, suite, w, TINY, progress=False)
    weighted = gm.predict(suite, "weighted")
    own = gm.predict(suite, "own")
    np.testing.assert_allclose(weighted, own, rtol=1e-6, atol=1e-6)
    for t, c in enumerate([0, 1, 1, 0]):
        assert gm.models[c] is not None
        np.testing.assert_allclose(
            weighted[:, t], predict_logits(gm.models[c], suite)[:, t], rtol=1e-6, atol=1e-6
        )


def test_zero_weight_task_head_is_not_trained() -> None:
    suite = _toy_suite(n=64, t=2)
    model = train_model(CNN, suite, TINY, np.array([1.0, 0.0]), progress=False)
    torch.manual_seed(TINY.seed)
    init = build_model("cnn", 2, TINY.width)
    final, first = model.head[-1], init.head[-1]
    torch.testing.assert_close(final.weight[1], first.weight[1])  # no gradient, no Adam step
    assert not torch.allclose(final.weight[0], first.weight[0])


@pytest.mark.parametrize(("model", "scheduler"), [("cnn", "constant"), ("wide-cnn", "onecycle")])
def test_training_is_seeded_and_learns_a_planted_task(model: str, scheduler: str) -> None:
    suite = _toy_suite(n=256, t=3)
    cfg = replace(TINY, epochs=4, lr=3e-3, width=0.25, scheduler=scheduler)
    net = model_factory(model)
    a = predict_logits(train_model(net, suite, cfg, progress=False), suite)
    b = predict_logits(train_model(net, suite, cfg, progress=False), suite)
    np.testing.assert_array_equal(a, b)
    other = "constant" if scheduler == "onecycle" else "onecycle"
    c = predict_logits(
        train_model(net, suite, replace(cfg, scheduler=other), progress=False), suite
    )
    assert not np.allclose(a, c)  # the schedule is applied
    from sklearn.metrics import roc_auc_score

    auc = [roc_auc_score(suite.targets[:, t].numpy(), a[:, t]) for t in range(3)]
    assert min(auc) > 0.8, auc


def test_untrained_group_for_empty_column() -> None:
    suite = _toy_suite(n=32, t=2)
    gm = train_group_models(CNN, suite, np.array([[1.0, 0.0], [1.0, 0.0]]), TINY, progress=False)
    assert gm.models[1] is None and gm.n_groups == 2
    assert gm.num_parameters == count_parameters(gm.models[0])


def test_random_groups_keep_sizes_and_are_seeded() -> None:
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(4) * 0.1, size=30)
    r = random_groups(w, random_state=3)
    assert r.shape == (30, 4) and set(np.unique(r)) <= {0.0, 1.0} and (r.sum(1) == 1).all()
    np.testing.assert_array_equal(r.sum(0), np.bincount(w.argmax(1), minlength=4))
    np.testing.assert_array_equal(r, random_groups(w, random_state=3))
    assert not np.array_equal(r, random_groups(w, random_state=4))


def test_budget_widths() -> None:
    cfg = replace(TINY, width=1.0)
    assert group_width(CNN, cfg, 10, 4, "width") == 1.0
    assert group_width(CNN, cfg, 10, 1, "params") == 1.0
    w = group_width(CNN, cfg, 10, 4, "params")
    one = count_parameters(build_model("cnn", 10, 1.0))
    assert 0.8 * one < 4 * count_parameters(build_model("cnn", 10, w)) <= one
    with pytest.raises(ValueError, match="budget: expected one of"):
        group_width(CNN, cfg, 10, 4, "flops")  # type: ignore[arg-type]


def test_bad_membership_and_config() -> None:
    with pytest.raises(ValueError, match="shape"):
        check_membership(np.ones((3, 2)) / 2, 4)
    with pytest.raises(ValueError, match="summing to 1"):
        check_membership(np.ones((3, 2)), 3)
    with pytest.raises(ValueError, match="non-negative"):
        check_membership(np.array([[1.5, -0.5]]), 1)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="pos_weight"):
        TrainConfig(pos_weight="balanced")
    with pytest.raises(ValueError, match="scheduler"):
        TrainConfig(scheduler="cosine")


def test_one_model_baseline_is_k1() -> None:
    suite = _toy_suite(n=32, t=3)
    gm = train_one_model(CNN, suite, TINY, progress=False)
    assert gm.n_groups == 1 and gm.membership.shape == (3, 1)


def test_any_torch_dataset_trains_like_the_fast_suite_loader() -> None:
    """Grouped training takes any map-style dataset, not only a TaskSuite."""
    suite = _toy_suite(n=64, t=3)
    x, y, _ = suite.batch(torch.arange(64))
    plain = TensorDataset(x, y)  # items (inputs, targets): indices are added
    cfg = replace(TINY, epochs=2)
    a = predict_logits(train_model(CNN, plain, cfg, progress=False), plain)
    b = predict_logits(train_model(CNN, plain, cfg, progress=False), plain)
    np.testing.assert_array_equal(a, b)  # seeded data order and initialisation
    gm = train_one_model(CNN, plain, cfg, progress=False)
    assert gm.task_names == ["task_0", "task_1", "task_2"]
    np.testing.assert_array_equal(gm.predict(plain), a)
    with pytest.raises(TypeError, match="data: expected a map-style torch Dataset"):
        train_model(CNN, object(), cfg, num_tasks=3, progress=False)


def test_compare_methods_on_real_cifar10(cifar_root: Path) -> None:
    train = cifar10_suite("train", root=cifar_root, limit=400)
    test = cifar10_suite("test", root=cifar_root, limit=300)
    w = np.eye(3)[np.arange(10) % 3]
    with pytest.warns(DeprecationWarning, match="compare_methods is deprecated"):
        table = compare_methods(CNN, train, test, w, replace(TINY, seed=2), progress=False)
    assert table.height == 4 * 10 and set(table["method"]) == set(METHODS)
    assert {"f1", "balanced_accuracy", "roc_auc", "accuracy", "parameters"} <= set(table.columns)
    assert table["seed"].unique().to_list() == [2]
    params = dict(table.group_by("method").agg(pl.col("parameters").first()).iter_rows())
    assert (
        params["grouped"] <= params["one_model"] and params["random_groups"] <= params["one_model"]
    )
