"""The payoff harness on Dask distributed: real worker processes on 127.0.0.1, faults included.

Also the run claims (:mod:`stgmtl.payoff.claims`) that keep two clients of one cache from
training a run twice at the same time.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from stgmtl import cli
from stgmtl.datasets.suites import TaskSuite
from stgmtl.models import model_factory
from stgmtl.payoff import Splits, run_payoff
from stgmtl.payoff import claims as claims_module
from stgmtl.payoff import worker as worker_module
from stgmtl.payoff.execution import run_all
from stgmtl.payoff.runs import RunContext, RunSpec, load_run, run_key
from stgmtl.payoff.splits import data_fingerprint
from stgmtl.specialise import TrainConfig

pytestmark = pytest.mark.usefixtures("single_thread")

# ------------------------------------------------------------------------------ tiny suites


def _toy(n: int, t: int, seed: int) -> TaskSuite:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    chan = images.float().mean((2, 3))
    targets = torch.stack([chan[:, j % 3] > chan.mean(1) for j in range(t)], 1).float()
    return TaskSuite(
        images,
        targets,
        [f"t{j}" for j in range(t)],
        sample_ids=np.arange(n),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )


def toy_splits(n_train: int = 96) -> Splits:
    """A picklable suite builder: workers call it themselves."""
    return Splits(_toy(n_train, 3, 0), _toy(48, 3, 1), _toy(48, 3, 2))


def planted_splits() -> Splits:
    """Three tasks on 16 Gaussian features (t0, t1 read feature 0, t2 feature 1)."""

    def part(n: int, seed: int) -> TensorDataset:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 16, generator=g)
        y = torch.stack([x[:, s] + 0.3 * torch.randn(n, generator=g) > 0 for s in (0, 0, 1)], 1)
        return TensorDataset(x, y.float())

    return Splits(part(256, 0), part(128, 1), part(256, 2))


def mlp(num_tasks: int, width: float) -> nn.Module:
    h = max(1, round(32 * width))
    return nn.Sequential(nn.Linear(16, h), nn.ReLU(), nn.Linear(h, num_tasks))


MLP_RECIPE = TrainConfig(width=1.0, epochs=2, batch_size=64, lr=0.05, pos_weight=None)
TINY = TrainConfig(width=0.125, epochs=1, batch_size=32)


def _payoff(executor, out: Path):
    return run_payoff(
        planted_splits, mlp, MLP_RECIPE, out, truth="pairs", seeds=(0, 1), ks=(2,), signals={},
        random_partitions=1, n_bootstrap=10, n_permutations=10, budget=2.0, confirm_seeds=2,
        executor=executor, threads=1, progress=False, log=None,
    )  # fmt: skip


TABLES = ("systems", "partitions", "payoff", "summary", "truth")


def _canonical(table: pl.DataFrame) -> pl.DataFrame:
    """Without timings, rows sorted: the harness orders tied rows (equal gains) arbitrarily."""
    table = table.drop([c for c in table.columns if c.endswith("seconds")])
    return table.sort(table.columns, nulls_last=True)


def _assert_same_tables(a, b) -> None:
    """Every result table equal, bitwise (one torch thread everywhere), timings aside."""
    for name in (*TABLES, "runs"):
        assert _canonical(getattr(a, name)).equals(_canonical(getattr(b, name))), name
    assert a.recommendation == b.recommendation


def _cluster():
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    return distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    )


def _cache_is_clean(cache: Path, keys: set[str], ctx: RunContext) -> None:
    """Every run exactly once, complete and verified; no temporary folder or claim left."""
    names = {p.name for p in (cache / "runs").iterdir()}
    assert names == keys  # no .tmp- / .old- leftovers, nothing missing, nothing extra
    for key in keys:
        assert (cache / "runs" / key / "manifest.json").is_file()
    claims = cache / "claims"
    assert not claims.exists() or [p.name for p in claims.iterdir()] in ([], [".lock"])
    partial = cache / "partial"
    assert not partial.exists() or not list(partial.iterdir())


# -------------------------------------------------------------------------- the same answer


@pytest.mark.slow
def test_in_process_pool_and_dask_give_the_same_tables(tmp_path) -> None:
    from stgmtl.payoff.dask_engine import dask_executor

    inline = _payoff(None, tmp_path / "inline")
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = _payoff(pool, tmp_path / "pool")
    with _cluster() as cluster:
        # the command line's path (stgmtl payoff --dask ADDRESS)
        with dask_executor(cluster.scheduler_address) as ex:
            on_dask = _payoff(ex, tmp_path / "dask")
        # the Python API: any client's executor
        from distributed import Client

        with Client(cluster.scheduler_address, set_as_default=False) as client:
            api = _payoff(client.get_executor(pure=False), tmp_path / "api")
            # the client itself: distributed futures, collected with distributed.as_completed
            bare = _payoff(client, tmp_path / "client")
    assert not on_dask.runs.is_empty()
    for other in (pooled, on_dask, api, bare):
        _assert_same_tables(inline, other)


def test_unreachable_scheduler_is_one_line_naming_the_address(capsys, tmp_path) -> None:
    dask = pytest.importorskip("dask", reason="dask[distributed] is not installed")
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = cli.main(["payoff", "--quick", "--dask", address, "--out", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert code == 1 and address in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "cannot reach the Dask scheduler" in err
    code = cli.main(["payoff", "--dask", address, "--workers", "2", "--out", str(tmp_path / "o")])
    assert code == 1 and "leave out --workers" in capsys.readouterr()[1]


# ------------------------------------------------------------------------------------ faults


def _cnn_ctx(cache: Path, n_train: int) -> RunContext:
    data = functools.partial(toy_splits, n_train)
    f = model_factory("cnn")
    return RunContext(data, f, TINY, str(cache), data_fingerprint(data()), f.cache_id, threads=1)


def _cnn_specs() -> list[RunSpec]:
    names = ("t0", "t1", "t2")
    return [
        RunSpec("network", ("t0",), seed=0),
        RunSpec("network", ("t1", "t2"), seed=1),
        RunSpec("separate", names, (("t0", "t1"), ("t2",)), seed=0),
        RunSpec("network", names, seed=2),
    ]


def _kill_first_trainer(cache: Path, killed: list[int]) -> None:
    """SIGKILL the worker process holding the first claim while it still holds it (training)."""
    claims = cache / "claims"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in claims.glob("[0-9a-f]*") if claims.is_dir() else ():
            body = claims_module.read_claim(p) or {}
            pid = body.get("pid")
            if isinstance(pid, int) and pid != os.getpid():
                time.sleep(0.05)  # into its training
                again = claims_module.read_claim(p) or {}
                if (
                    again.get("token") == body.get("token")
                    and not (cache / "runs" / p.name).exists()
                ):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
        time.sleep(0.01)


@pytest.mark.slow
def test_a_worker_killed_mid_training_loses_nothing(tmp_path) -> None:
    from stgmtl.payoff.dask_engine import dask_executor

    specs = _cnn_specs()
    inline = run_all(specs, _cnn_ctx(tmp_path / "inline", 192), progress=False)
    cache = tmp_path / "cache"
    ctx = _cnn_ctx(cache, 192)
    killed: list[int] = []
    with _cluster() as cluster:
        pids = {w.pid for w in cluster.workers.values()}  # the worker processes (nannies' children)
        killer = threading.Thread(target=_kill_first_trainer, args=(cache, killed))
        killer.start()
        with dask_executor(cluster.scheduler_address) as ex:
            results = run_all(specs, ctx, executor=ex, progress=False)
        killer.join()
    assert killed and killed[0] in pids  # a worker process died mid-training
    for a, b in zip(inline, results, strict=True):
        assert a.key == b.key and a.metrics.equals(b.metrics)
    _cache_is_clean(cache, {r.key for r in inline}, ctx)
    rerun = run_all(specs, ctx, progress=False)  # nothing left to train
    assert all(r.cached for r in rerun)


#: scheduler and workers unpickle the tasks: they need this worktree and this test module
_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _scheduler_process(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """``dask scheduler`` in its own process on 127.0.0.1 (so that it can be killed)."""
    file = tmp_path / "scheduler.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_ENV,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not file.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc, json.loads(file.read_text())["address"]


@pytest.mark.slow
def test_a_scheduler_that_goes_away_is_a_clear_error_and_the_rerun_resumes(tmp_path) -> None:
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    from stgmtl.payoff.dask_engine import DaskEngineError, dask_executor

    specs = _cnn_specs()
    cache = tmp_path / "cache"
    ctx = _cnn_ctx(cache, 192)
    proc, address = _scheduler_process(tmp_path)
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
         "--no-nanny", "--death-timeout", "5", "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_ENV,
    )  # fmt: skip
    try:

        def stop_when_one_run_is_done() -> None:
            deadline = time.monotonic() + 180  # a busy machine: the worker imports torch first
            while time.monotonic() < deadline and not list((cache / "runs").glob("[0-9a-f]*")):
                time.sleep(0.05)
            proc.kill()

        stopper = threading.Thread(target=stop_when_one_run_is_done)
        stopper.start()
        with pytest.raises(DaskEngineError, match=f"lost the Dask scheduler at {address}"):
            with dask_executor(address) as ex:
                run_all(specs, ctx, executor=ex, progress=False)
        stopper.join()
    finally:
        proc.kill()
        worker.wait(timeout=30) if worker.poll() is None and not worker.kill() else None
    done_before = {p.name for p in (cache / "runs").glob("[0-9a-f]*")}
    assert 1 <= len(done_before) < len(specs)
    trained: list[str] = []
    with _cluster() as cluster, distributed.Client(cluster, set_as_default=False) as client:
        results = run_all(specs, ctx, executor=client.get_executor(pure=False), progress=False)
        trained = [r.key for r in results if not r.cached]
    assert not set(trained) & done_before  # resumed: finished runs were not trained again
    inline = run_all(specs, _cnn_ctx(tmp_path / "inline", 192), progress=False)
    for a, b in zip(inline, results, strict=True):
        assert a.key == b.key and a.metrics.equals(b.metrics)
    _cache_is_clean(cache, {r.key for r in inline}, ctx)


# ------------------------------------------------------------------------------------ claims


def test_two_clients_of_one_cache_train_a_run_once(tmp_path, monkeypatch) -> None:
    ctx = _cnn_ctx(tmp_path / "cache", 96)
    spec = _cnn_specs()[0]
    calls: list[int] = []
    real = worker_module.train_model

    def counted(*a, **k):
        calls.append(threading.get_ident())
        time.sleep(0.3)  # both clients are waiting on the run at the same time
        return real(*a, **k)

    monkeypatch.setattr(worker_module, "train_model", counted)
    with cf.ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: run_all([spec], ctx, progress=False)[0], range(2))
    assert len(calls) == 1  # one client trained, the other waited and read the cache
    assert a.metrics.equals(b.metrics) and [a.cached, b.cached].count(True) == 1
    assert not list((tmp_path / "cache" / "claims").glob("[0-9a-f]*"))


def _write_claim(ctx: RunContext, key: str, **body) -> Path:
    path = claims_module.claim_path(ctx, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"token": "x", "time": time.time(), **body}))
    return path


def test_stale_claims_are_taken_over_and_live_ones_waited_for(tmp_path, monkeypatch) -> None:
    ctx = _cnn_ctx(tmp_path / "cache", 96)
    specs = _cnn_specs()[:2]
    keys = [run_key(s, ctx.recipe, ctx.factory_id, ctx.fingerprint) for s in specs]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # a process of this host that no longer runs: taken over at once
    _write_claim(ctx, keys[0], host=socket.gethostname(), pid=dead.pid)
    half = Path(ctx.cache_dir) / "runs" / f".{keys[0]}.tmp-dead"  # it died while saving
    half.mkdir(parents=True)
    (half / "metrics.parquet").write_bytes(b"half")
    # another host's claim with an old heartbeat: taken over
    old = _write_claim(ctx, keys[1], host="elsewhere", pid=1)
    os.utime(old, (time.time() - 10, time.time() - 10))
    monkeypatch.setenv("STGMTL_CLAIM_STALE_S", "5")
    t0 = time.perf_counter()
    assert not any(r.cached for r in run_all(specs, ctx, progress=False))
    assert time.perf_counter() - t0 < 30
    assert not half.exists()
    # killed after saving, before releasing: the stale claim and checkpoints go on the next read
    _write_claim(ctx, keys[0], host=socket.gethostname(), pid=dead.pid)
    (Path(ctx.cache_dir) / "partial" / keys[0]).mkdir(parents=True)
    live = _write_claim(ctx, keys[1], host=socket.gethostname(), pid=os.getpid())
    assert all(r.cached for r in run_all(specs, ctx, progress=False))
    assert not claims_module.claim_path(ctx, keys[0]).exists()
    assert not (Path(ctx.cache_dir) / "partial" / keys[0]).exists()
    assert live.exists()  # a live holder releases its own claim
    live.unlink()
    assert sorted(p.name for p in (Path(ctx.cache_dir) / "runs").iterdir()) == sorted(keys)
    # a live claim (this process, fresh) is waited for; its run read when it is released
    spec = _cnn_specs()[2]
    key = run_key(spec, ctx.recipe, ctx.factory_id, ctx.fingerprint)
    live = _write_claim(ctx, key, host=socket.gethostname(), pid=os.getpid())
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(run_all([spec], ctx, progress=False)))
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and load_run(ctx, spec, key) is None  # waiting, not training
    live.unlink()  # its holder gave up without finishing: the waiter claims and trains it
    waiter.join(timeout=60)
    assert got and not got[0][0].cached and load_run(ctx, spec, key) is not None
    assert pl.DataFrame(got[0][0].metrics).height == 6
