"""The payoff harness on a Dask cluster (``pip install "stgmtl[dask]"``).

:func:`dask_executor` connects to a running scheduler and yields the ``concurrent.futures``
executor of a ``distributed.Client`` (``client.get_executor``): every run is a task with
``pure=False`` and bounded ``retries``; :func:`~stgmtl.payoff.execution.run_all` collects the
results as they finish (``distributed.as_completed``). Workers load the data themselves from the
suite builder the harness passes (a picklable callable), and write finished runs to the run
cache, which must be a path every worker and the client reach (a shared file system).

Faults: a worker that dies while it trains a run (SIGKILL, out of memory, a lost node) loses
only that run's unfinished training: the scheduler starts the task again on another worker (up
to ``distributed.scheduler.allowed-failures`` times, default 3; then the run fails with
``KilledWorker``), and a task that raises is retried ``retries`` times. The new attempt takes
over the dead worker's claim (:mod:`~stgmtl.payoff.claims`). A scheduler that goes away ends
the plan with :class:`DaskEngineError` naming its address; finished runs are in the cache, so
the same command against a running scheduler trains only what is missing.

See ``docs/guide/dask.md``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["DaskEngineError", "dask_executor"]


class DaskEngineError(ConnectionError):
    """The Dask scheduler could not be reached, went away, or a run killed its workers."""


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise DaskEngineError(
            'the Dask engine needs dask.distributed: pip install "stgmtl[dask]"'
        ) from err
    return distributed


_RESUME = "finished runs are in the run cache: rerun the same command to train only what is missing"


@contextlib.contextmanager
def dask_executor(address: str, *, retries: int = 2, timeout: float | None = None) -> Iterator[Any]:
    """A ``concurrent.futures``-style executor running every submitted call on a Dask cluster.

    Parameters
    ----------
    address : str
        The scheduler, e.g. ``"tcp://10.0.0.5:8786"`` (what ``dask scheduler`` prints).
    retries : int
        Extra attempts of a run that raised (a worker that dies is handled by the scheduler).
    timeout : float, optional
        Seconds to wait for the scheduler when connecting (default: Dask's
        ``distributed.comm.timeouts.connect``, 30 s).

    Yields
    ------
    executor
        ``client.get_executor(pure=False, retries=retries)``.

    Raises
    ------
    DaskEngineError
        The scheduler cannot be reached, goes away during the plan, or a run killed
        ``allowed-failures`` workers; the message names the address.
    """
    distributed = _import_distributed()
    try:
        extra = {} if timeout is None else {"timeout": timeout}
        client = distributed.Client(address, set_as_default=False, **extra)
    except (OSError, TimeoutError) as err:
        raise DaskEngineError(
            f"--dask: cannot reach the Dask scheduler at {address} ({type(err).__name__}); "
            "start it with `dask scheduler` and workers with `dask worker ADDRESS`"
        ) from err
    try:
        yield client.get_executor(pure=False, retries=retries)
    except distributed.KilledWorker as err:
        raise DaskEngineError(
            f"a run killed Dask workers of the scheduler at {address} too often "
            f"({err.args[0] if err.args else ''}); {_RESUME}"
        ) from err
    except (cf.CancelledError, OSError, TimeoutError, distributed.comm.CommClosedError) as err:
        if client.status == "running" and not isinstance(err, cf.CancelledError):
            raise
        raise DaskEngineError(
            f"lost the Dask scheduler at {address} ({type(err).__name__}); {_RESUME}"
        ) from err
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=5)


def as_completed_dask(futures: list[Any]) -> Iterator[Any]:
    """``distributed.as_completed`` over Dask futures (in the order they finish)."""
    if not futures:
        return iter(())
    loop = futures[0].client.loop  # the futures' client, not a default one
    return iter(_import_distributed().as_completed(futures, loop=loop))
