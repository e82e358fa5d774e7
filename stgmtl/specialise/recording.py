"""Recording affinity signals for the payoff harness, under the conditions of its truth runs.

A recording run trains one model for all tasks exactly as the harness's all-task ``"network"``
run of the same seed (same factory, width, initialisation, data order, optimiser and epochs)
with the signals' probes attached, and returns one :class:`~stgmtl.affinity.TaskAffinity` per
signal. Its wall time divided by the plain run's training time is the signal's recording cost.

The default recorder, :func:`record_signals`, uses :func:`stgmtl.record_affinity` (the affinity
probes) when this installation has it; otherwise it records data maps with
:func:`stgmtl.fit_datamaps` and derives the signals that need nothing else ("free" signals):

``datamap``
    ``-||f_i - f_j||`` between the tasks' flattened data-map features (STG-MTL's feature),
    divided by sqrt(D); symmetric.
``confusion``
    the symmetrised cross-task confusion of :func:`stgmtl.features.confusion.confusion_matrix`
    (mean probability that task ``i`` says yes on ``j``'s positives).

Two controls need no training: :func:`label_affinity` (the phi coefficient of the training
labels; "label statistics") and :func:`random_affinity` (a seeded standard-normal matrix).

Recordings are cached like runs (``<cache>/signals/<key>/``, one saved ``TaskAffinity`` per
signal and a manifest), keyed by the recorder, the signals, the recipe, the factory, the data and
the seed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import stgmtl.record as record_stage
from stgmtl._checks import check_int, fail
from stgmtl._io import atomic_dir, read_manifest, write_manifest
from stgmtl.affinity import TaskAffinity
from stgmtl.features.confusion import confusion_matrix
from stgmtl.features.datamap import datamap_features
from stgmtl.record import fit_datamaps
from stgmtl.specialise.data import make_loader, pos_weight_of, targets_of
from stgmtl.specialise.runs import RunContext, data_for_worker, factory_identity
from stgmtl.specialise.splits import Splits
from stgmtl.specialise.training import TrainConfig

__all__ = [
    "FREE_SIGNALS",
    "affinity_probes_available",
    "SIGNAL_NAMES",
    "RecordResult",
    "datamap_signals",
    "execute_recording",
    "label_affinity",
    "random_affinity",
    "record_signals",
    "recording_key",
]

#: Signal names of :func:`stgmtl.record_affinity` (the affinity-signals issue).
SIGNAL_NAMES = (
    "datamap",
    "confusion",
    "label",
    "colearning",
    "tag",
    "grad-cosine",
    "rep-cosine",
    "grad-tag",
)
#: The signals :func:`record_signals` derives from data maps when ``record_affinity`` is absent.
FREE_SIGNALS = ("datamap", "confusion")
_FORMAT = "stgmtl.PayoffRecording"


def label_affinity(targets: Any, task_names: Sequence[str]) -> TaskAffinity:
    """The phi coefficient (Pearson correlation of the 0/1 labels) between tasks; symmetric.

    A task whose labels are constant gets NaN rows and columns.
    """
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != len(task_names):
        raise fail("targets", f"an (N, {len(task_names)}) label matrix", y.shape)
    yc = y - y.mean(0)
    sd = np.sqrt((yc * yc).mean(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = (yc.T @ yc / y.shape[0]) / np.outer(sd, sd)
    phi = np.where(np.outer(sd, sd) > 0, phi, np.nan)
    phi = (phi + phi.T) / 2.0
    return TaskAffinity(
        list(task_names),
        phi,
        "label",
        orientation="symmetric",
        meta={"formula": "phi coefficient of the training labels"},
    )


def random_affinity(task_names: Sequence[str], random_state: int = 0) -> TaskAffinity:
    """A seeded standard-normal ``(T, T)`` matrix (NaN diagonal): the chance control."""
    t = len(task_names)
    v = np.random.default_rng([int(random_state), 12]).normal(size=(t, t))
    np.fill_diagonal(v, np.nan)
    return TaskAffinity(list(task_names), v, "random", meta={"formula": "standard normal"})


def datamap_signals(maps: Any, signals: Sequence[str] = FREE_SIGNALS) -> dict[str, TaskAffinity]:
    """The free signals of the module docstring from recorded ``DataMaps``."""
    names = list(maps.task_names)
    out: dict[str, TaskAffinity] = {}
    if "datamap" in signals:
        f = datamap_features(maps).astype(np.float64)
        sq = (f * f).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0)
        v = -np.sqrt(d2 / max(f.shape[1], 1))
        v = (v + v.T) / 2.0
        np.fill_diagonal(v, np.nan)
        out["datamap"] = TaskAffinity(
            names,
            v,
            "datamap",
            orientation="symmetric",
            meta={"formula": "-|f_i - f_j| / sqrt(D), data-map features"},
        )
    if "confusion" in signals:
        a = confusion_matrix(maps)
        v = (a + a.T) / 2.0
        np.fill_diagonal(v, np.nan)
        out["confusion"] = TaskAffinity(
            names,
            v,
            "confusion",
            orientation="symmetric",
            meta={"formula": "symmetrised cross-task confusion"},
        )
    return out


def affinity_probes_available() -> bool:
    """Whether this installation has :func:`stgmtl.record_affinity` (else the free signals)."""
    return hasattr(record_stage, "record_affinity")


def _optimizer(model: torch.nn.Module, recipe: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def record_signals(
    train: Any,
    factory: Callable[[int, float], torch.nn.Module],
    recipe: TrainConfig,
    signals: Sequence[str],
    *,
    progress: bool = False,
) -> dict[str, TaskAffinity]:
    """Train one all-task model as the harness's all-task run and record ``signals``.

    Parameters
    ----------
    train : Dataset or object with ``loader()``
        The training split.
    factory : callable
        ``factory(num_tasks, width)``.
    recipe : TrainConfig
        The harness's recipe with the run's seed.
    signals : sequence of str
        Names from :data:`SIGNAL_NAMES`.
    progress : bool

    Returns
    -------
    dict of str to TaskAffinity
    """
    y = targets_of(train)
    t = int(y.shape[1])
    torch.manual_seed(recipe.seed)
    model = factory(t, recipe.width).to(recipe.device)
    loader = make_loader(train, recipe.batch_size, shuffle=True, seed=recipe.seed)
    pw = None
    if recipe.pos_weight == "auto":
        pw = pos_weight_of(y)
    elif recipe.pos_weight is not None:
        pw = torch.full((t,), float(recipe.pos_weight))
    if affinity_probes_available():
        record_affinity = getattr(record_stage, "record_affinity")  # noqa: B009 - optional
        kwargs: dict[str, Any] = {
            "signals": tuple(signals),
            "epochs": recipe.epochs,
            "optimizer": _optimizer(model, recipe),
            "lr": recipe.lr,
            "pos_weight": pw,
            "progress": progress,
            "random_state": recipe.seed,
        }
        accepted = inspect.signature(record_affinity).parameters
        if "scheduler" in accepted:
            kwargs["scheduler"] = recipe.scheduler
        if "task_names" in accepted:
            kwargs["task_names"] = _names(train, t)
        return dict(record_affinity(loader, model, **kwargs))
    unknown = [s for s in signals if s not in FREE_SIGNALS]
    if unknown:
        raise fail(
            "signals",
            f"signals this installation can record {FREE_SIGNALS} "
            "(stgmtl.record_affinity is not available)",
            unknown,
        )
    maps = fit_datamaps(
        loader,
        model,
        epochs=recipe.epochs,
        optimizer=_optimizer(model, recipe),
        lr=recipe.lr,
        scheduler=recipe.scheduler,  # type: ignore[arg-type]
        pos_weight=pw,
        progress=progress,
        random_state=recipe.seed,
        num_samples=len(y),
        task_names=_names(train, t),
    )
    return datamap_signals(maps, signals)


def _names(data: Any, t: int) -> list[str]:
    names = getattr(data, "task_names", None)
    return [str(n) for n in names] if names is not None else [f"task_{i}" for i in range(t)]


@dataclass
class RecordResult:
    """Signals recorded in one run: ``signals`` by name, ``seconds`` of the recording run."""

    seed: int
    signals: dict[str, TaskAffinity]
    seconds: float
    key: str
    cached: bool = False
    names: tuple[str, ...] = field(default_factory=tuple)


def recording_key(signals: Sequence[str], seed: int, recorder_id: str, ctx: RunContext) -> str:
    """Cache key of a recording run."""
    recipe = asdict(ctx.recipe)
    recipe.pop("seed")
    recipe.pop("device")
    body = {
        "format": _FORMAT,
        "signals": list(signals),
        "seed": int(seed),
        "recorder": recorder_id,
        "recipe": recipe,
        "factory": ctx.factory_id,
        "data": ctx.fingerprint,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def execute_recording(
    signals: tuple[str, ...],
    seed: int,
    ctx: RunContext,
    recorder: Callable[..., dict[str, TaskAffinity]] = record_signals,
) -> RecordResult:
    """Record ``signals`` on ``seed`` (or read them from the cache); a job for an executor.

    ``recorder(train, factory, recipe, signals)`` returns the signals by name (default
    :func:`record_signals`).
    """
    check_int("seed", seed, low=0)
    key = recording_key(signals, seed, factory_identity(recorder), ctx)
    folder = Path(ctx.cache_dir) / "signals" / key
    if (folder / "manifest.json").is_file():
        manifest = read_manifest(folder, what="signal recording", formats={_FORMAT: (1,)})
        found = {
            n: TaskAffinity.load(folder / f"signal_{i}") for i, n in enumerate(manifest["names"])
        }
        return RecordResult(seed, found, float(manifest["seconds"]), key, True, tuple(found))
    data: Splits = data_for_worker(ctx)
    before = torch.get_num_threads()
    if ctx.threads is not None:
        torch.set_num_threads(ctx.threads)
    try:
        recipe = TrainConfig(**{**asdict(ctx.recipe), "seed": int(seed)})
        t0 = time.perf_counter()
        found = dict(recorder(data.train, ctx.factory, recipe, list(signals)))
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    with atomic_dir(folder, what="signal recording") as tmp:
        for i, aff in enumerate(found.values()):
            if not isinstance(aff, TaskAffinity):
                raise fail(
                    "recorder", "a dict of TaskAffinity", type(aff).__name__, error=TypeError
                )
            aff.save(tmp / f"signal_{i}")
        (tmp / "signals.json").write_text(json.dumps(list(found)))
        write_manifest(
            tmp,
            {
                "format": _FORMAT,
                "format_version": 1,
                "names": list(found),
                "seconds": seconds,
                "seed": int(seed),
            },
            {"signals": "signals.json"},
        )
    return RecordResult(seed, found, seconds, key, False, tuple(found))
