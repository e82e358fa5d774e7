"""The one way a selection back-end reads an affinity: a validated ``(T, T)`` float64 matrix.

Every back-end takes a :class:`~stgmtl.affinity.TaskAffinity` or a plain ``(T, T)`` array (with
optional task names) and reads it with the same convention: ``values[i, j]`` is the effect of
source task ``i`` on recipient task ``j``, larger meaning more helpful.

Unobserved pairs follow the toolkit's one rule (:data:`stgmtl.affinity.UNOBSERVED_RULE`): in a
``TaskAffinity`` an off-diagonal NaN is a pair the signal never observed, and it reads as the
mean of the observed off-diagonal values (as in the affinity features). A plain array carries
no such convention: a NaN in it, on the diagonal or off it, is refused as the sign of a broken
computation, naming where (wrap it in a ``TaskAffinity`` to mean "unobserved", or set an unread
diagonal to 0). The diagonal (a task's effect on itself) is never read by a selection rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stgmtl._checks import check_names, fail
from stgmtl.affinity import TaskAffinity

__all__ = ["affinity_values"]


def affinity_values(
    affinity: Any, task_names: Any = None, *, name: str = "affinity", min_tasks: int = 2
) -> tuple[np.ndarray, list[str]]:
    """``(values, task_names)`` of an affinity, checked for selection.

    Parameters
    ----------
    affinity : TaskAffinity or array-like
        A ``TaskAffinity`` or a real ``(T, T)`` matrix, ``[i, j]`` = effect of task ``i`` on
        task ``j`` (larger = more helpful).
    task_names : sequence of str, optional
        Names of the ``T`` tasks for an array (default ``task_0`` ...); for a ``TaskAffinity``
        it must be omitted or equal to its ``task_names``.
    name : str
        The argument's name in error messages.
    min_tasks : int
        Fewest tasks accepted.

    Returns
    -------
    values : np.ndarray
        float64 ``(T, T)`` copy; the diagonal is set to 0 (selection rules never read it).
    task_names : list of str
    """
    if isinstance(affinity, TaskAffinity):
        names = list(affinity.task_names)
        if task_names is not None and list(task_names) != names:
            raise fail("task_names", f"None or the affinity's own {len(names)} task names",
                       task_names)  # fmt: skip
        values = affinity.filled()
    else:
        if isinstance(affinity, (str, bytes, dict)) or affinity is None:
            raise fail(name, "a TaskAffinity or a (T, T) array", type(affinity).__name__,
                       error=TypeError)  # fmt: skip
        arr = np.asarray(affinity)
        if arr.dtype.kind not in "fiub":
            raise fail(name, "a real-valued (T, T) matrix", arr.dtype, error=TypeError)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise fail(name, "a square (T, T) matrix", arr.shape)
        values = arr.astype(np.float64, copy=True)
        names = check_names("task_names", task_names, values.shape[0])
    t = values.shape[0]
    if t < min_tasks:
        raise fail(name, f"at least {min_tasks} tasks", f"{t} task(s)")
    if not isinstance(affinity, TaskAffinity) and np.isnan(np.diag(values)).any():
        bad = [names[j] for j in np.flatnonzero(np.isnan(np.diag(values)))]
        raise fail(name, "a finite diagonal in a plain array (selection never reads it, so set "
                   "it to 0; only a TaskAffinity marks 'no self-affinity' with NaN)",
                   f"NaN on the diagonal for tasks {bad}")  # fmt: skip
    np.fill_diagonal(values, 0.0)
    if np.isinf(values).any():
        raise fail(name, "finite values", "inf")
    n_nan = int(np.isnan(values).sum())
    if n_nan:
        raise fail(
            name,
            "finite off-diagonal values in a plain array (to mean 'unobserved pair', pass a "
            "TaskAffinity: its NaN pairs read as the mean of the observed ones)",
            f"{n_nan} NaN off-diagonal entries",
        )
    return values, names
