"""Uncertainty weighting (Kendall et al. 2018): the loss, its gradient, its fixed point, and the
loss-balanced one model as a baseline of the payoff harness (keys, tables, the reference)."""

from __future__ import annotations

import copy
import json

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from stgmtl.loop import Hook, Step, train_loop
from stgmtl.payoff import PayoffResult, Splits, recommend, run_payoff
from stgmtl.payoff.confirm import confirm, confirmation_specs
from stgmtl.payoff.plan import ONE_MODEL_VARIANTS, one_model_spec, plan_payoff
from stgmtl.payoff.recommendation import choose_reference
from stgmtl.payoff.runs import RunContext, RunResult, RunSpec, run_key
from stgmtl.payoff.settings import PayoffSettings
from stgmtl.payoff.signal_runs import recording_key
from stgmtl.payoff.tables import runs_table, system_id, system_kind
from stgmtl.payoff_command import _one_model_variants
from stgmtl.specialise import UncertaintyWeighting
from stgmtl.specialise.data import make_loader
from stgmtl.specialise.training import TrainConfig, predict_logits, train_model

pytestmark = pytest.mark.usefixtures("single_thread")


# ------------------------------------------------------------------------------ helpers
def _data(n: int, d: int, t: int, seed: int, noise: float = 0.5) -> TensorDataset:
    """Task j is 'feature j % d plus noise > 0' on Gaussian inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.stack([x[:, j % d] + noise * torch.randn(n, generator=g) > 0 for j in range(t)], 1)
    return TensorDataset(x, y.float())


class _Losses(Hook):
    """Reads the back-propagated loss of every step (changes nothing)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def before_step(self, step: Step) -> None:
        self.losses.append(float(step.loss.detach()))


def _bce_by_hand(z: np.ndarray, y: np.ndarray, pw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample BCE-with-logits with positive weights, and its derivative in the logit."""
    sig = 1.0 / (1.0 + np.exp(-z))
    loss = -(pw * y * np.log(sig) + (1.0 - y) * np.log(1.0 - sig))
    dz = sig * (pw * y + 1.0 - y) - pw * y
    return loss, dz


# ------------------------------------------------------------------- the loss and its step
def test_loss_and_one_step_equal_a_hand_computation() -> None:
    """sum_t w_t (exp(-s_t) L_t + s_t): loss, model gradient and log-variance gradient by hand
    (numpy, float64) against one SGD step of the training loop, membership weights and
    pos_weight included."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    data = _data(8, 3, 2, seed=1)
    weighting = UncertaintyWeighting(2)
    s0 = np.array([0.3, -0.5])
    w = np.array([1.0, 0.4])
    pw = np.array([1.0, 3.0])
    with torch.no_grad():
        weighting.log_variances.copy_(torch.tensor(s0))
    W0 = model.weight.detach().double().numpy().copy()
    b0 = model.bias.detach().double().numpy().copy()
    lr = 0.1
    opt = torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=lr)
    hook = _Losses()
    train_loop(model, make_loader(data, 8, shuffle=False, seed=0), epochs=1, optimizer=opt,
               pos_weight=pw, task_weights=w, loss_weighting=weighting, hooks=[hook],
               progress=False)  # fmt: skip

    x, y = data.tensors[0].double().numpy(), data.tensors[1].double().numpy()
    z = x @ W0.T + b0
    per_sample, dz = _bce_by_hand(z, y, pw)
    L = per_sample.mean(0)
    loss = float((w * (np.exp(-s0) * L + s0)).sum())
    gz = dz * (w * np.exp(-s0)) / len(x)  # d loss / d z
    W1, b1 = W0 - lr * gz.T @ x, b0 - lr * gz.sum(0)
    s1 = s0 - lr * w * (1.0 - np.exp(-s0) * L)
    assert hook.losses == [pytest.approx(loss, rel=1e-6)]
    np.testing.assert_allclose(model.weight.detach().double().numpy(), W1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.bias.detach().double().numpy(), b1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weighting.log_variances.detach().numpy(), s1, rtol=1e-5)
    # the plain weighted sum differs from it (the reference can disagree)
    assert abs(float((w * L).sum()) - loss) > 0.1


def test_log_variances_frozen_at_zero_train_exactly_like_plain_training() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    twin = copy.deepcopy(model)
    data = _data(96, 4, 3, seed=2)
    w = [1.0, 0.7, 0.2]
    common = dict(epochs=2, pos_weight=[1.0, 2.0, 0.5], task_weights=w, progress=False)
    hook_a, hook_b = _Losses(), _Losses()
    train_loop(model, make_loader(data, 32, shuffle=True, seed=4),
               optimizer=torch.optim.Adam(model.parameters(), lr=1e-2), hooks=[hook_a],
               **common)  # fmt: skip
    frozen = UncertaintyWeighting(3).requires_grad_(False)
    train_loop(twin, make_loader(data, 32, shuffle=True, seed=4),
               optimizer=torch.optim.Adam(twin.parameters(), lr=1e-2), hooks=[hook_b],
               loss_weighting=frozen, **common)  # fmt: skip
    assert hook_a.losses == hook_b.losses  # bit for bit
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(frozen.log_variances, torch.zeros(3))


class _Scaled(nn.Module):
    """Plants a loss scale: the weighting sees ``scale_t * L_t``."""

    def __init__(self, inner: nn.Module, scale: list[float]) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("scale", torch.tensor(scale))

    def forward(self, per: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        return self.inner(per * self.scale, w)


def test_log_variances_go_to_the_log_of_each_tasks_loss_and_rebalance_a_100x_scale() -> None:
    # two copies of one task; the second's loss is planted at 100 times the first's
    base = _data(512, 4, 1, seed=5, noise=1.0)
    x, y = base.tensors
    data = TensorDataset(x, torch.cat([y, y], 1))
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    uw = UncertaintyWeighting(2)
    opt = torch.optim.Adam([{"params": model.parameters()}, {"params": uw.parameters()}], lr=0.05)
    # Adam's second moment remembers the first steps' large gradient of the 100x task: slow
    train_loop(model, make_loader(data, 64, shuffle=True, seed=0), epochs=120, optimizer=opt,
               loss_weighting=_Scaled(uw, [1.0, 100.0]), progress=False)  # fmt: skip
    with torch.no_grad():
        z = model(x)
        L = nn.functional.binary_cross_entropy_with_logits(z, y.expand(-1, 2), reduction="none")
        L = L.mean(0).double().numpy() * np.array([1.0, 100.0])
    s = uw.log_variances.detach().double().numpy()
    np.testing.assert_allclose(s, np.log(L), atol=0.1)  # s_t -> log L_t
    assert s[1] - s[0] == pytest.approx(np.log(100.0) + np.log(L[1] / L[0] / 100.0), abs=0.2)
    assert 4.0 < s[1] - s[0] < 5.2  # the planted log(100) = 4.6
    # rebalanced: each task's loss enters with about the same weight exp(-s_t) L_t = 1
    np.testing.assert_allclose(np.exp(-s) * L, 1.0, atol=0.1)


def test_train_model_learns_log_variances_beside_the_model_and_resumes() -> None:
    data = _data(256, 4, 3, seed=7, noise=0.8)
    cfg = TrainConfig(width=1.0, epochs=8, batch_size=32, lr=0.05, pos_weight=None,
                      loss_weighting="uncertainty")  # fmt: skip
    factory = _mlp
    extras: dict[str, np.ndarray] = {}
    model = train_model(factory, data, cfg, progress=False, extras=extras)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == sum(p.numel() for p in _mlp(3, 1.0).parameters())  # not in the model
    s = extras["log_variances"]
    z = torch.from_numpy(predict_logits(model, data))
    L = nn.functional.binary_cross_entropy_with_logits(z, data.tensors[1], reduction="none")
    np.testing.assert_allclose(s, np.log(L.mean(0).double().numpy()), atol=0.3)
    plain = train_model(factory, data, TrainConfig(**{**vars(cfg), "loss_weighting": "none"}),
                        progress=False, extras=(ex := {}))  # fmt: skip
    assert ex == {} and not torch.equal(plain[0].weight, model[0].weight)


def test_a_run_with_loss_weighting_resumes_as_the_uninterrupted_run(tmp_path) -> None:
    data = _data(64, 4, 2, seed=8)

    def run(epochs: int, ckpt) -> tuple[nn.Module, UncertaintyWeighting]:
        torch.manual_seed(0)
        model, uw = nn.Linear(4, 2), UncertaintyWeighting(2)
        opt = torch.optim.Adam([*model.parameters(), *uw.parameters()], lr=0.05)
        # the same batches every epoch (a DataLoader has no set_epoch to resume its shuffling)
        train_loop(model, make_loader(data, 16, shuffle=False, seed=0), epochs=epochs,
                   optimizer=opt, loss_weighting=uw, checkpoint_path=ckpt,
                   progress=False)  # fmt: skip
        return model, uw

    whole, uw_whole = run(2, None)
    run(1, tmp_path / "c.pt")
    resumed, uw_resumed = run(2, tmp_path / "c.pt")  # continues from epoch 1
    assert torch.equal(uw_whole.log_variances, uw_resumed.log_variances)
    assert torch.equal(whole.weight, resumed.weight)
    with pytest.raises(ValueError, match="with a loss weighting, this run has none"):
        torch.manual_seed(0)
        m = nn.Linear(4, 2)
        train_loop(m, make_loader(data, 16, shuffle=True, seed=0), epochs=3,
                   optimizer=torch.optim.Adam(m.parameters()), checkpoint_path=tmp_path / "c.pt",
                   progress=False)  # fmt: skip


def _mlp(num_tasks: int, width: float) -> nn.Module:
    h = max(1, round(8 * width))
    return nn.Sequential(nn.Linear(4, h), nn.ReLU(), nn.Linear(h, num_tasks))


# ---------------------------------------------------------------------------- bad values
def test_bad_values_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="loss_weighting: expected one of 'none', 'uncertainty'"):
        TrainConfig(loss_weighting="kendall")
    with pytest.raises(ValueError, match="loss_weighting: expected one of '', 'uncertainty'"):
        RunSpec("network", ("a", "b"), loss_weighting="gradnorm")
    with pytest.raises(ValueError, match="one_model_variants: expected distinct variants "
                       "including 'plain'"):  # fmt: skip
        PayoffSettings(one_model_variants=("uncertainty",))
    with pytest.raises(ValueError, match="one_model_variants: expected one of 'plain'"):
        PayoffSettings(one_model_variants=("plain", "gradnorm"))
    with pytest.raises(TypeError, match="one_model_variants: expected a sequence"):
        PayoffSettings(one_model_variants="uncertainty")
    with pytest.raises(ValueError, match="per_task: expected 3 per-task losses"):
        UncertaintyWeighting(3)(torch.ones(2))
    with pytest.raises(ValueError, match="num_tasks"):
        UncertaintyWeighting(0)
    data = _data(16, 4, 2, seed=0)
    m = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="loss_weighting: expected None with a custom loss_fn"):
        train_loop(m, make_loader(data, 8, shuffle=False, seed=0), epochs=1,
                   optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
                   loss_fn=lambda z, y: z.sum(), loss_weighting=UncertaintyWeighting(2),
                   progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="--one-model: expected comma-separated variants"):
        _one_model_variants("plain,kendall")
    assert _one_model_variants("uncertainty") == ("plain", "uncertainty")
    assert _one_model_variants(None) is None
    with pytest.raises(ValueError, match="recipe: expected loss_weighting='none'"):
        run_payoff(_splits(), _bottleneck, TrainConfig(loss_weighting="uncertainty"), None,
                   progress=False, log=None)  # fmt: skip


# ------------------------------------------------------------------------- cache keys, ids
#: keys computed on main before loss weighting existed (RunSpec and TrainConfig defaults)
_OLD_KEYS = {
    "default": [
        "c36ff97ffcfc7926ed45ddcda371094e597df2fd00cde485fb59d0a9ddacee68",
        "05802d15dc173fe6328155ddef42130b80952595a30afd61d3137842a38b1205",
        "13fac04191e6621e8ad5e62c554cc699653e681b8813d3ca787a327e9384aa9c",
        "06b32a6d5dfb09e30f3886ac7605db44a00e63ce0d1d5bed9b12b8db1a6b810f",
        "fc958039613d698c67c41b701e88b4f9a8fffec164cb6217701dfb45be3ad421",
        "f07e2a2a25ac2aef9d184b2441f7cfb39a46499652d67ef70f0be9f2a7c65b8b",
    ],
    "other": [
        "d854425026009ebb60efd5e2086cf7665562ee74b0ec332c19ecc79e6821ddef",
        "be359122725e28079da944f2fd829c0fa19fd77b7c6fd98c18bf8caad7c0a93c",
        "edcad2b31b4f704ca1ee75b8385969ad93b8acbf73a957a8d0cc52d106c5b905",
        "6a1b3a5c59511204fc1dd4bced43d32fd7497669454be1480a601ba863b8f675",
        "0e2b13908563432b77992b7601dc9996052e6c52ccaa282224346110945b2ee4",
        "b90d2472003c57204e42e9169b87af510bfca50bf6d1dbcd78484507adf5a56f",
    ],
}
N4 = ("t0", "t1", "t2", "t3")


def _key_specs() -> list[RunSpec]:
    halves = (N4[:2], N4[2:])
    soft = ((0.9, 0.1), (0.8, 0.2), (0.1, 0.9), (0.3, 0.7))
    return [
        RunSpec("network", N4, seed=1),
        RunSpec("network", N4, budget=2.0),
        RunSpec("separate", N4, halves, seed=0),
        RunSpec("branched", N4, halves, (), 0, 1.0, "early"),
        RunSpec("separate", N4, halves, soft),
    ]


def test_cache_keys_without_loss_weighting_are_unchanged() -> None:
    recipes = {
        "default": TrainConfig(),
        "other": TrainConfig(width=0.5, epochs=3, lr=4e-3, scheduler="onecycle", pos_weight=None),
    }
    for name, recipe in recipes.items():
        keys = [run_key(s, recipe, "f", "d") for s in _key_specs()]
        keys.append(recording_key(("datamap", "confusion"), 0, "rec",
                                  RunContext(None, None, recipe, "c", "d", "f")))  # fmt: skip
        assert keys == _OLD_KEYS[name]
    # the variant is another run; the spec's and the recipe's weighting are both in the key
    recipe = TrainConfig()
    plain, uw = RunSpec("network", N4), RunSpec("network", N4, loss_weighting="uncertainty")
    k_uw = run_key(uw, recipe, "f", "d")
    assert k_uw != run_key(plain, recipe, "f", "d")
    weighted = TrainConfig(loss_weighting="uncertainty")
    assert run_key(plain, weighted, "f", "d") not in (k_uw, run_key(plain, recipe, "f", "d"))
    assert "loss_weighting" not in recipe.key_fields() and weighted.key_fields()[
        "loss_weighting"
    ] == ("uncertainty")


def test_the_variant_has_its_own_system_id_and_kind() -> None:
    uw = one_model_spec(N4, seed=0, budget=2.0, variant="uncertainty")
    assert uw.loss_weighting == "uncertainty" and uw.budget == 2.0
    assert system_kind(uw) == "network-uncertainty"
    assert system_id(uw).startswith("net-uncertainty:") and system_id(uw).endswith("@2x")
    assert system_id(one_model_spec(N4)) == system_id(RunSpec("network", N4))
    assert "uncertainty-weighted at 2x" in uw.describe()
    assert system_id(RunSpec("network", ("a",), loss_weighting="uncertainty")) == (
        "net-uncertainty:a"
    )
    assert ONE_MODEL_VARIANTS == ("plain", "uncertainty")


def test_the_plan_adds_the_variant_at_every_budget_on_every_seed() -> None:
    kw = dict(truth="none", max_pairs=None, singles=False, signals=[], signal_seeds=[0],
              record_separately=True, ks=[2], architectures=["network"], random_partitions=0,
              n_sources=0, budgets=[1.0, 2.0])  # fmt: skip
    plain = plan_payoff(list(N4), seeds=[0, 1], **kw)
    both = plan_payoff(list(N4), seeds=[0, 1], one_model_variants=("plain", "uncertainty"), **kw)
    extra = [s for s in both.truth if s not in plain.truth]
    assert [s for s in both.truth if s in plain.truth] == plain.truth  # the plain plan, in order
    assert sorted((s.seed, s.budget) for s in extra) == [(0, 1.0), (0, 2.0), (1, 1.0), (1, 2.0)]
    assert {s.loss_weighting for s in extra} == {"uncertainty"}


# ----------------------------------------------------- the reference is chosen on validation
def _result(spec: RunSpec, val: list[float], test: list[float], params: int) -> RunResult:
    n = len(spec.tasks)
    m = pl.DataFrame(
        {
            "split": ["val"] * n + ["test"] * n,
            "task": list(spec.tasks) * 2,
            "loss": val + test,
            "bce": val + test,
            "roc_auc": [0.8] * (2 * n),
            "positives": [1] * (2 * n),
        }
    )
    return RunResult(spec, f"{spec}", m, 1.0, 1.0, params, 10)


def _fabricated(names: tuple[str, str], seeds: list[int]) -> list[RunResult]:
    """Validation prefers the uncertainty-weighted one model at 2x; test prefers the plain 2x."""
    losses = {  # (variant, budget): (val, test), per task
        ("plain", 1.0): (0.50, 0.50),
        ("plain", 2.0): (0.45, 0.40),
        ("uncertainty", 1.0): (0.48, 0.60),
        ("uncertainty", 2.0): (0.42, 0.55),
    }
    out = []
    for s in seeds:
        for (variant, b), (v, t) in losses.items():
            spec = one_model_spec(names, s, b, variant)
            out.append(_result(spec, [v, v + 0.01], [t, t + 0.01], int(100 * b)))
        for task in names:  # single-task networks: the candidates
            out.append(_result(RunSpec("network", (task,), seed=s), [0.30], [0.30], 60))
    return out


def _payoff_result(results: list[RunResult], names: tuple[str, ...], budget: float) -> PayoffResult:
    runs, systems = runs_table(results)
    empty = pl.DataFrame()
    return PayoffResult(list(names), {"budget": budget, "column": "loss"}, runs, systems, empty,
                        empty, empty)  # fmt: skip


def test_the_reference_is_the_best_one_model_on_validation_never_on_test() -> None:
    names = ("a", "b")
    result = _payoff_result(_fabricated(names, [0, 1, 2]), names, 2.0)
    uw2 = system_id(one_model_spec(names, budget=2.0, variant="uncertainty"))
    plain2 = system_id(one_model_spec(names, budget=2.0))
    assert choose_reference(result, 2.0, "loss") == (uw2, 2.0)  # test would pick plain2
    assert choose_reference(result, 1.0, "loss") == (
        system_id(one_model_spec(names, budget=1.0, variant="uncertainty")),
        1.0,
    )
    rec = recommend(result)
    assert rec.reference["system"] == uw2 and rec.reference["kind"] == "network-uncertainty"
    assert rec.reference["validation"][uw2] == pytest.approx(0.425)
    assert rec.reference["validation"][plain2] == pytest.approx(0.455)
    assert "with uncertainty loss weighting at 2x" in rec.message
    # the candidate (the two single-task networks) is measured against the chosen reference
    assert rec.has_candidate and rec.val_gain == pytest.approx(1 - (0.30 / 0.42 + 0.30 / 0.43) / 2)
    # the fresh-seed confirmation retrains the chosen reference, loss weighting included
    specs = {system_id(r.spec): r.spec for r in _fabricated(names, [0])}
    fresh = [3, 4, 5]
    conf = confirmation_specs(rec, specs, fresh)
    refs = [s for s in conf if len(s.tasks) == 2]
    assert {(s.seed, s.loss_weighting, s.budget) for s in refs} == {
        (s, "uncertainty", 2.0) for s in fresh
    }
    confirm(rec, _fabricated(names, fresh), fresh)
    # per seed: the single-task test losses over the uncertainty-weighted 2x one's (0.55, 0.56)
    expect = (0.30 / 0.55 + 0.30 / 0.56) / 2
    assert rec.confirmation["loss"]["relative_loss"] == pytest.approx([expect] * 3)
    # without the variant the plain 2x one model is the reference, and no kind is recorded
    plain_only = [r for r in _fabricated(names, [0, 1, 2]) if not r.spec.loss_weighting]
    rec_plain = recommend(_payoff_result(plain_only, names, 2.0))
    assert rec_plain.reference == {"system": plain2, "budget": 2.0, "parameters": 200}
    assert json.loads(json.dumps(rec.to_dict()))["reference"]["system"] == uw2


# --------------------------------------------------------------------- the harness, end to end
DIMS = 8


def _bottleneck(num_tasks: int, width: float) -> nn.Module:
    h = max(1, round(32 * width))
    return nn.Sequential(nn.Linear(DIMS, h), nn.ReLU(), nn.Linear(h, 2), nn.Linear(2, num_tasks))


def _splits() -> Splits:
    def part(n: int, seed: int) -> TensorDataset:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, DIMS, generator=g)
        y = torch.stack([x[:, j] + 0.5 * torch.randn(n, generator=g) > 0 for j in range(4)], 1)
        return TensorDataset(x, y.float())

    return Splits(part(256, 0), part(256, 1), part(512, 2))


def test_the_harness_trains_the_variant_beside_the_plain_one_model(tmp_path) -> None:
    recipe = TrainConfig(width=1.0, epochs=3, batch_size=64, lr=0.02, pos_weight=None)
    kw = dict(truth="none", seeds=(0, 1), ks=(2,), signals={}, random_partitions=1,
              confirm_seeds=0, n_bootstrap=10, n_permutations=10, progress=False, log=None,
              cache_dir=str(tmp_path / "cache"))  # fmt: skip
    plain = run_payoff(_splits(), _bottleneck, recipe, None, **kw)
    both = run_payoff(_splits(), _bottleneck, recipe, tmp_path / "out",
                      one_model_variants=("plain", "uncertainty"), **kw)  # fmt: skip
    assert (
        "one_model_variants" not in plain.settings
        and "loss_weighting" not in (plain.settings["recipe"])
    )
    assert both.settings["one_model_variants"] == ["plain", "uncertainty"]
    # the plain runs are the same runs (same keys: read from the cache), the variant is new
    runs = both.runs.unique(subset=["key"])
    fresh = runs.filter(~pl.col("cached"))
    assert set(fresh["system"].to_list()) == {
        system_id(one_model_spec(plain.task_names, budget=b, variant="uncertainty"))
        for b in (1.0, 2.0)
    }
    assert sorted(fresh["seed"].to_list()) == [0, 0, 1, 1]  # every budget on every seed
    kinds = both.systems.filter(pl.col("kind") == "network-uncertainty")
    assert sorted(kinds["budget"].to_list()) == [1.0, 2.0]
    # same parameters as the plain one model at each budget (the log-variances are not in it)
    sizes = dict(both.systems.select("system", "parameters").iter_rows())
    for b in (1.0, 2.0):
        uw = system_id(one_model_spec(plain.task_names, budget=b, variant="uncertainty"))
        assert sizes[uw] == sizes[system_id(one_model_spec(plain.task_names, budget=b))]
    # the plain tables are unchanged; the variant has its own rows, against the plain one model
    old = plain.summary.sort("source", "k", "architecture", "split")
    new = both.summary.filter(pl.col("source") != "one model (uncertainty)")
    assert new.sort("source", "k", "architecture", "split").equals(old)
    rows = both.summary.filter(pl.col("source") == "one model (uncertainty)")
    assert set(rows["architecture"].to_list()) == {
        "network-uncertainty@1x",
        "network-uncertainty@2x",
    }
    # gain_vs_budget of the variant: against the plain one model at the same budget, by hand
    look = {(s, e, sp, t): v for s, e, sp, t, v in
            both.runs.select("system", "seed", "split", "task", "loss").iter_rows()}  # fmt: skip
    uw2 = system_id(one_model_spec(plain.task_names, budget=2.0, variant="uncertainty"))
    p2 = system_id(one_model_spec(plain.task_names, budget=2.0))
    by_hand = np.mean([
        np.mean([(look[(p2, e, "test", t)] - look[(uw2, e, "test", t)]) / look[(p2, e, "test", t)]
                 for t in plain.task_names]) for e in (0, 1)
    ])  # fmt: skip
    got = rows.filter(
        (pl.col("split") == "test") & (pl.col("architecture") == "network-uncertainty@2x")
    )
    assert got["gain_vs_budget"][0] == pytest.approx(by_hand)
    # the plain one model at 2x is its own budget reference (it was compared with 1x before)
    plain2 = both.summary.filter(
        (pl.col("source") == "one model") & (pl.col("architecture") == "network@2x")
    )
    assert plain2.height == 2 and (plain2["gain_vs_budget"] == 0.0).all()
    assert (plain2["gain_vs_one"] != 0.0).all()
    # the reference: the one model (any variant, within the budget) with the lowest val loss
    val = both.runs.filter(pl.col("split") == "val")
    ones = both.systems.filter(
        (pl.col("num_tasks") == 4) & pl.col("kind").is_in(["network", "network-uncertainty"])
    )["system"].to_list()
    assert len(ones) == 4  # plain and uncertainty-weighted, at 1x and 2x
    means = val.filter(pl.col("system").is_in(ones)).group_by("system").agg(pl.col("loss").mean())
    best = min(means.iter_rows(), key=lambda r: r[1])[0]
    assert both.recommendation["reference"]["system"] == best
    assert set(both.recommendation["reference"]["validation"]) == set(ones)
    # the learned log-variances are in the run's manifest
    key = fresh["key"][0]
    manifest = json.loads((tmp_path / "cache" / "runs" / key / "manifest.json").read_text())
    lv = manifest["meta"]["log_variances"]
    assert len(lv) == 1 and set(lv[0]) == set(plain.task_names)
    assert all(v != 0.0 for v in lv[0].values())
    assert PayoffResult.load(tmp_path / "out" / "result").recommendation == both.recommendation


def test_the_command_line_offers_the_variant(capsys) -> None:
    from stgmtl import cli

    with pytest.raises(SystemExit):
        cli.main(["payoff", "--help"])
    out = capsys.readouterr().out
    assert "--one-model" in out and "uncertainty" in out
    code = cli.main(["payoff", "--one-model", "plain,kendall", "--out", "unused", "-q"])
    assert code == 1 and "--one-model: expected" in capsys.readouterr().err


def test_a_run_spec_names_the_plain_recipe_one_way() -> None:
    from stgmtl.payoff.runs import RunSpec

    with pytest.raises(ValueError, match="loss_weighting"):
        RunSpec("network", ("a", "b"), loss_weighting="none")  # "" is the recipe's own
    assert RunSpec("network", ("a", "b"), loss_weighting="uncertainty").loss_weighting
