"""Recording affinity signals for the payoff harness, under the conditions of its truth runs.

A recording run trains one model for all tasks exactly as the harness's all-task ``"network"``
run of the same seed (same factory, width, initialisation, data order, optimiser, scheduler and
epochs) with :func:`stgmtl.record_affinity`'s probes attached, and returns one
:class:`~stgmtl.affinity.TaskAffinity` per signal (:data:`stgmtl.record.SIGNALS`; every probe
with its default schedule). Its wall time divided by the plain run's training time is the
signal's recording cost.

Two controls need no training: the label statistic of the training labels
(:func:`label_control`, the ``label`` signal of :func:`stgmtl.affinity.signals.label_signal`
computed from the targets alone, used when ``label`` is not recorded) and
:func:`random_affinity` (a seeded standard-normal matrix).

Recordings are cached like runs (``<cache>/signals/<key>/``, one saved ``TaskAffinity`` per
signal and a manifest), keyed by the recorder, the signals, the recipe, the factory, the data and
the seed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stgmtl._checks import check_int, fail
from stgmtl._io import atomic_dir, read_manifest, write_manifest
from stgmtl.affinity import TaskAffinity
from stgmtl.affinity.signals import label_signal
from stgmtl.payoff.runs import RunContext, data_for_worker, factory_identity
from stgmtl.payoff.splits import Splits
from stgmtl.record import SIGNALS, record_affinity
from stgmtl.specialise.data import make_loader, targets_of
from stgmtl.specialise.training import TrainConfig, resolve_pos_weight

__all__ = [
    "RecordResult",
    "default_signals",
    "execute_recording",
    "label_control",
    "random_affinity",
    "record_signals",
    "recording_key",
]

_FORMAT = "stgmtl.PayoffRecording"


def default_signals(recipe: TrainConfig) -> list[str]:
    """Every signal of :func:`stgmtl.record_affinity` that ``recipe`` can record.

    ``colearning`` compares epochs, so it is left out when ``recipe.epochs < 2``.
    """
    return [s for s in SIGNALS if s != "colearning" or recipe.epochs >= 2]


def label_control(targets: Any, task_names: Sequence[str]) -> TaskAffinity:
    """The ``label`` signal from the training labels alone (no training run).

    :func:`stgmtl.affinity.signals.label_signal` (default statistic: ``I(Y_i; Y_j) / H(Y_j)``)
    of ``targets`` ``(N, T)`` with values 0 / 1 (NaN or negative = not observed): the same matrix
    :func:`stgmtl.record_affinity` returns for ``"label"`` from the labels it saw.
    """
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != len(task_names):
        raise fail("targets", f"an (N, {len(task_names)}) label matrix", y.shape)
    codes = np.where(np.isfinite(y) & (y >= 0), np.nan_to_num(y), -1).astype(np.int64).T
    return label_signal(codes, task_names=list(task_names))


def random_affinity(task_names: Sequence[str], random_state: int = 0) -> TaskAffinity:
    """A seeded standard-normal ``(T, T)`` matrix (NaN diagonal): the chance control."""
    t = len(task_names)
    v = np.random.default_rng([int(random_state), 12]).normal(size=(t, t))
    np.fill_diagonal(v, np.nan)
    return TaskAffinity(list(task_names), v, "random", meta={"formula": "standard normal"})


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
        Names from :data:`stgmtl.record.SIGNALS`.
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
    pw = resolve_pos_weight(recipe, t, y)
    return dict(
        record_affinity(
            loader,
            model,
            signals=tuple(signals),
            epochs=recipe.epochs,
            optimizer=_optimizer(model, recipe),
            lr=recipe.lr,
            pos_weight=pw,
            progress=progress,
            random_state=recipe.seed,
            task_names=_names(train, t),
            scheduler=recipe.scheduler,  # type: ignore[arg-type]
        )
    )


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
    recipe = ctx.recipe.key_fields()
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
        manifest = read_manifest(
            folder, what="signal recording", formats={_FORMAT: (1, 2)}, unsigned={(_FORMAT, 1)}
        )
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
                "format_version": 2,  # 2: the manifest carries its own checksum
                "names": list(found),
                "seconds": seconds,
                "seed": int(seed),
            },
            {"signals": "signals.json"},
        )
    return RecordResult(seed, found, seconds, key, False, tuple(found))
