"""Cost of each affinity signal, as a ratio to the plain training step, and the memory it adds.

STG-MTL's small CNN (``stgmtl.models.SmallCNN``), batch 256, random 32x32x3 images and random
binary labels, CPU, Adam, T = 10 and T = 100 tasks. **One training run per T** with every probe
attached at its default schedule: because a probe never changes training, all of them can
watch the same run, and each one's time is measured separately around its own call. The ratio
of a signal is ``(plain step time + its added time per step) / plain step time``, averaged over
the run (so a probe that runs every 10th step is charged a tenth of its probed-step cost).
A few untimed plain steps come first (``--warmup``); the probes' schedules start after them.

* free signals (datamap, confusion, label, colearning): the ``DataMapRecorder`` update after
  every step and its per-epoch snapshots (what they read), plus their one-off computation from
  the data maps at the end, charged to this run;
* ``tag`` (every 10th step, at most 8 sources per probed step), ``grad-cosine`` (every 10th
  step, sketch 1024), ``rep-cosine`` (every step), ``ptg`` (every 10th step, 4 sampled tasks:
  their 4 singles, 4 self-pairs and 6 pairs);
* ``grad-tag``: the collector's per-step copy plus the post-hoc estimate (256 probe samples,
  d = 32), charged to this run, and reported in seconds.

Memory: the state each probe keeps (sums, counts, snapshots, caches: bytes, computed) and the
peak resident memory it adds (``--memory``, Linux: each signal in a fresh process: 4 plain
steps to warm up, then the peak (VmHWM) reset and 4 plain steps, then the peak reset and the
same 4 steps with the signal attached, its post-hoc computation included; the added memory is
the last peak minus the one before).

Run under the shared lock (2 CPU cores shared by several sessions):
``PYTHONPATH=. python benchmarks/affinity_cost.py --memory`` (``--signals ptg tag`` measures
only those, in the same kind of run, against the same run's plain step).
Writes benchmarks/results/affinity_cost.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from stgmtl.affinity import free_signals
from stgmtl.loop import Batch, Step, task_losses
from stgmtl.models import SmallCNN
from stgmtl.record import (
    DataMapRecorder,
    GradCosineProbe,
    GradTAGCollector,
    PTGProbe,
    RepCosineProbe,
    TAGProbe,
    grad_tag_affinity,
)

RESULTS = Path(__file__).resolve().parent / "results" / "affinity_cost.json"
PROBES = ("tag", "grad-cosine", "rep-cosine", "ptg")
TARGETS = {"free": 1.02, "rep-cosine": 1.5, "tag": 2.0}
GRADTAG = {"projection_dim": 32}
GRADTAG_SAMPLES = 256


def _data(t: int, batches: int, batch: int) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for b in range(batches):
        x = torch.randn(batch, 3, 32, 32, generator=g)
        y = (torch.rand(batch, t, generator=g) > 0.5).float()
        out.append((x, y, torch.arange(b * batch, (b + 1) * batch)))
    return out


def _probes(model: torch.nn.Module, t: int, only: str | None) -> dict[str, Any]:
    names = [f"t{i}" for i in range(t)]
    make = {
        "tag": lambda: TAGProbe(task_names=names),
        "grad-cosine": lambda: GradCosineProbe(task_names=names),
        "rep-cosine": lambda: RepCosineProbe(task_names=names, model=model),
        "ptg": lambda: PTGProbe(task_names=names),
    }
    return {k: f() for k, f in make.items() if _wanted(only, k)}


def _wanted(only: str | list[str] | None, name: str) -> bool:
    """Whether ``name`` is measured: all by default, else the named signal(s)."""
    return only is None or name == only or (isinstance(only, list) and name in only)


def _bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_bytes(v) for v in obj)
    return 0


def _probe_bytes(name: str, probe: Any) -> int:
    sd = probe.state_dict()
    total = _bytes(sd["state"]) + _bytes(sd["past"]) + _bytes(sd["snapshots"])
    if name == "grad-cosine":
        total += _bytes(list(probe._hash.values()))  # the per-layer bucket and sign cache
    if name == "rep-cosine" and probe._z is not None:
        total += _bytes(probe._z)  # the captured representation of the last step
    return total


def run(t: int, args: argparse.Namespace, only: str | list[str] | None = None) -> dict[str, Any]:
    """One training run with the probes attached; per-signal added seconds per step."""
    torch.manual_seed(0)
    model = SmallCNN(t)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = _data(t, args.steps_per_epoch, args.batch)
    probes = _probes(model, t, only)
    with_free = _wanted(only, "free")
    with_gradtag = _wanted(only, "grad-tag")
    snaps = list(range(1, args.epochs + 1))
    rec = (
        DataMapRecorder(t, len(data) * args.batch, snapshot_epochs=snaps, snapshot_kind="epoch")
        if with_free
        else None
    )
    collector = GradTAGCollector(GRADTAG_SAMPLES) if with_gradtag else None
    added: dict[str, float] = defaultdict(float)
    plain = 0.0
    steps = 0
    for x, y, _ in data[: args.warmup]:  # untimed plain steps; the probes' schedules start after
        loss = task_losses(model(x), y).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for epoch in range(args.epochs):
        for x, y, idx in data:
            t0 = time.perf_counter()
            logits = model(x)
            per = task_losses(logits, y)
            loss = per.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t1 = time.perf_counter()
            for name, p in probes.items():
                s = time.perf_counter()
                p.update(model, opt, x, y)
                added[name] += time.perf_counter() - s
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            if rec is not None:
                s = time.perf_counter()
                rec.update(logits.detach(), y, idx)
                added["free"] += time.perf_counter() - s
            if collector is not None:
                s = time.perf_counter()
                step = Step(model, opt, Batch(x, y, idx, None, None), logits, per, loss,
                            None, epoch, steps)  # fmt: skip
                collector.after_step(step)
                added["grad-tag"] += time.perf_counter() - s
            plain += (t1 - t0) + (t3 - t2)
            steps += 1
        for p in probes.values():
            p.end_epoch()
        if rec is not None:
            s = time.perf_counter()
            rec.end_epoch()
            added["free"] += time.perf_counter() - s
        if collector is not None:
            collector.on_epoch_end(epoch, model)
    one_off: dict[str, float] = {}
    if rec is not None:
        s = time.perf_counter()
        dm = rec.compute()
        free_signals(dm)
        one_off["free"] = time.perf_counter() - s
    if collector is not None:
        s = time.perf_counter()
        grad_tag_affinity(model, collector.batches, **GRADTAG)
        one_off["grad-tag"] = time.perf_counter() - s
    step_s = plain / steps
    rows = {}
    for name in [*PROBES, "free", "grad-tag"]:
        if name not in added and name not in one_off:
            continue
        per_step = added.get(name, 0.0) / steps
        total = added.get(name, 0.0) + one_off.get(name, 0.0)
        row = {
            "added_s_per_step": round(per_step, 5),
            "ratio_per_step": round(1 + per_step / step_s, 4),
            "ratio_this_run": round(1 + total / plain, 4),
        }
        if name in one_off:
            row["one_off_s"] = round(one_off[name], 3)
            row["one_off_plain_steps"] = round(one_off[name] / step_s, 2)
        if name in probes:
            row["state_bytes"] = _probe_bytes(name, probes[name])
            row["probed_steps"] = probes[name].steps_probed
        if name == "free" and rec is not None:
            sd = rec.state_dict()
            row["state_bytes"] = _bytes(sd["state"]) + _bytes(sd["snapshots"])
        if name == "grad-tag" and collector is not None:
            row["state_bytes"] = _bytes([(b.inputs, b.targets) for b in collector.batches])
        rows[name] = row
    for p in probes.values():
        if isinstance(p, RepCosineProbe):
            p.detach()
    return {"plain_step_s": round(step_s, 4), "timed_steps": steps, "signals": rows}


def _child(signal: str, t: int, args: argparse.Namespace) -> None:
    """In this fresh process: a few plain steps (twice, the peak reset before the second), then
    (peak reset) the same steps with one signal attached; prints both peaks (kB)."""
    args.epochs, args.steps_per_epoch, args.warmup = 2, 2, 0
    run_plain(t, args)  # first-use costs (lazy imports, thread pools) land before the resets
    reset = _reset_peak()
    run_plain(t, args)
    plain = _peak_kb()
    reset = _reset_peak() and reset
    run(t, args, only=signal)
    print(json.dumps({"plain_kb": plain, "signal_kb": _peak_kb(), "reset": reset}))


def _peak_kb() -> int:
    """This process's peak resident memory (VmHWM; ``ru_maxrss`` would carry the parent's peak
    over ``fork``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident memory (Linux: ``5`` into ``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_plain(t: int, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = SmallCNN(t)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x, y, _ in _data(t, args.steps_per_epoch, args.batch) * args.epochs:
        loss = task_losses(model(x), y).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def memory(t: int, args: argparse.Namespace, only: list[str] | None = None) -> dict[str, int]:
    """Per signal, in a fresh process: peak RSS of the steps with the signal minus that of the
    same plain steps before it (bytes; the peak is reset in between)."""
    out = {}
    for signal in [s for s in ["free", *PROBES, "grad-tag"] if _wanted(only, s)]:
        cmd = [sys.executable, __file__, "--child", signal, "--tasks", str(t),
               "--batch", str(args.batch)]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        kb = json.loads(res.stdout.strip().splitlines()[-1])
        if not kb["reset"]:
            raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs): Linux only")
        out[signal] = 1024 * (kb["signal_kb"] - kb["plain_kb"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, nargs="+", default=[10, 100])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps-per-epoch", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2, help="untimed plain steps before the run")
    p.add_argument("--memory", action="store_true", help="also measure peak RSS per signal")
    p.add_argument("--signals", nargs="+", default=None, help="measure only these signals")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        _child(args.child, args.tasks[0], args)
        return
    result: dict[str, Any] = {
        "command": "PYTHONPATH=. python "
        "benchmarks/affinity_cost.py " + " ".join(sys.argv[1:]),
        "model": "stgmtl.models.SmallCNN", "batch": args.batch, "optimizer": "Adam(lr=1e-3)",
        "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.machine(), "targets": TARGETS, "runs": {},
    }  # fmt: skip
    for t in args.tasks:
        print(f"T = {t} ...", file=sys.stderr, flush=True)
        res = run(t, args, only=args.signals)
        if args.memory:
            for name, extra in memory(t, args, args.signals).items():
                res["signals"][name]["peak_rss_added_bytes"] = extra
        result["runs"][str(t)] = res
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"{'T':>4} {'signal':<12} {'ratio/step':>10} {'ratio run':>10} {'one-off s':>9} "
          f"{'state MB':>9} {'peak +MB':>9}")  # fmt: skip
    for t, res in result["runs"].items():
        for name, row in res["signals"].items():
            peak = row.get("peak_rss_added_bytes")
            mb = "-" if peak is None else f"{peak / 1e6:.1f}"
            print(
                f"{t:>4} {name:<12} {row['ratio_per_step']:>10.3f} {row['ratio_this_run']:>10.3f} "
                f"{row.get('one_off_s', 0.0):>9.2f} {row.get('state_bytes', 0) / 1e6:>9.3f} {mb:>9}"
            )
        print(f"{t:>4} plain step {res['plain_step_s']:.3f} s over {res['timed_steps']} steps")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
