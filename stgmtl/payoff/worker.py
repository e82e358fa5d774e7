"""The worker of the payoff harness: train one run's model(s), measure them, save the run.

:func:`execute_run` is the one function an executor runs; it returns a finished run from the
cache without training, and otherwise trains (resuming from per-epoch checkpoints under
``<cache>/partial/<key>/``), evaluates on the validation and test splits and saves the run
atomically.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from stgmtl.loop import task_losses
from stgmtl.payoff.architectures import Member, build_members
from stgmtl.payoff.runs import (
    RunContext,
    RunResult,
    RunSpec,
    data_for_worker,
    load_run,
    run_key,
    save_run,
)
from stgmtl.payoff.splits import Splits, TaskColumns
from stgmtl.specialise.branched import count_macs
from stgmtl.specialise.data import make_loader
from stgmtl.specialise.metrics import task_metrics
from stgmtl.specialise.training import (
    TrainConfig,
    count_parameters,
    predict_logits,
    resolve_pos_weight,
    train_model,
)

__all__ = ["execute_run"]


def _train(
    spec: RunSpec, data: Splits, ctx: RunContext, cfg: TrainConfig, partial: Path
) -> tuple[list[Member], list[nn.Module], np.ndarray, dict[str, Any]]:
    """Train the run's networks (:func:`~stgmtl.payoff.architectures.build_members`), all
    with the run's seed (paired), each on its own tasks' columns."""
    names = data.task_names()
    members, combine, meta = build_members(spec, ctx.factory, cfg.width)
    models = []
    log_variances = []
    for c, m in enumerate(members):
        tasks = tuple(spec.tasks[j] for j in m.columns)
        view = TaskColumns(data.train, [names.index(x) for x in tasks], tasks)
        mcfg = replace(cfg, width=m.width)
        extras: dict[str, Any] = {}
        models.append(
            train_model(
                m.build,
                view,
                mcfg,
                m.weights,
                num_tasks=len(tasks),
                progress=False,
                checkpoint_path=partial / f"member{c}.pt",
                task_names=tasks,
                extras=extras,
            )
        )
        if "log_variances" in extras:
            log_variances.append(dict(zip(tasks, extras["log_variances"].tolist(), strict=True)))
    if log_variances:  # uncertainty weighting: the learned s_t per network and task
        meta = {**meta, "log_variances": log_variances}
    return members, models, combine, meta


def _evaluate(
    members: list[Member],
    models: list[nn.Module],
    combine: np.ndarray,
    spec: RunSpec,
    data: Splits,
    ctx: RunContext,
) -> pl.DataFrame:
    names = data.task_names()
    cols = [names.index(t) for t in spec.tasks]
    t = len(spec.tasks)
    pw = resolve_pos_weight(ctx.recipe, t, TaskColumns(data.train, cols, spec.tasks).targets)
    tables = []
    for split, d in (("val", data.val), ("test", data.test)):
        view = TaskColumns(d, cols, spec.tasks)
        z = np.zeros((len(view), t), dtype=np.float64)
        for c, (mem, model) in enumerate(zip(members, models, strict=True)):
            sub = TaskColumns(
                d, [cols[j] for j in mem.columns], [spec.tasks[j] for j in mem.columns]
            )
            logits = predict_logits(model, sub, ctx.eval_batch_size).astype(np.float64)
            for out, j in enumerate(mem.columns):
                z[:, j] += combine[j, c] * logits[:, out]
        y = view.targets.numpy()
        zt, yt = torch.from_numpy(z), torch.from_numpy(y.astype(np.float64))
        loss = task_losses(zt, yt, None, None if pw is None else pw.double()).numpy()
        bce = task_losses(zt, yt, None, None).numpy()
        m = task_metrics(z.astype(np.float32), y, list(spec.tasks))
        tables.append(
            pl.DataFrame(
                {
                    "split": [split] * t,
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
    cached = load_run(ctx, spec, key)
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
        if spec.loss_weighting:
            cfg = replace(cfg, loss_weighting=spec.loss_weighting)
        t0 = time.perf_counter()
        members, models, combine, meta = _train(spec, data, ctx, cfg, partial)
        t1 = time.perf_counter()
        metrics = _evaluate(members, models, combine, spec, data, ctx)
        t2 = time.perf_counter()
        x = next(iter(make_loader(data.val, 2, shuffle=False, seed=0)))[0]
        macs = sum(count_macs(m, x.to(next(m.parameters()).device)) for m in models)
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
    save_run(ctx, result, models)
    shutil.rmtree(partial, ignore_errors=True)
    return result
