"""A run of the payoff harness: what it trains (:class:`RunSpec`), its cache key and its folder.

A *run* trains one system on a task suite and measures it per task on the validation and the
test split. Run kinds:

``"network"``
    One network on the listed tasks (a single-task model, a pair, or one model for all tasks),
    at the recipe's width for ``budget = 1`` or at the width that gives ``budget`` times its
    parameters (the budget-matched one model).
``"separate"``
    ``k`` networks, one per group, at the common width that fills the budget: with hard groups
    each carries only its own tasks' heads; with soft ``membership`` each carries all heads and
    is trained with membership-weighted losses (STG-MTL).
``"branched"``
    One shared trunk and one branch per group at one model's parameters
    (:mod:`~stgmtl.specialise.branched`).

What each kind builds, and the asserted budget band, is in
:mod:`~stgmtl.payoff.architectures`. Every run uses the recipe (a
:class:`~stgmtl.specialise.training.TrainConfig`) with the spec's seed: runs of the same seed are
paired (the same batches in the same order, the same dropout stream, the same initial weights for
networks of equal shape, and each task's head row seeded by its name (not in a branched model
with several branches, whose heads sit in the branches); see
:func:`~stgmtl.specialise.training.train_model`).

A spec's ``loss_weighting`` overrides the recipe's (:class:`~stgmtl.specialise.training.
TrainConfig`): ``RunSpec("network", tasks, budget=b, loss_weighting="uncertainty")`` is the one
model at budget ``b`` trained with uncertainty weighting, the loss-balancing baseline.

Caching: a run's key (:func:`run_key`) is the sha256 of its spec, the recipe (without seed and
device), the factory's identity (:func:`factory_identity`) and the data's fingerprint
(:func:`~stgmtl.payoff.splits.data_fingerprint`). A finished run is a folder
``<cache>/runs/<key>/`` holding the per-task metrics (parquet), the trained weights
(checksummed checkpoint) and a manifest with checksums (:func:`save_run`, :func:`load_run`).
Training is in :mod:`~stgmtl.payoff.worker`, scheduling in
:mod:`~stgmtl.payoff.execution`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from stgmtl._checks import check_choice, check_float, check_int, fail
from stgmtl._io import (
    atomic_dir,
    load_checkpoint,
    read_manifest,
    read_parquet,
    save_checkpoint,
    verified_file,
    write_manifest,
)
from stgmtl.payoff.splits import Splits
from stgmtl.specialise.training import LOSS_WEIGHTINGS, TrainConfig

__all__ = [
    "RUN_KINDS",
    "RunContext",
    "RunResult",
    "RunSpec",
    "data_for_worker",
    "factory_identity",
    "is_cached",
    "load_run",
    "load_weights",
    "run_dir",
    "run_key",
    "save_run",
]

RUN_KINDS = ("network", "separate", "branched")
_FORMAT = "stgmtl.PayoffRun"
#: Version 2 manifests carry their own checksum; version 1 (written before) still loads.
_FORMAT_VERSION = 2
_READ = {_FORMAT: (1, 2)}
_UNSIGNED = {(_FORMAT, 1)}
#: Part of every run's cache key: changes only when what a run computes changes (not with the
#: manifest format), so that a cache stays valid.
_KEY_VERSION = 2  # 2: paired seeding (dropout, head rows, group networks), own heads, budgets
_BRANCHED_BUILD = 2  # 2: per-branch widths (specialise.branch_widths_for_budget)


# --------------------------------------------------------------------------------------------
# specs and keys


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence | tuple) or not value:
        raise fail(name, "a non-empty sequence of task names", value, error=TypeError)
    out = tuple(str(v) for v in value)
    if len(set(out)) != len(out):
        raise fail(name, "distinct task names", value)
    return out


@dataclass(frozen=True)
class RunSpec:
    """What one run trains (see the module docstring for the kinds).

    Attributes
    ----------
    kind : {"network", "separate", "branched"}
    tasks : tuple of str
        The tasks the run trains and is measured on (for grouped kinds: all tasks).
    groups : tuple of tuple of str
        Grouped kinds: the hard groups, a partition of ``tasks``. Empty for ``"network"``.
    membership : tuple of tuple of float
        ``"separate"`` only, optional: soft memberships ``(len(tasks), len(groups))``, rows in
        ``tasks`` order summing to 1 (default: one-hot from ``groups``).
    seed : int
        Seeds initialisation, data order and dropout.
    budget : float
        Parameters of everything the run trains, in units of one model for all of ``tasks`` at
        the recipe's width (asserted within :data:`~stgmtl.payoff.architectures.BUDGET_BAND`
        for budgeted runs; a ``"network"`` with budget 1 is simply that model).
    split : str
        ``"branched"`` only: where the factory's trunk ends (``factory.with_split(split)``;
        :data:`stgmtl.models.SPLITS`); empty for the factory's own split.
    loss_weighting : str
        Empty: the recipe's ``loss_weighting``; else one of
        :data:`~stgmtl.specialise.training.LOSS_WEIGHTINGS`, replacing the recipe's for this
        run (``"uncertainty"``: the loss-balancing baseline).
    """

    kind: str
    tasks: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...] = ()
    membership: tuple[tuple[float, ...], ...] = ()
    seed: int = 0
    budget: float = 1.0
    split: str = ""
    loss_weighting: str = ""

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, RUN_KINDS)
        # "" is the recipe's (plain: the harness takes only plain recipes); "none" would be a
        # second name of it with another cache key, so it is refused
        check_choice("loss_weighting", self.loss_weighting,
                     ("", *(w for w in LOSS_WEIGHTINGS if w != "none")))  # fmt: skip
        if self.split and self.kind != "branched":
            raise fail("split", "a split point only for kind 'branched'", self.split)
        object.__setattr__(self, "tasks", _names("tasks", self.tasks))
        check_int("seed", self.seed, low=0)
        object.__setattr__(
            self, "budget", check_float("budget", self.budget, low=0.0, low_open=True)
        )
        groups = tuple(_names("groups", g) for g in self.groups)
        object.__setattr__(self, "groups", groups)
        if self.kind == "network":
            if groups or self.membership:
                raise fail("groups", "no groups or membership for kind 'network'", groups)
            return
        flat = sorted(t for g in groups for t in g)
        if not groups or flat != sorted(self.tasks):
            raise fail("groups", "non-empty groups that partition tasks", groups)
        if self.membership:
            if self.kind != "separate":
                raise fail("membership", "soft memberships only for kind 'separate'", self.kind)
            w = np.asarray(self.membership, dtype=np.float64)
            ok = w.shape == (len(self.tasks), len(groups)) and np.isfinite(w).all()
            if not ok or (w < 0).any() or not np.allclose(w.sum(1), 1.0, atol=1e-6):
                raise fail(
                    "membership",
                    f"rows summing to 1, shape ({len(self.tasks)}, {len(groups)})",
                    w.shape,
                )
            object.__setattr__(self, "membership", tuple(tuple(float(v) for v in row) for row in w))

    @property
    def k(self) -> int:
        """Number of groups (1 for a network)."""
        return max(1, len(self.groups))

    def membership_matrix(self) -> np.ndarray:
        """``(len(tasks), k)`` float64: the soft memberships, or one-hot from the groups."""
        if self.membership:
            return np.asarray(self.membership, dtype=np.float64)
        w = np.zeros((len(self.tasks), self.k))
        if self.kind == "network":
            w[:, 0] = 1.0
            return w
        pos = {t: i for i, t in enumerate(self.tasks)}
        for c, g in enumerate(self.groups):
            w[[pos[t] for t in g], c] = 1.0
        return w

    def describe(self) -> str:
        """A short label: ``network[a+b] seed 0``, ``branched k=3 seed 1``,
        ``network[6 tasks] uncertainty-weighted at 2x seed 0``, ..."""
        at = f" at {self.budget:g}x" if self.budget != 1.0 else ""
        lw = f" {self.loss_weighting}-weighted" if self.loss_weighting else ""
        if self.kind == "network":
            body = "+".join(self.tasks) if len(self.tasks) <= 3 else f"{len(self.tasks)} tasks"
            return f"network[{body}]{lw}{at} seed {self.seed}"
        soft = " soft" if self.membership else ""
        split = f"-{self.split}" if self.split else ""
        return f"{self.kind}{split}{soft}{lw} k={self.k}{at} seed {self.seed}"


def factory_identity(factory: Any) -> str:
    """A stable text identity of a model factory, for run caches.

    ``factory.cache_id`` when it has one (:class:`stgmtl.models.CNNFactory` does); for a
    ``functools.partial`` the function's module and name with the arguments; for a module-level
    function or class its module and name. Anything else (a lambda, a local function) has no
    stable identity: pass ``factory_id=`` to the harness.
    """
    cid = getattr(factory, "cache_id", None)
    if isinstance(cid, str) and cid:
        return cid
    if isinstance(factory, functools.partial):
        kwargs = sorted(factory.keywords.items())
        return f"{factory_identity(factory.func)}{factory.args!r}{kwargs!r}"
    name = getattr(factory, "__qualname__", "")
    module = getattr(factory, "__module__", "")
    if name and module and "<" not in name:
        return f"{module}.{name}"
    raise fail(
        "factory",
        "a factory with a stable identity (a module-level function or class, a "
        "functools.partial of one, or an object with a cache_id attribute); or pass factory_id=",
        factory,
        error=TypeError,
    )


def run_key(spec: RunSpec, recipe: TrainConfig, factory_id: str, fingerprint: str) -> str:
    """The cache key of a run: sha256 of spec, recipe (no seed, device), factory and data.

    Fields added after caches existed enter the key only when set (a spec's ``split`` and
    ``loss_weighting``, the recipe's ``loss_weighting`` when not ``"none"``), so that the runs
    that train what they trained before keep their keys.
    """
    fields = asdict(spec)
    if not fields["split"]:
        del fields["split"]  # the factory's own split: the key of runs made before splits existed
    if not fields["loss_weighting"]:
        del fields["loss_weighting"]  # the recipe's: its key_fields say which
    if spec.kind == "branched":
        # per-branch widths (build 2) train other networks than the common width did
        fields["build"] = _BRANCHED_BUILD
    body = {
        "format": _FORMAT,
        "version": _KEY_VERSION,
        "spec": fields,
        "recipe": recipe.key_fields(),
        "factory": factory_id,
        "data": fingerprint,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class RunContext:
    """Everything a worker needs besides the spec (picklable when data and factory are).

    Attributes
    ----------
    data : Splits or callable
        The splits, or a zero-argument callable returning them (loaded once per process).
    factory : callable
        ``factory(num_tasks, width) -> nn.Module``; a
        :class:`~stgmtl.specialise.branched.TrunkBranchFactory` for ``"branched"`` runs.
    recipe : TrainConfig
        Training of every run (its ``seed`` is replaced by the spec's).
    cache_dir : str
        Folder of the run cache.
    fingerprint : str
        :func:`data_fingerprint` of the data.
    factory_id : str
        :func:`factory_identity` of the factory.
    threads : int, optional
        torch threads inside a run (restored afterwards).
    eval_batch_size : int
        Batch size of the evaluation passes.
    """

    data: Any
    factory: Any
    recipe: TrainConfig
    cache_dir: str
    fingerprint: str
    factory_id: str
    threads: int | None = None
    eval_batch_size: int = 1000


@dataclass
class RunResult:
    """A finished run.

    Attributes
    ----------
    spec : RunSpec
    key : str
    metrics : polars.DataFrame
        One row per (split, task): ``split`` ("val" / "test"), ``task``, ``loss`` (the training
        objective: BCE with the recipe's ``pos_weight``), ``bce`` (plain BCE), ``roc_auc``,
        ``positives``.
    train_seconds, eval_seconds : float
        Wall times when the run was trained (stored; not this call's time for a cached run).
    parameters, macs : int
        Trainable parameters and multiply-adds per input of everything the run trained.
    cached : bool
        True when this call found the run finished and trained nothing.
    """

    spec: RunSpec
    key: str
    metrics: pl.DataFrame
    train_seconds: float
    eval_seconds: float
    parameters: int
    macs: int
    cached: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# the worker

_DATA: dict[str, Splits] = {}


def data_for_worker(ctx: RunContext) -> Splits:
    """The context's splits: as given, or loaded once per process from its callable."""
    if isinstance(ctx.data, Splits):
        return ctx.data
    if ctx.fingerprint not in _DATA:
        data = ctx.data()
        if not isinstance(data, Splits):
            raise fail(
                "data", "a Splits or a callable returning one", type(data).__name__, error=TypeError
            )
        _DATA.clear()  # one suite per process at a time
        _DATA[ctx.fingerprint] = data
    return _DATA[ctx.fingerprint]


def run_dir(ctx: RunContext, key: str) -> Path:
    return Path(ctx.cache_dir) / "runs" / key


def is_cached(spec: RunSpec, ctx: RunContext) -> bool:
    """Whether a finished run of ``spec`` is in the cache (its manifest exists)."""
    key = run_key(spec, ctx.recipe, ctx.factory_id, ctx.fingerprint)
    return (run_dir(ctx, key) / "manifest.json").is_file()


def load_run(ctx: RunContext, spec: RunSpec, key: str) -> RunResult | None:
    folder = run_dir(ctx, key)
    if not (folder / "manifest.json").is_file():
        return None
    manifest = read_manifest(folder, what="payoff run", formats=_READ, unsigned=_UNSIGNED)
    if manifest.get("key") != key:
        raise ValueError(f"path: {folder} holds run {manifest.get('key')!r}, expected {key!r}")
    metrics = read_parquet(verified_file(folder, manifest, "metrics"))
    verified_file(folder, manifest, "model")
    return RunResult(
        spec,
        key,
        metrics,
        float(manifest["train_seconds"]),
        float(manifest["eval_seconds"]),
        int(manifest["parameters"]),
        int(manifest["macs"]),
        cached=True,
        meta=dict(manifest.get("meta", {})),
    )


def save_run(ctx: RunContext, result: RunResult, models: list[nn.Module]) -> None:
    with atomic_dir(run_dir(ctx, result.key), what="payoff run") as tmp:
        result.metrics.write_parquet(tmp / "metrics.parquet")
        save_checkpoint(
            {
                "format": f"{_FORMAT}.model",
                "models": [{k: v.cpu() for k, v in m.state_dict().items()} for m in models],
            },
            tmp / "model.pt",
        )
        manifest = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "key": result.key,
            "spec": asdict(result.spec),
            "recipe": ctx.recipe.key_fields(),
            "factory": ctx.factory_id,
            "data": ctx.fingerprint,
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "parameters": result.parameters,
            "macs": result.macs,
            "meta": result.meta,
        }
        write_manifest(tmp, manifest, {"metrics": "metrics.parquet", "model": "model.pt"})


def load_weights(ctx: RunContext, key: str) -> list[dict[str, torch.Tensor]]:
    """The state dicts a finished run saved (one per trained network)."""
    folder = run_dir(ctx, key)
    manifest = read_manifest(folder, what="payoff run", formats=_READ, unsigned=_UNSIGNED)
    state = load_checkpoint(verified_file(folder, manifest, "model"))
    return list(state["models"])
