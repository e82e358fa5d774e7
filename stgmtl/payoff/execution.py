"""Scheduling runs of the payoff harness: the time estimate and execution through any executor.

Runs are independent, so :func:`run_all` hands them to any ``concurrent.futures``-style
executor (an object with ``submit(fn, *args)`` returning futures with ``result()``): a
``ProcessPoolExecutor`` (use the ``"spawn"`` start method with torch), Dask's
``client.get_executor()``, or submitit's executors. Its default runs them one by one in this
process. Pass the data as a zero-argument callable returning :class:`~stgmtl.payoff.Splits`
(for example ``functools.partial`` of a suite builder) to have remote workers load it
themselves instead of receiving it pickled with every run.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from stgmtl.loop import task_losses
from stgmtl.payoff.architectures import build_members
from stgmtl.payoff.claims import claimed_execute_run, tidy_finished
from stgmtl.payoff.runs import (
    RunContext,
    RunResult,
    RunSpec,
    data_for_worker,
    load_run,
    run_key,
)
from stgmtl.payoff.splits import Splits
from stgmtl.specialise.data import make_loader, targets_of

__all__ = ["estimate_seconds", "run_all"]


def _signature(spec: RunSpec) -> tuple[Any, ...]:
    return (spec.kind, len(spec.tasks), spec.k, bool(spec.membership), spec.budget, spec.split)


def _time_step(spec: RunSpec, data: Splits, ctx: RunContext) -> float:
    """Seconds of one training step of ``spec``'s model(s) on one batch (after one warm-up)."""
    cfg = ctx.recipe
    x, _, _ = next(iter(make_loader(data.train, cfg.batch_size, shuffle=False, seed=0)))
    models = [m.model() for m in build_members(spec, ctx.factory, cfg.width)[0]]
    dev = torch.device(cfg.device)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        for m in models:
            m.to(dev).train()
            opt = torch.optim.Adam(m.parameters(), lr=cfg.lr)
            out = m(x.to(dev))
            loss = task_losses(out, torch.zeros_like(out)).sum()
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


def _completions(futures: list[Any]) -> Any:
    """The futures in the order they finish (``concurrent.futures`` and Dask), else in order."""
    if all(isinstance(f, cf.Future) for f in futures):
        return cf.as_completed(futures)
    if futures and all(type(f).__module__.startswith("distributed") for f in futures):
        from stgmtl.payoff.dask_engine import as_completed_dask

        return as_completed_dask(futures)
    return iter(futures)


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
        submitted; the others run under their claim
        (:func:`~stgmtl.payoff.claims.claimed_execute_run`), so that two clients of one cache
        never train a run at the same time. Results are collected as they finish
        (``concurrent.futures`` and Dask futures; others in submission order).
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
        hit = load_run(ctx, s, k)
        if hit is None:
            todo.append(s)
        else:
            results[k] = hit
            tidy_finished(ctx, k)
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
                r = claimed_execute_run(s, ctx)
                results[r.key] = r
                bar.update(1)
        else:
            futures = [executor.submit(claimed_execute_run, s, ctx) for s in todo]
            for f in _completions(futures):
                r = f.result()
                results[r.key] = r
                bar.update(1)
    finally:
        bar.close()
    return [results[k] for k in keys]
