"""Independent training runs for the payoff harness: specs, one worker function, a cache.

A *run* trains one system on a task suite and measures it per task on the validation and the
test split. It is described by a :class:`RunSpec` (what is trained, on which tasks, with which
seed) and executed by :func:`execute_run` with a :class:`RunContext` (the data, the model factory,
the recipe, the cache folder). Run kinds:

``"network"``
    One network ``factory(len(tasks), width)`` on the listed tasks (a single-task model, a
    pair, a group's own full-width network, or one model for all tasks).
``"separate"``
    STG-MTL's ``k`` membership-weighted networks on all listed tasks, each at the width at
    which the ``k`` together have the parameters of one model
    (:func:`~stgmtl.specialise.baselines.width_for_budget`); predicted by the
    membership-weighted logit sum. Hard groups unless ``membership`` is given.
``"branched"``
    One shared trunk and one branch per group at one model's parameters
    (:mod:`~stgmtl.specialise.branched`).

Every run uses ``recipe`` (a :class:`~stgmtl.specialise.training.TrainConfig`) with the spec's
seed, which seeds the initialisation and the data order: runs of the same seed are paired (same
batches in the same order; for networks built by the same factory, the same initial weights of
every layer before the task head).

Caching: a run's key is the sha256 of its spec, the recipe (without seed and device), the
factory's identity and the data's fingerprint (:func:`data_fingerprint`). A finished run is a
folder ``<cache>/runs/<key>/`` holding the per-task metrics (parquet), the trained weights
(checksummed checkpoint) and a manifest with checksums; :func:`execute_run` returns it without
training when it is there and verifies. An interrupted run resumes from its per-epoch
checkpoints under ``<cache>/partial/<key>/``.

Runs are independent, so :func:`run_all` hands them to any ``concurrent.futures``-style
executor (an object with ``submit(fn, *args)`` returning futures with ``result()``): a
``ProcessPoolExecutor``, Dask's ``client.get_executor()``, Ray's or submitit's executors. Its
default runs them one by one in this process. Pass the data as a zero-argument callable
returning :class:`Splits` (for example ``functools.partial`` of a suite builder) to have remote
workers load it themselves instead of receiving it pickled with every run.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn
from tqdm.auto import tqdm

from stgmtl._checks import check_choice, check_int, fail
from stgmtl._io import (
    atomic_dir,
    load_checkpoint,
    read_manifest,
    read_parquet,
    save_checkpoint,
    verified_file,
    write_manifest,
)
from stgmtl.loop import task_losses
from stgmtl.specialise.baselines import width_for_budget
from stgmtl.specialise.branched import branch_width_for_budget, build_branched, count_macs
from stgmtl.specialise.data import make_loader, pos_weight_of, targets_of, task_names_of
from stgmtl.specialise.metrics import task_metrics
from stgmtl.specialise.training import (
    ModelFactory,
    TrainConfig,
    count_parameters,
    ensemble_logits,
    predict_logits,
    train_model,
)

__all__ = [
    "RUN_KINDS",
    "RunContext",
    "RunResult",
    "RunSpec",
    "Splits",
    "TaskColumns",
    "data_fingerprint",
    "data_for_worker",
    "estimate_seconds",
    "execute_run",
    "factory_identity",
    "is_cached",
    "load_weights",
    "run_all",
    "run_key",
]

RUN_KINDS = ("network", "separate", "branched")
_FORMAT = "stgmtl.PayoffRun"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Splits:
    """Train, validation and test data of one task suite (same tasks, in the same order).

    Each is a map-style torch dataset or an object with ``loader(batch_size, *, shuffle,
    seed)`` (see :mod:`stgmtl.specialise.data`). Models train on ``train`` only; ``val`` chooses
    (groupings, budgets, softness) and ``test`` reports.
    """

    train: Any
    val: Any
    test: Any

    def task_names(self) -> list[str]:
        """The suite's task names (checked equal on the three splits)."""
        names = [
            task_names_of(d, int(targets_of(d).shape[1])) for d in (self.train, self.val, self.test)
        ]
        if not names[0] == names[1] == names[2]:
            raise fail("splits", "train, val and test with the same tasks", [n[:3] for n in names])
        return names[0]


def _tensor_digest(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())


def data_fingerprint(splits: Splits) -> str:
    """sha256 identity of the three splits, for run caches.

    Hashes, per split, the targets, the task names, the length and, where present, the
    ``images`` tensor, ``sample_ids`` and the ``name`` / ``split`` / ``augment`` / ``seed``
    attributes (as :class:`stgmtl.datasets.TaskSuite` has them). Two datasets whose inputs differ
    only in ways these do not show get the same fingerprint: pass ``cache_id=`` to the harness
    then.
    """
    h = hashlib.sha256()
    for name, d in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        y = targets_of(d)
        h.update(f"{name}:{len(y)}:".encode())
        h.update(json.dumps(task_names_of(d, int(y.shape[1]))).encode())
        _tensor_digest(h, y)
        for attr in ("images", "sample_ids"):
            _tensor_digest(h, getattr(d, attr, None))
        extra = {a: getattr(d, a) for a in ("name", "split", "augment", "seed") if hasattr(d, a)}
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


class _ColumnLoader:
    """A loader whose batches keep only some target columns (len and set_epoch pass through)."""

    def __init__(self, inner: Any, columns: torch.Tensor) -> None:
        self.inner, self.columns = inner, columns

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.inner, "set_epoch", None)):
            self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor, Any]]:
        for x, y, idx in self.inner:
            yield x, y.index_select(-1, self.columns), idx


class TaskColumns:
    """A view of a dataset with only some of its tasks (target columns), in the given order.

    Works for anything :func:`stgmtl.specialise.data.make_loader` takes; the view has
    ``loader()``, ``targets`` and ``task_names``, so it is itself such data.
    """

    def __init__(self, data: Any, columns: Sequence[int], task_names: Sequence[str]) -> None:
        self.data = data
        self.columns = torch.as_tensor(list(columns), dtype=torch.long)
        self.targets = targets_of(data).index_select(1, self.columns)
        self.task_names = list(task_names)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def loader(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> _ColumnLoader:
        return _ColumnLoader(
            make_loader(self.data, batch_size, shuffle=shuffle, seed=seed), self.columns
        )


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
        Seeds initialisation and data order.
    """

    kind: str
    tasks: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...] = ()
    membership: tuple[tuple[float, ...], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, RUN_KINDS)
        object.__setattr__(self, "tasks", _names("tasks", self.tasks))
        check_int("seed", self.seed, low=0)
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
        """A short label: ``network[a+b] seed 0``, ``branched k=3 seed 1``, ..."""
        if self.kind == "network":
            body = "+".join(self.tasks) if len(self.tasks) <= 3 else f"{len(self.tasks)} tasks"
            return f"network[{body}] seed {self.seed}"
        soft = " soft" if self.membership else ""
        return f"{self.kind}{soft} k={self.k} seed {self.seed}"


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


def _recipe_fields(recipe: TrainConfig) -> dict[str, Any]:
    out = asdict(recipe)
    out.pop("seed")
    out.pop("device")
    return out


def run_key(spec: RunSpec, recipe: TrainConfig, factory_id: str, fingerprint: str) -> str:
    """The cache key of a run: sha256 of spec, recipe (no seed, device), factory and data."""
    body = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "spec": asdict(spec),
        "recipe": _recipe_fields(recipe),
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


def _run_dir(ctx: RunContext, key: str) -> Path:
    return Path(ctx.cache_dir) / "runs" / key


def is_cached(spec: RunSpec, ctx: RunContext) -> bool:
    """Whether a finished run of ``spec`` is in the cache (its manifest exists)."""
    key = run_key(spec, ctx.recipe, ctx.factory_id, ctx.fingerprint)
    return (_run_dir(ctx, key) / "manifest.json").is_file()


def _load_cached(ctx: RunContext, spec: RunSpec, key: str) -> RunResult | None:
    folder = _run_dir(ctx, key)
    if not (folder / "manifest.json").is_file():
        return None
    manifest = read_manifest(folder, what="payoff run", formats={_FORMAT: (_FORMAT_VERSION,)})
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


def _pos_weight(recipe: TrainConfig, targets: torch.Tensor) -> torch.Tensor | None:
    if recipe.pos_weight is None:
        return None
    if recipe.pos_weight == "auto":
        return pos_weight_of(targets)
    return torch.full((targets.shape[1],), float(recipe.pos_weight))


def _branched_factory(factory: Any, groups: list[list[int]], bw: float) -> ModelFactory:
    def build(num_tasks: int, width: float) -> nn.Module:
        return build_branched(factory, groups, width, bw)

    return build


def _train(
    spec: RunSpec, data: Splits, ctx: RunContext, cfg: TrainConfig, partial: Path
) -> tuple[list[nn.Module], np.ndarray, dict[str, Any]]:
    """Train the run's model(s); returns them, the membership used to predict, and meta."""
    names = data.task_names()
    cols = [names.index(t) for t in spec.tasks]
    train = TaskColumns(data.train, cols, spec.tasks)
    t = len(spec.tasks)
    if spec.kind == "network":
        model = train_model(
            ctx.factory,
            train,
            cfg,
            num_tasks=t,
            progress=False,
            checkpoint_path=partial / "network.pt",
        )
        return [model], np.ones((t, 1)), {"width": cfg.width}
    w = spec.membership_matrix()
    if spec.kind == "separate":
        width = width_for_budget(ctx.factory, t, spec.k, base_width=cfg.width)
        models = []
        for c in range(spec.k):
            ccfg = TrainConfig(**{**asdict(cfg), "width": width, "seed": cfg.seed * 1000 + c})
            ckpt = partial / f"group{c}.pt"
            models.append(
                train_model(
                    ctx.factory,
                    train,
                    ccfg,
                    w[:, c],
                    num_tasks=t,
                    progress=False,
                    checkpoint_path=ckpt,
                )
            )
        return models, w, {"width": width}
    pos = {name: i for i, name in enumerate(spec.tasks)}
    groups = [[pos[n] for n in g] for g in spec.groups]
    bw = branch_width_for_budget(ctx.factory, [len(g) for g in groups], cfg.width)
    model = train_model(
        _branched_factory(ctx.factory, groups, bw),
        train,
        cfg,
        num_tasks=t,
        progress=False,
        checkpoint_path=partial / "branched.pt",
    )
    return [model], np.ones((t, 1)), {"width": cfg.width, "branch_width": bw}


def _evaluate(
    models: list[nn.Module], w: np.ndarray, spec: RunSpec, data: Splits, ctx: RunContext
) -> pl.DataFrame:
    names = data.task_names()
    cols = [names.index(t) for t in spec.tasks]
    pw = _pos_weight(ctx.recipe, TaskColumns(data.train, cols, spec.tasks).targets)
    tables = []
    for split, d in (("val", data.val), ("test", data.test)):
        view = TaskColumns(d, cols, spec.tasks)
        logits = np.stack([predict_logits(m, view, ctx.eval_batch_size) for m in models])
        z = ensemble_logits(logits, w, "weighted") if len(models) > 1 else logits[0]
        y = view.targets.numpy()
        zt, yt = torch.from_numpy(z.astype(np.float64)), torch.from_numpy(y.astype(np.float64))
        loss = task_losses(zt, yt, None, None if pw is None else pw.double()).numpy()
        bce = task_losses(zt, yt, None, None).numpy()
        m = task_metrics(z, y, list(spec.tasks))
        tables.append(
            pl.DataFrame(
                {
                    "split": [split] * len(spec.tasks),
                    "task": list(spec.tasks),
                    "loss": loss.astype(np.float64),
                    "bce": bce.astype(np.float64),
                    "roc_auc": m["roc_auc"],
                    "positives": m["positives"],
                }
            )
        )
    return pl.concat(tables)


def execute_run(spec: RunSpec, ctx: RunContext) -> RunResult:
    """Train and measure one run, or return it from the cache (see the module docstring).

    Parameters
    ----------
    spec : RunSpec
    ctx : RunContext

    Returns
    -------
    RunResult
    """
    key = run_key(spec, ctx.recipe, ctx.factory_id, ctx.fingerprint)
    cached = _load_cached(ctx, spec, key)
    if cached is not None:
        return cached
    data = data_for_worker(ctx)
    before = torch.get_num_threads()
    if ctx.threads is not None:
        torch.set_num_threads(ctx.threads)
    partial = Path(ctx.cache_dir) / "partial" / key
    partial.mkdir(parents=True, exist_ok=True)
    try:
        cfg = TrainConfig(**{**asdict(ctx.recipe), "seed": spec.seed})
        t0 = time.perf_counter()
        models, w, meta = _train(spec, data, ctx, cfg, partial)
        t1 = time.perf_counter()
        metrics = _evaluate(models, w, spec, data, ctx)
        t2 = time.perf_counter()
        x = next(iter(make_loader(data.val, 2, shuffle=False, seed=0)))[0]
        macs = sum(count_macs(m, x) for m in models)
    finally:
        torch.set_num_threads(before)
    result = RunResult(
        spec,
        key,
        metrics,
        t1 - t0,
        t2 - t1,
        sum(count_parameters(m) for m in models),
        macs,
        meta=meta,
    )
    _save(ctx, result, models)
    shutil.rmtree(partial, ignore_errors=True)
    return result


def _save(ctx: RunContext, result: RunResult, models: list[nn.Module]) -> None:
    with atomic_dir(_run_dir(ctx, result.key), what="payoff run") as tmp:
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
            "recipe": _recipe_fields(ctx.recipe),
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
    folder = _run_dir(ctx, key)
    manifest = read_manifest(folder, what="payoff run", formats={_FORMAT: (_FORMAT_VERSION,)})
    state = load_checkpoint(verified_file(folder, manifest, "model"))
    return list(state["models"])


# --------------------------------------------------------------------------------------------
# planning, estimate, execution


def _signature(spec: RunSpec) -> tuple[Any, ...]:
    return (spec.kind, len(spec.tasks), spec.k)


def _time_step(spec: RunSpec, data: Splits, ctx: RunContext) -> float:
    """Seconds of one training step of ``spec``'s model(s) on one batch (after one warm-up)."""
    t = len(spec.tasks)
    cfg = ctx.recipe
    x, _, _ = next(iter(make_loader(data.train, cfg.batch_size, shuffle=False, seed=0)))
    y = torch.zeros(x.shape[0], t)
    if spec.kind == "network":
        models = [ctx.factory(t, cfg.width)]
    elif spec.kind == "separate":
        width = width_for_budget(ctx.factory, t, spec.k, base_width=cfg.width)
        models = [ctx.factory(t, width) for _ in range(spec.k)]
    else:
        sizes = [len(g) for g in spec.groups]
        bw = branch_width_for_budget(ctx.factory, sizes, cfg.width)
        bounds = np.cumsum([0, *sizes])
        groups = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        models = [build_branched(ctx.factory, groups, cfg.width, bw)]
    dev = torch.device(cfg.device)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        for m in models:
            m.to(dev).train()
            opt = torch.optim.Adam(m.parameters(), lr=cfg.lr)
            loss = task_losses(m(x.to(dev)), y.to(dev)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        best = min(best, time.perf_counter() - start)
    return best


def estimate_seconds(specs: Sequence[RunSpec], ctx: RunContext) -> dict[RunSpec, float]:
    """Estimated wall time of each run, from one timed training step per distinct model shape.

    A run is estimated as ``steps * step + eval_batches * step / 3`` (an evaluation batch costs
    about a third of a training step per sample), where ``step`` is one timed step (after a
    warm-up) of a model of the run's shape (kind, number of tasks, number of groups) on one
    training batch. Cached runs are not estimated by this function; leave them out.
    """
    data = data_for_worker(ctx)
    cfg = ctx.recipe
    n_train = len(targets_of(data.train))
    steps = cfg.epochs * -(-n_train // cfg.batch_size)
    n_eval = len(targets_of(data.val)) + len(targets_of(data.test))
    eval_steps = n_eval / cfg.batch_size
    before = torch.get_num_threads()
    if ctx.threads is not None:
        torch.set_num_threads(ctx.threads)
    try:
        per_sig: dict[tuple[Any, ...], float] = {}
        for s in specs:
            sig = _signature(s)
            if sig not in per_sig:
                per_sig[sig] = _time_step(s, data, ctx)
    finally:
        torch.set_num_threads(before)
    return {s: per_sig[_signature(s)] * (steps + eval_steps / 3.0) for s in specs}


def run_all(
    specs: Sequence[RunSpec],
    ctx: RunContext,
    *,
    executor: Any = None,
    progress: bool = True,
    desc: str = "runs",
) -> list[RunResult]:
    """Execute runs (each once: duplicates share one result); results in the order of ``specs``.

    Parameters
    ----------
    specs : sequence of RunSpec
    ctx : RunContext
    executor : concurrent.futures-style executor, optional
        Anything with ``submit(fn, *args)`` returning a future with ``result()``; default: one
        by one in this process. Finished runs are read from the cache in this process and never
        submitted.
    progress : bool
        A progress bar over runs.
    desc : str
        Its label.

    Returns
    -------
    list of RunResult
    """
    keys = [run_key(s, ctx.recipe, ctx.factory_id, ctx.fingerprint) for s in specs]
    unique: dict[str, RunSpec] = {}
    for k, s in zip(keys, specs, strict=True):
        unique.setdefault(k, s)
    results: dict[str, RunResult] = {}
    todo = []
    for k, s in unique.items():
        hit = _load_cached(ctx, s, k)
        if hit is None:
            todo.append(s)
        else:
            results[k] = hit
    bar = tqdm(
        total=len(unique),
        initial=len(results),
        disable=not progress,
        desc=desc,
        unit="run",
        dynamic_ncols=True,
    )
    try:
        if executor is None:
            for s in todo:
                r = execute_run(s, ctx)
                results[r.key] = r
                bar.update(1)
        else:
            futures = [executor.submit(execute_run, s, ctx) for s in todo]
            done = (
                cf.as_completed(futures)
                if all(isinstance(f, cf.Future) for f in futures)
                else iter(futures)
            )
            for f in done:
                r = f.result()
                results[r.key] = r
                bar.update(1)
    finally:
        bar.close()
    return [results[k] for k in keys]
