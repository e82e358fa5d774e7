"""Killed, not raised: SIGKILL a recording run or a save in a subprocess, then recover.

- ``fit_datamaps`` with a checkpoint is SIGKILLed mid-epoch (and, in a second run, in the middle
  of writing a checkpoint); run again with the same arguments, it resumes and returns exactly
  (bitwise) the data maps of an uninterrupted run.
- ``DataMaps.save`` / ``TaskGroups.save`` over an earlier save is SIGKILLed while the new folder
  is being written, in the window between the two renames that swap it in, and just after the
  swap: the folder then loads as the previous save (or, after the swap, the new one), intact.

The child processes pause at the chosen point (a slow write) and announce it with a marker file;
the test then sends SIGKILL, so nothing in the child gets to clean up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from stgmtl import DataMaps, TaskGroups

ROOT = Path(__file__).resolve().parents[1]

RECORD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from stgmtl import fit_datamaps
    from stgmtl.loop import Hook
    import stgmtl._io as sio

    ckpt, out, pause, marker = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    torch.set_num_threads(1)

    def announce_and_wait():
        marker.write_text("ready")
        time.sleep(120)  # the test SIGKILLs us here

    class PauseAt(Hook):  # the same hook in every run, so checkpoints match the hook list
        def after_step(self, step):
            if pause == f"step:{step.epoch}:{step.step}":
                announce_and_wait()

    if pause.startswith("checkpoint:"):  # a slow write: pause before the rename of checkpoint n
        n, calls, replace = int(pause.split(":")[1]), [0], os.replace
        def slow_replace(src, dst):
            if str(dst) == ckpt:
                calls[0] += 1
                if calls[0] == n:
                    announce_and_wait()
            return replace(src, dst)
        sio.os.replace = slow_replace

    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g)
    y = (x[:, :3] + 0.3 * torch.randn(48, 3, generator=g) > 0).float()
    loader = DataLoader(TensorDataset(x, y, torch.arange(48)), batch_size=8, shuffle=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    dm = fit_datamaps(loader, model, epochs=4, lr=0.01, scheduler="onecycle", progress=False,
                      checkpoint_path=ckpt if ckpt != "-" else None, snapshot_epochs=[2, 3, 4],
                      hooks=[PauseAt()])
    dm.save(out)
    """
)

SAVE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import numpy as np
    import stgmtl._io as sio
    from stgmtl import DataMaps, TaskGroups

    kind, src, dst, pause, marker = sys.argv[1:6]

    def announce_and_wait():
        Path(marker).write_text("ready")
        time.sleep(120)  # the test SIGKILLs us here

    if pause == "writing":  # the data files are written, the manifest not yet
        write_manifest = sio.write_manifest
        def slow_manifest(*args, **kwargs):
            announce_and_wait()
        sio.write_manifest = slow_manifest
        import stgmtl.datamaps.io as dio, stgmtl.grouping.groups as gio
        dio.write_manifest = gio.write_manifest = slow_manifest
    else:  # "between": old folder moved aside, new not yet in place; "after": both renames done
        calls, replace = [0], os.replace
        def slow_replace(a, b):
            out = replace(a, b)
            calls[0] += 1
            if (pause == "between" and ".old-" in str(b)) or (
                pause == "after" and str(b) == dst and calls[0] >= 1 and ".tmp-" in str(a)
            ):
                announce_and_wait()
            return out
        sio.os.replace = slow_replace
    cls = DataMaps if kind == "DataMaps" else TaskGroups
    cls.load(src).save(dst)
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, "-c", script, *args], check=True, env=_env(),
                   timeout=300, capture_output=True)  # fmt: skip


def _run_and_kill(script: str, *args: str, marker: Path) -> None:
    """Start the child, wait until it announces its pause point, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args, str(marker)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 240
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child ended before its pause point:\n{proc.stdout.read()!r}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never reached its pause point")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


ARRAYS = ("sample_ids", "confidence", "variability", "correctness", "count", "targets",
          "snapshot_confidence", "snapshot_variability", "snapshot_correctness")  # fmt: skip


def _assert_same_maps(a: DataMaps, b: DataMaps) -> None:
    for name in ARRAYS:
        x, y = np.ascontiguousarray(getattr(a, name)), np.ascontiguousarray(getattr(b, name))
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name  # bitwise
    assert a.snapshot_epochs == b.snapshot_epochs and a.epochs == b.epochs


@pytest.mark.slow
@pytest.mark.parametrize(
    "pause", ["step:2:14", "checkpoint:2"], ids=["mid-epoch", "mid-checkpoint"]
)
def test_sigkilled_recording_resumes_to_the_uninterrupted_result(tmp_path, pause):
    ref = tmp_path / "reference"
    _run(RECORD, "-", str(ref), "none", str(tmp_path / "unused"))
    ckpt = tmp_path / "run.ckpt"
    _run_and_kill(RECORD, str(ckpt), str(tmp_path / "never"), pause, marker=tmp_path / "marker")
    assert not (tmp_path / "never").exists()
    assert ckpt.is_file()  # the last complete checkpoint (epoch 2, or epoch 1 mid-write)
    _run(RECORD, str(ckpt), str(tmp_path / "resumed"), "none", str(tmp_path / "unused"))
    _assert_same_maps(DataMaps.load(tmp_path / "resumed"), DataMaps.load(ref))


def _maps(seed: int) -> DataMaps:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(size=(3, 50))
    return DataMaps(task_names=["a", "b", "c"], sample_ids=np.arange(50), confidence=conf,
                    variability=conf / 4, correctness=(conf > 0.5).astype(np.float64),
                    count=np.full((3, 50), seed + 1, np.int32),
                    targets=(rng.uniform(size=(3, 50)) > 0.5).astype(np.int32))  # fmt: skip


def _groups(seed: int) -> TaskGroups:
    import stgmtl

    x = np.random.default_rng(seed).standard_normal((6, 4))
    return stgmtl.group(x, 2, random_state=seed, progress=False)


def _same(kind: str, a, b) -> bool:
    if kind == "DataMaps":
        _assert_same_maps(a, b)
        return True
    return np.array_equal(a.membership, b.membership) and a.task_names == b.task_names


@pytest.mark.parametrize("kind", ["DataMaps", "TaskGroups"])
@pytest.mark.parametrize("pause", ["writing", "between", "after"])
def test_sigkilled_save_leaves_a_loadable_folder(tmp_path, kind, pause):
    make, cls = (_maps, DataMaps) if kind == "DataMaps" else (_groups, TaskGroups)
    old, new = make(0), make(1)
    dst = old.save(tmp_path / "saved")
    src = new.save(tmp_path / "source")
    _run_and_kill(SAVE, kind, str(src), str(dst), pause, marker=tmp_path / "marker")
    if pause == "between":
        assert not dst.exists()  # killed in the rename window: only the moved-aside copy is left
        assert [p.name.startswith(".saved.old-") for p in tmp_path.iterdir()].count(True) == 1
    back = cls.load(dst)  # puts the previous save back if needed
    assert _same(kind, back, new if pause == "after" else old)
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]  # recovered or cleaned
    new.save(dst)  # and the next save works
    assert _same(kind, cls.load(dst), new)
