"""The worker of the payoff harness: train one run's model(s), measure them, save the run.

:func:`execute_run` is the one function an executor runs; it returns a finished run from the
cache without training, and otherwise trains (resuming from per-epoch checkpoints under
``<cache>/partial/<key>/``), evaluates on the validation and test splits and saves the run
atomically.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from stgmtl.loop import task_losses
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
from stgmtl.specialise.baselines import width_for_budget
from stgmtl.specialise.branched import branch_width_for_budget, build_branched, count_macs
from stgmtl.specialise.data import make_loader, pos_weight_of
from stgmtl.specialise.metrics import task_metrics
from stgmtl.specialise.training import (
    ModelFactory,
    TrainConfig,
    count_parameters,
    ensemble_logits,
    predict_logits,
    train_model,
)

__all__ = ["execute_run"]


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
        t0 = time.perf_counter()
        models, w, meta = _train(spec, data, ctx, cfg, partial)
        t1 = time.perf_counter()
        metrics = _evaluate(models, w, spec, data, ctx)
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
