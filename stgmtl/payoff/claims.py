"""Claim files: one trainer per run at a time, across processes, clients and machines.

Several clients may run the same plan against one run cache (two terminals, two jobs of a
sweep), and an executor may start a run again after the worker that held it died. Before a
worker trains run ``key`` it *claims* it by creating ``<cache>/claims/<key>`` with
``O_CREAT | O_EXCL`` (atomic on a local file system and on NFS v3+), holding the host, the
process id, the time and a random token. While it trains, a thread refreshes the file's
modification time (the heartbeat); when the run is saved (atomically, by
:func:`~stgmtl._io.atomic_dir`) or training fails, the claim is removed.

A worker that finds a claim held by someone else waits (polling) until the claim goes away and
then reads the finished run from the cache, or claims the run itself if it is still missing
(its trainer failed). A claim is *stale*, and is taken over, when its heartbeat is older than
:func:`stale_seconds` (default 120 s; ``$STGMTL_CLAIM_STALE_S``) or when it was made on this
host by a process that no longer runs (a SIGKILLed worker is taken over at once on its own
host, after the timeout from another host). Every removal of a claim (a release, a takeover)
happens under an exclusive ``flock`` of ``<cache>/claims/.lock`` and only after re-reading the
claim's token, so a fresh claim is never removed by mistake.

The holder of a claim also removes half-written folders of its run left by a writer that
died while saving (``runs/.<key>.tmp-*``). So a run is trained by at most one live process at
a time, a finished run is never trained
again (the cache is read first), and a reader never sees half a run (the run folder appears
by one rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stgmtl.payoff.runs import RunContext, RunResult, RunSpec, load_run, run_key
from stgmtl.payoff.worker import execute_run

try:  # POSIX; elsewhere takeovers are not serialised (one client per cache there)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["claim", "claimed_execute_run", "read_claim", "stale_seconds", "tidy_finished"]

_POLL_S = 0.25


def stale_seconds() -> float:
    """Age of a claim's heartbeat after which it is taken over (``$STGMTL_CLAIM_STALE_S``)."""
    return float(os.environ.get("STGMTL_CLAIM_STALE_S", "120"))


def claim_path(ctx: RunContext, key: str) -> Path:
    """``<cache>/claims/<key>``."""
    return Path(ctx.cache_dir) / "claims" / key


def read_claim(path: Path) -> dict[str, Any] | None:
    """The claim's content, ``{}`` if it is being written or unreadable, None if absent."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process its parent has not reaped yet is dead too
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_stale(path: Path, body: dict[str, Any]) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > stale_seconds():
        return True
    pid = body.get("pid")
    return body.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(folder / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_if(path: Path, token: str | None) -> bool:
    """Remove the claim if it still holds ``token`` (None: an unreadable one); under the lock."""
    with _locked(path.parent):
        body = read_claim(path)
        if body is None or body.get("token") != token:
            return False
        path.unlink()
        return True


def _try_create(path: Path, token: str, what: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    body = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": time.time(),
        "token": token,
        "run": what,
    }
    with os.fdopen(fd, "w") as f:
        json.dump(body, f)
        f.flush()
        os.fsync(f.fileno())
    return True


def _heartbeat(path: Path, token: str, stop: threading.Event) -> None:
    every = max(0.5, stale_seconds() / 6)
    while not stop.wait(every):
        body = read_claim(path)
        if body is None or body.get("token") != token:
            return
        with contextlib.suppress(OSError):
            os.utime(path)


def _remove_leftovers(ctx: RunContext, key: str) -> None:
    """Half-written folders of ``key`` (``runs/.<key>.tmp-*``) of a writer that died while it
    saved; only the claim's holder calls this, so no live process is writing them."""
    runs = Path(ctx.cache_dir) / "runs"
    if runs.is_dir():
        for tmp in runs.glob(f".{key}.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def claim(ctx: RunContext, key: str, what: str = "") -> Iterator[bool]:
    """Hold the claim of run ``key`` for the body; yields False when the run got finished.

    Waits while a live claim of another process exists; takes over a stale one. Yields True
    when this process holds the claim (train the run), False when, after waiting, the run is
    in the cache (read it). The claim is released on exit, also on an exception.
    """
    path = claim_path(ctx, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    while True:
        if _try_create(path, token, what):
            break
        body = read_claim(path)
        if body is not None and _is_stale(path, body):
            _remove_if(path, body.get("token"))
            continue
        if body is None:
            continue
        time.sleep(_POLL_S)
        if not path.exists() and (Path(ctx.cache_dir) / "runs" / key / "manifest.json").is_file():
            yield False
            return
    _remove_leftovers(ctx, key)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, token, stop), daemon=True)
    beat.start()
    try:
        yield True
    finally:
        stop.set()
        beat.join()
        _remove_if(path, token)


def tidy_finished(ctx: RunContext, key: str) -> None:
    """For a finished run: remove its stale claim and its left-over epoch checkpoints.

    A worker killed after saving a run but before releasing its claim leaves both behind; they
    are harmless (the run is read from the cache first) and tidied when a client reads the run.
    A live claim is left to its holder.
    """
    path = claim_path(ctx, key)
    body = read_claim(path)
    if body is not None:
        if not _is_stale(path, body):
            return
        _remove_if(path, body.get("token"))
    partial = Path(ctx.cache_dir) / "partial" / key
    if partial.is_dir():
        shutil.rmtree(partial, ignore_errors=True)


def claimed_execute_run(spec: RunSpec, ctx: RunContext) -> RunResult:
    """:func:`~stgmtl.payoff.worker.execute_run` under the run's claim (what executors run).

    A finished run is read from the cache without claiming; otherwise the run is claimed
    (waiting for another trainer of it, see the module docstring), the cache is read again
    (the run may have been finished meanwhile) and only then trained.
    """
    key = run_key(spec, ctx.recipe, ctx.factory_id, ctx.fingerprint)
    hit = load_run(ctx, spec, key)
    if hit is not None:
        return hit
    with claim(ctx, key, spec.describe()) as mine:
        if not mine:
            done = load_run(ctx, spec, key)
            if done is not None:
                return done
        return execute_run(spec, ctx)
