"""One call: train a multi-task model and record every task-affinity signal in the same run.

:func:`record_affinity` trains like :func:`stgmtl.fit_datamaps` (same loader format, loss and
optimizer defaults, one training loop) with the requested probes attached, and returns one
:class:`~stgmtl.TaskAffinity` per signal, each read the same way: ``values[i, j]`` is the effect
of task ``i`` on task ``j``, larger = more helpful.

=============== ============================================ =================== ============
signal          what it measures                             orientation         when
=============== ============================================ =================== ============
``datamap``     negated distance of the tasks' data maps     symmetric           free
``confusion``   P(task i says yes) on j's positives          symmetric           free
``label``       label co-occurrence, I(Y_i; Y_j) / H(Y_j)    source->recipient   free
``colearning``  correlation of per-epoch confidence changes  symmetric           free
``tag``         TAG lookahead loss change / lr               source->recipient   probe
``grad-cosine`` cosine of task gradients, shared weights     symmetric           probe
``rep-cosine``  cosine of task gradients, representation     symmetric           probe
``ptg``         pair-step vs own-step loss (PTG)             source->recipient   probe
``grad-tag``    linearised subset fits (Grad-TAG)            source->recipient   after run
=============== ============================================ =================== ============

The free signals come from the data maps recorded in the same run (:mod:`stgmtl.affinity.signals`),
the probes from :mod:`stgmtl.record.tag`, :mod:`stgmtl.record.cosine` and
:mod:`stgmtl.record.ptg` (Principled Task Grouping's transfer gains), Grad-TAG from
:mod:`stgmtl.record.gradtag` on the first ``n_samples`` training samples of the last epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stgmtl._checks import check_names, fail, seed_from
from stgmtl.affinity import FREE_SIGNALS, TaskAffinity, free_signals
from stgmtl.loop import Batch, Hook, SchedulerArg, make_scheduler, train_loop
from stgmtl.record.cosine import GradCosineProbe, RepCosineProbe
from stgmtl.record.fit import fit_datamaps
from stgmtl.record.gradtag import GradTAGCollector, grad_tag_affinity
from stgmtl.record.probe import AffinityProbe
from stgmtl.record.ptg import PTGProbe
from stgmtl.record.tag import TAGProbe

__all__ = ["PROBE_SIGNALS", "SIGNALS", "dataset_task_names", "make_probe", "record_affinity"]

#: Every signal :func:`record_affinity` records, in the order it returns them by default.
SIGNALS = (
    "datamap",
    "confusion",
    "label",
    "colearning",
    "tag",
    "grad-cosine",
    "rep-cosine",
    "ptg",
    "grad-tag",
)
#: The signals measured by training-time probes.
PROBE_SIGNALS: dict[str, type[AffinityProbe]] = {
    "tag": TAGProbe,
    "grad-cosine": GradCosineProbe,
    "rep-cosine": RepCosineProbe,
    "ptg": PTGProbe,
}


def make_probe(signal: str, **settings: Any) -> AffinityProbe:
    """A training-time probe for ``signal`` (a key of :data:`PROBE_SIGNALS`).

    ``settings`` go to the probe's constructor (:class:`~stgmtl.record.tag.TAGProbe`,
    :class:`~stgmtl.record.cosine.GradCosineProbe`, :class:`~stgmtl.record.cosine.RepCosineProbe`,
    :class:`~stgmtl.record.ptg.PTGProbe`).
    """
    cls = PROBE_SIGNALS.get(signal)
    if cls is None:
        raise fail("signal", f"one of {sorted(PROBE_SIGNALS)}", signal)
    return cls(**settings)


def _check_signals(signals: Sequence[str]) -> list[str]:
    if isinstance(signals, str):
        raise fail("signals", "a sequence of signal names", signals, error=TypeError)
    names = list(signals)
    bad = [s for s in names if s not in SIGNALS]
    if bad or not names or len(set(names)) != len(names):
        raise fail("signals", f"distinct names from {SIGNALS}", names)
    return names


def _check_settings(settings: Mapping[str, Mapping[str, Any]] | None, names: list[str]) -> dict:
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise fail("settings", "a dict {signal: {option: value}}", settings, error=TypeError)
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise fail("settings", f"options for requested signals {names}", unknown)
    return {k: dict(v) for k, v in settings.items()}


def _per_task_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    if loss_fn is None:
        return None
    if not callable(loss_fn):
        raise fail(
            "loss_fn",
            "a callable (logits, targets) -> (T,) per-task losses",
            loss_fn,
            error=TypeError,
        )

    def total(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per = loss_fn(logits, targets)
        if not isinstance(per, torch.Tensor) or per.ndim != 1 or per.shape[0] != targets.shape[1]:
            raise fail(
                "loss_fn",
                f"per-task losses of shape ({targets.shape[1]},) (affinity "
                "signals need one loss per task)",
                getattr(per, "shape", per),
            )
        return per.sum()

    return total


def record_affinity(
    loader: Any,
    model: nn.Module,
    *,
    signals: Sequence[str] = SIGNALS,
    epochs: int = 5,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    pos_weight: Sequence[float] | torch.Tensor | None = None,
    progress: bool = True,
    random_state: int = 0,
    task_names: Sequence[str] | None = None,
    heads: nn.Module | str | None = None,
    scheduler: SchedulerArg = None,
    device: str | torch.device | None = None,
    checkpoint_path: str | Path | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    hooks: Sequence[Hook] = (),
) -> dict[str, TaskAffinity]:
    """Train ``model`` on all tasks for ``epochs`` and record the requested affinity signals.

    Parameters
    ----------
    loader : iterable
        As :func:`stgmtl.fit_datamaps`: yields ``(inputs, targets, indices)``.
    model : nn.Module
        Returns logits ``(B, T)`` (binary tasks; the free ``label`` and ``datamap`` signals and
        the gradient probes also take ``(B, T, C)``).
    signals : sequence of str
        Any of :data:`SIGNALS` (default all nine).
    epochs : int
        Training epochs (``colearning`` needs at least 2).
    optimizer : torch.optim.Optimizer, optional
        Default ``Adam(model.parameters(), lr=lr)``; ``tag`` previews SGD, Adam and AdamW.
    lr : float
        Learning rate of the default optimizer (peak of ``scheduler="onecycle"``).
    loss_fn : callable, optional
        ``loss_fn(logits, targets) -> (T,)`` **per-task** losses; training minimises their sum.
        Default: BCE-with-logits (cross-entropy for ``(B, T, C)``) over the observed labels.
    pos_weight : sequence of float, optional
        Per-task positive weight of the default BCE.
    progress : bool
        Progress bars.
    random_state : int
        Seeds torch's RNG at the start (as ``fit_datamaps``), the probes' private streams and
        Grad-TAG's projection and split.
    task_names : sequence of str, optional
        Default: ``task_names`` of ``loader.dataset`` (or of the dataset it wraps) when present,
        else ``task_0 ...``.
    heads : nn.Module, str or None
        The task-head submodule for the gradient signals (see
        :mod:`stgmtl.record.functional`); default the last ``nn.Linear`` with one output per task.
    scheduler, device, checkpoint_path
        As :func:`stgmtl.fit_datamaps` (the checkpoint holds the probes' state too).
    settings : dict, optional
        Per-signal options, e.g. ``{"tag": {"every": 5, "max_sources": None}, "grad-tag":
        {"n_samples": 256, "projection_dim": 32}}`` (the probes' constructor arguments; for
        ``grad-tag`` :func:`~stgmtl.record.gradtag.grad_tag_affinity`'s and ``n_samples``; for
        ``label`` ``statistic``).
    hooks : sequence of Hook
        More hooks for the same loop.

    Returns
    -------
    dict of str to TaskAffinity
        One per requested signal, in the order of ``signals``.
    """
    names = _check_signals(signals)
    opts = _check_settings(settings, names)
    seed = seed_from("random_state", random_state)
    per_task = _per_task_loss(loss_fn)
    if task_names is None:
        task_names = dataset_task_names(loader)
    free = [s for s in names if s in FREE_SIGNALS]
    if "colearning" in free and epochs < 2:
        raise fail("epochs", "at least 2 for the colearning signal (it compares epochs)", epochs)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    opt = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    t_names = (
        None if task_names is None else check_names("task_names", task_names, len(list(task_names)))
    )
    probes: dict[str, AffinityProbe] = {}
    for s in names:
        if s in PROBE_SIGNALS:
            kw = {
                "heads": heads,
                "task_names": t_names,
                "pos_weight": pos_weight,
                "random_state": seed,
                "loss_fn": loss_fn,
                **opts.get(s, {}),
            }
            probes[s] = make_probe(s, **kw)
    collector = None
    gt_opts = dict(opts.get("grad-tag", {}))
    if "grad-tag" in names:
        collector = GradTAGCollector(gt_opts.pop("n_samples", 256))
    extra: list[Hook] = [*probes.values(), *([collector] if collector else []), *hooks]
    try:
        rep = probes.get("rep-cosine")
        if isinstance(rep, RepCosineProbe) and (
            t_names is not None or isinstance(heads, nn.Module)
        ):
            rep.attach(model)
        dm = _train(
            loader,
            model,
            opt,
            epochs,
            lr,
            per_task,
            pos_weight,
            progress,
            seed,
            t_names,
            scheduler,
            dev,
            checkpoint_path,
            extra,
            bool(free),
        )
    finally:
        rep = probes.get("rep-cosine")
        if isinstance(rep, RepCosineProbe):
            rep.detach()
    out: dict[str, TaskAffinity] = {}
    free_out = {}
    if free:
        label_opts = opts.get("label", {})
        free_out = free_signals(
            dm, free, label_statistic=label_opts.get("statistic", "uncertainty")
        )
    for s in names:
        if s in free_out:
            out[s] = free_out[s]
        elif s in probes:
            out[s] = probes[s].compute()
        else:
            assert collector is not None
            known = t_names if t_names is not None else (None if dm is None else dm.task_names)
            out[s] = grad_tag_affinity(
                model,
                _batches(collector),
                task_names=known,
                heads=heads,
                random_state=seed,
                progress=progress,
                **gt_opts,
            )
    return out


def dataset_task_names(loader: Any) -> Sequence[str] | None:
    """``task_names`` of the loader's dataset (looking through ``.dataset`` wrappers)."""
    obj = getattr(loader, "dataset", None)
    for _ in range(4):
        if obj is None:
            return None
        names = getattr(obj, "task_names", None)
        if names is not None and not isinstance(names, str):
            return list(names)
        obj = getattr(obj, "dataset", None)
    return None


def _batches(collector: GradTAGCollector) -> list[Batch]:
    if not collector.batches:
        raise fail("loader", "batches to record", "no batches")
    return collector.batches


def _train(
    loader: Any,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    epochs: int,
    lr: float,
    per_task: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    pos_weight: Any,
    progress: bool,
    seed: int,
    task_names: list[str] | None,
    scheduler: SchedulerArg,
    dev: torch.device,
    checkpoint_path: str | Path | None,
    hooks: list[Hook],
    with_datamaps: bool,
) -> Any:
    """Run the one training loop (through ``fit_datamaps`` when free signals are asked)."""
    if with_datamaps:
        settings: dict[str, Any] = {
            "snapshot_epochs": list(range(1, epochs + 1)),
            "snapshot_kind": "epoch",
        }
        if task_names is not None:
            settings["task_names"] = task_names
        return fit_datamaps(
            loader,
            model,
            epochs=epochs,
            optimizer=opt,
            lr=lr,
            scheduler=scheduler,
            loss_fn=per_task,
            pos_weight=pos_weight,
            device=dev,
            hooks=hooks,
            checkpoint_path=checkpoint_path,
            progress=progress,
            random_state=seed,
            **settings,
        )
    try:
        total: int | None = len(loader) * epochs
    except TypeError:
        total = None
    train_loop(
        model,
        loader,
        epochs=epochs,
        optimizer=opt,
        scheduler=make_scheduler(scheduler, opt, lr, total),
        loss_fn=per_task,
        pos_weight=pos_weight,
        device=dev,
        hooks=hooks,
        checkpoint_path=checkpoint_path,
        progress=progress,
        desc="record_affinity",
        random_state=seed,
    )
    return None
