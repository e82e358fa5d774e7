"""The sound verdict: asserted budgets, complete pairing, choose-then-confirm, null rate."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from stgmtl.models import model_factory
from stgmtl.payoff.architectures import (
    ARCHITECTURES,
    BudgetError,
    build_members,
    reference_parameters,
)
from stgmtl.payoff.confirm import confirm, confirmation_specs, fresh_seeds
from stgmtl.payoff.null import simulate_null
from stgmtl.payoff.recommendation import Recommendation, choose
from stgmtl.payoff.runs import RunResult, RunSpec, run_key
from stgmtl.payoff.settings import PayoffSettings
from stgmtl.payoff.splits import TaskColumns
from stgmtl.payoff.stats import paired_confirmation
from stgmtl.payoff.tables import system_id, system_kind
from stgmtl.specialise.training import TrainConfig, count_parameters, train_model

pytestmark = pytest.mark.usefixtures("single_thread")
NAMES = tuple(f"t{i}" for i in range(6))


# ------------------------------------------------------------------------------ budgets
@pytest.mark.parametrize("name", ["cnn", "wide-cnn"])
@pytest.mark.parametrize(
    ("arch", "groups"),
    [
        ("separate", [["t0", "t1", "t2", "t3"], ["t4", "t5"]]),
        ("separate", [["t0"], ["t1"], ["t2"], ["t3", "t4", "t5"]]),
        ("network", [["t0", "t1", "t2"], ["t3", "t4", "t5"]]),
        ("separate-soft", [["t0", "t1", "t2"], ["t3", "t4", "t5"]]),
        ("branched", [["t0", "t1", "t2"], ["t3", "t4", "t5"]]),
        ("branched-early", [["t0", "t1", "t2"], ["t3", "t4", "t5"]]),
        ("branched-early", [["t0"], ["t1"], ["t2"], ["t3"], ["t4", "t5"]]),
    ],
)
def test_every_grouped_run_is_within_its_budget_band(name, arch, groups) -> None:
    factory = model_factory(name)
    a = ARCHITECTURES[arch]
    k = len(groups)
    memb: tuple[tuple[float, ...], ...] = ()
    if a.soft:
        w = np.full((6, k), 0.2 / (k - 1))
        for c, g in enumerate(groups):
            w[[NAMES.index(t) for t in g], c] = 0.8
        memb = tuple(tuple(r) for r in w)
    spec = RunSpec(a.kind, NAMES, tuple(map(tuple, groups)), memb, 0, a.budget(k), a.split)
    members, combine, meta = build_members(spec, factory, 0.25)
    total = sum(count_parameters(m.model()) for m in members)
    target = a.budget(k) * reference_parameters(factory, 6, 0.25)
    assert 0.95 * target <= total <= target
    if arch in ("separate", "network"):  # hard groups carry only their own heads
        assert [len(m.columns) for m in members] == [len(g) for g in groups]
        assert sorted(j for m in members for j in m.columns) == list(range(6))
        assert np.array_equal(combine.sum(1), np.ones(6))
    assert meta["budget"] == a.budget(k)


@pytest.mark.parametrize("arch", ["branched", "branched-early"])
@pytest.mark.parametrize("k", [10, 20])
def test_many_branches_of_cifar100s_model_stay_in_the_band(arch: str, k: int) -> None:
    # a common branch width alone left 10 / 20 branches of wide-cnn at 94 % / 88 % of the budget
    names = tuple(f"c{i}" for i in range(100))
    groups = tuple(tuple(names[i::k]) for i in range(k))
    a = ARCHITECTURES[arch]
    spec = RunSpec(a.kind, names, groups, (), 0, 1.0, a.split)
    factory = model_factory("wide-cnn")
    members, _, meta = build_members(spec, factory, 0.5)
    total = count_parameters(members[0].model())
    ref = reference_parameters(factory, 100, 0.5)
    assert 0.95 * ref <= total <= ref
    assert meta["branch_width"] <= meta["branch_width_max"]
    # the split is the factory's: an early split moves the last conv block into each branch
    model = members[0].model()
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.branches[0].modules())
    assert convs == (1 if arch == "branched-early" else 0)


def _key_before_splits(spec: RunSpec, recipe: TrainConfig) -> str:
    """The cache key as computed before splits existed: the spec's dict without the field (and
    without the loss weighting of spec and recipe, added later still)."""
    later = ("split", "loss_weighting")
    body = {k: v for k, v in dataclasses.asdict(spec).items() if k not in later}
    recipe_fields = {
        k: v
        for k, v in dataclasses.asdict(recipe).items()
        if k not in ("seed", "device", "loss_weighting")
    }
    payload = {"format": "stgmtl.PayoffRun", "version": 2, "spec": body,
               "recipe": recipe_fields, "factory": "f", "data": "d"}  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def test_split_point_is_part_of_the_system_and_old_cache_keys_stay_valid() -> None:
    groups = (("t0", "t1", "t2"), ("t3", "t4", "t5"))
    late = RunSpec("branched", NAMES, groups, (), 0)
    early = RunSpec("branched", NAMES, groups, (), 0, 1.0, "early")
    assert system_id(late) != system_id(early) and "early" in system_id(early)
    assert system_kind(early) == "branched-early" and system_kind(late) == "branched"
    assert "branched-early k=2" in early.describe()
    recipe = TrainConfig()
    # runs that train the same networks as before keep their keys (caches stay valid) ...
    for spec in (RunSpec("separate", NAMES, groups, (), 0), RunSpec("network", NAMES, seed=1)):
        assert run_key(spec, recipe, "f", "d") == _key_before_splits(spec, recipe)
    # ... branched runs, whose widths are now per branch, do not (they are retrained)
    keys = {run_key(s, recipe, "f", "d") for s in (late, early)}
    assert len(keys) == 2 and _key_before_splits(late, recipe) not in keys
    with pytest.raises(ValueError, match="split"):
        RunSpec("separate", NAMES, groups, (), 0, 1.0, "early")


def test_an_early_split_needs_a_factory_that_can_split() -> None:
    def plain(num_tasks: int, width: float) -> torch.nn.Module:
        return torch.nn.Linear(3, num_tasks)

    spec = RunSpec("branched", NAMES, (("t0", "t1", "t2"), ("t3", "t4", "t5")), (), 0, 1.0, "early")
    with pytest.raises(TypeError, match="with_split"):
        build_members(spec, plain, 0.25)


def test_one_model_at_twice_the_parameters_is_in_its_band() -> None:
    factory = model_factory("wide-cnn")
    spec = RunSpec("network", NAMES, budget=2.0)
    members, _, meta = build_members(spec, factory, 0.25)
    total = count_parameters(members[0].model())
    target = 2 * reference_parameters(factory, 6, 0.25)
    assert 0.95 * target <= total <= target and meta["width"] > 0.25


def _coarse(num_tasks: int, width: float) -> nn.Module:
    return nn.Sequential(
        nn.Linear(8, max(1, round(2 * width))), nn.Linear(max(1, round(2 * width)), num_tasks)
    )


def test_a_budget_the_width_cannot_meet_fails_before_training() -> None:
    spec = RunSpec("separate", NAMES, (NAMES[:3], NAMES[3:]), seed=0)
    with pytest.raises(BudgetError, match=r"outside \[95%, 100%\].*finer width knob"):
        build_members(spec, _coarse, 1.0)


def test_budget_shows_in_system_ids_and_settings_choose_budgets() -> None:
    assert system_id(RunSpec("network", NAMES, budget=2.0)).endswith("@2x")
    assert system_id(RunSpec("network", NAMES)) != system_id(RunSpec("network", NAMES, budget=2.0))
    st = PayoffSettings(ks=(2, 3), architectures=("network", "separate"))
    assert st.budgets() == [1.0, 2.0, 3.0] and st.resolved_budget() == 3.0
    with pytest.raises(ValueError, match="confirm_seeds: expected 0"):
        PayoffSettings(confirm_seeds=1)
    with pytest.raises(ValueError, match="architectures: expected one of"):
        PayoffSettings(architectures=("bogus",))
    with pytest.raises(ValueError, match="seeds: expected distinct seeds"):
        PayoffSettings(seeds=(1, 1))


# ------------------------------------------------------------------------------ pairing
class _Net(nn.Module):
    """A small MLP with dropout that records its input batches and dropout masks."""

    def __init__(self, num_tasks: int, width: float) -> None:
        super().__init__()
        h = max(1, round(16 * width))
        self.body = nn.Sequential(nn.Linear(5, h), nn.ReLU(), nn.Dropout(0.5), nn.Linear(h, h))
        self.head = nn.Linear(h, num_tasks)
        self.seen: list[torch.Tensor] = []
        self.masks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.rng: list[torch.Tensor] = []
        self.body[2].register_forward_pre_hook(
            lambda _m, _i: self.rng.append(torch.get_rng_state())
        )
        # the mask is observable where the input is not zero: (kept, observable)
        self.body[2].register_forward_hook(
            lambda _m, inp, out: self.masks.append((out != 0, inp[0] != 0))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.head(torch.relu(self.body(x)))


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    return TensorDataset(x, (torch.rand(96, 6, generator=g) > 0.5).float())


def _initial(tasks: tuple[str, ...], seed: int) -> dict[str, torch.Tensor]:
    cfg = TrainConfig(width=1.0, epochs=1, batch_size=32, lr=1e-3, pos_weight=None, seed=seed)
    from stgmtl.specialise.training import seed_task_heads

    torch.manual_seed(cfg.seed)
    model = _Net(len(tasks), cfg.width)
    seed_task_heads(model, tasks, cfg.seed)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_equal_shape_networks_share_every_initial_weight_and_head_rows_follow_the_task() -> None:
    a, b = _initial(("t0", "t1"), 3), _initial(("t2", "t0"), 3)
    for name in a:
        if name.startswith("head"):
            continue
        assert torch.equal(a[name], b[name]), name  # the whole trunk, every parameter
    # task t0's row is the same whether it is first or second, with t1 or with t2
    assert torch.equal(a["head.weight"][0], b["head.weight"][1])
    assert torch.equal(a["head.bias"][0], b["head.bias"][1])
    assert not torch.equal(a["head.weight"][1], b["head.weight"][0])  # t1 != t2
    assert not torch.equal(a["body.0.weight"], _initial(("t0", "t1"), 4)["body.0.weight"])


def test_every_network_of_a_seed_sees_the_same_batches_and_dropout_masks() -> None:
    data = _data()
    cfg = TrainConfig(width=1.0, epochs=2, batch_size=32, lr=1e-3, pos_weight=None, seed=5)
    models = []
    for cols in ([0, 1], [2, 3, 4], [5]):
        view = TaskColumns(data, cols, [NAMES[c] for c in cols])
        models.append(train_model(_Net, view, cfg, progress=False, task_names=view.task_names))
    first = models[0]
    assert len(first.seen) == 6 and len(first.masks) == 6
    for other in models[1:]:
        assert all(torch.equal(x, y) for x, y in zip(first.seen, other.seen, strict=True))
        assert all(torch.equal(x, y) for x, y in zip(first.rng, other.rng, strict=True))
        for (ka, oa), (kb, ob) in zip(first.masks, other.masks, strict=True):
            both = oa & ob
            assert both.sum() > 0 and torch.equal(ka[both], kb[both])
    # another seed: other batches and masks
    other = train_model(_Net, TaskColumns(data, [0, 1], ["t0", "t1"]),
                        TrainConfig(**{**vars(cfg), "seed": 6}), progress=False)  # fmt: skip
    assert not all(torch.equal(x, y) for x, y in zip(first.seen, other.seen, strict=True))
    assert not torch.equal(first.rng[0], other.rng[0])


# ------------------------------------------------------------------------ choose, confirm
def test_choose_finds_the_planted_system_and_keeps_the_cheapest_equal_level() -> None:
    rng = np.random.default_rng(0)
    val = 1.0 + 0.01 * rng.standard_normal((4, 3, 5))
    val[2] -= 0.2  # system 2 is 20 % better on every task and seed
    choice = choose(val, np.array([1.0, 1.0, 1.0, 2.0]), 3.0)
    assert choice.chosen == [2] and choice.level == 1.0
    assert np.all(choice.server == 2) and choice.objective == pytest.approx(val[2].mean())
    assert choice.per_seed == pytest.approx(val[2].mean(1))


def _result(spec: RunSpec, losses: list[float], aucs: list[float]) -> RunResult:
    n = len(spec.tasks)
    m = pl.DataFrame(
        {
            "split": ["test"] * n,
            "task": list(spec.tasks),
            "loss": losses,
            "bce": losses,
            "roc_auc": aucs,
            "positives": [1] * n,
        }
    )
    return RunResult(spec, f"{spec}", m, 1.0, 1.0, 10, 10)


def test_confirm_applies_the_paired_test_to_fresh_seed_losses() -> None:
    names = ("a", "b")
    one = RunSpec("network", names, budget=2.0)
    pa, pb = RunSpec("network", ("a",)), RunSpec("network", ("b",))
    rec = Recommendation(
        one_model_best=True, verdict="unconfirmed",
        reference={"system": system_id(one), "budget": 2.0, "parameters": 10},
        systems=[{"system": system_id(pa), "kind": "network", "k": 1, "tasks": ["a"], "cost": 1.0,
                  "budget": 1.0},
                 {"system": system_id(pb), "kind": "network", "k": 1, "tasks": ["b"], "cost": 1.0,
                  "budget": 1.0}],
        groups=[["a"], ["b"]], k=2, budget=2.0, cost=2.0, val_gain=0.1, val_gain_se=0.01,
        test_gain=0.1, per_budget=pl.DataFrame(),
    )  # fmt: skip
    seeds = fresh_seeds([0, 1, 2], 5)
    assert seeds == [3, 4, 5, 6, 7]
    specs = confirmation_specs(rec, {system_id(s): s for s in (one, pa, pb)}, seeds)
    assert len(specs) == 15 and {s.seed for s in specs} == set(seeds)
    rng = np.random.default_rng(1)
    results, cand, ref = [], [], []
    for s in seeds:
        la, lb, r = rng.uniform(0.3, 0.4, 3)
        ra = rng.uniform(0.4, 0.5)
        results += [
            _result(RunSpec("network", ("a",), seed=s), [la], [0.9]),
            _result(RunSpec("network", ("b",), seed=s), [lb], [0.8]),
            _result(RunSpec("network", names, seed=s, budget=2.0), [ra, r + 0.1], [0.7, 0.7]),
        ]
        cand.append((la / ra + lb / (r + 0.1)) / 2)  # per seed: mean relative loss over tasks
        ref.append(1.0)
    confirm(rec, results, seeds)
    x = 1.0 - np.array(cand)  # the one-sample t-test of the relative gain, by hand
    t = x.mean() / (x.std(ddof=1) / np.sqrt(5))
    from scipy import stats

    assert rec.confirmation["loss"]["t"] == pytest.approx(t)
    assert rec.confirmation["loss"]["p_value"] == pytest.approx(stats.t.sf(t, 4))
    expect = paired_confirmation(np.array(cand), np.array(ref))
    assert rec.confirmation["loss"]["p_value"] == pytest.approx(expect.p_value)
    assert rec.confirmation["loss"]["df"] == 4
    # AUC is co-primary: constant +0.15 on every seed, so it passes; the verdict needs both
    assert rec.confirmation["roc_auc"]["mean_diff"] == pytest.approx(0.85 - 0.7)
    assert rec.verdict == ("grouping" if expect.accepted else "one model")
    assert rec.message.startswith("Candidate (chosen on validation)")


# ------------------------------------------------------------------------- the null rate
def test_the_verdict_false_positive_rate_on_null_tables_is_at_most_alpha() -> None:
    r = simulate_null(systems=12, tasks=6, seeds=3, confirm_seeds=5, n_sim=1500, serves=0.5,
                      random_state=0)  # fmt: skip
    # the confirmation's rate is consistent with <= 5 % (its interval reaches below 5 %) ...
    assert r.lo <= 0.05 and r.rate <= 0.06
    # ... while choosing on validation alone is far above it: the test can tell them apart
    assert r.validation_lo > 0.15
    assert r.candidate_rate > 0.5 and "Clopper-Pearson" in r.describe()


# --------------------------------------------------------------------------- the truth
def test_truth_decides_planted_pairs_only_with_five_seeds() -> None:
    from stgmtl.payoff.truth import GroundTruth

    rng = np.random.default_rng(0)
    t, names = 5, [f"t{i}" for i in range(5)]

    def truth(s: int) -> GroundTruth:
        single = 1.0 + 0.01 * rng.standard_normal((s, t))
        gain = np.zeros((t, t))
        gain[1, 0], gain[3, 2] = 0.3, -0.3  # t1 helps t0; t3 harms t2
        pair = single[:, None, :] * (1 - gain[None] + 0.01 * rng.standard_normal((s, t, t)))
        for k in range(s):
            np.fill_diagonal(pair[k], np.nan)
        return GroundTruth(names, list(range(s)), "test", single, pair, np.full((s, t), np.nan))

    five = truth(5)
    tests = five.pair_tests()
    assert tests.enough_seeds
    assert tests.decided[1, 0] == 1 and tests.decided[3, 2] == -1
    assert np.count_nonzero(tests.decided) == 2
    rel = five.reliability()
    assert rel["seeds"] == 5 and np.isfinite(rel["mean_reliability"])
    assert not truth(4).decided().any()


def test_a_column_view_records_signals_with_its_own_tasks() -> None:
    """Signals recorded on a task subset (e.g. ``cifar100_splits(superclasses=...)``): the
    view's loader says its own dataset (size, task names), and the recording sees its columns."""
    from stgmtl.payoff.signal_runs import record_signals
    from stgmtl.record.affinity import dataset_task_names

    data = _data()
    view = TaskColumns(data, [4, 1, 2], ["t4", "t1", "t2"])
    loader = view.loader(32, shuffle=True, seed=0)
    assert loader.dataset is view and len(loader.dataset) == 96
    assert dataset_task_names(loader) == ["t4", "t1", "t2"]
    cfg = TrainConfig(width=1.0, epochs=2, batch_size=32, lr=1e-3, pos_weight=None, seed=1)
    sig = record_signals(view, lambda t, w: nn.Sequential(nn.Linear(5, 8), nn.ReLU(),
                                                          nn.Linear(8, t)),
                         cfg, ["datamap", "confusion"], progress=False)  # fmt: skip
    assert set(sig) == {"datamap", "confusion"}
    for aff in sig.values():
        assert list(aff.task_names) == ["t4", "t1", "t2"] and aff.values.shape == (3, 3)
