"""The memory-traffic floor of recording every row at T = 10,000 tasks, measured in place.

Where the time of ``benchmarks/recording_overhead.py``'s ``all rows`` case goes: after each real
training step of the same small CNN (batch 256, 2 threads), one of these updates a state of
5,000 rows x 10,000 tasks (random rows) in one of the recorder's layouts, with the checking pass
unless said. The compact layout (the default, 8 bytes a cell: one packed int64 word;
:mod:`stgmtl.record.compact`), its check fused into the update pass (with an exact rollback):

``compact``
    the native compact kernel as built from ``stgmtl/record/csrc/datamap_update.cpp``.
``compact/no-check``
    the same with ``validate=False``.
``compact/no-math``
    the same source with the probability replaced by its argument: memory traffic only.

The float64 layout (``layout="float64"``: float64 ``s1``/``s2``, int32 ``correct``, int8
``targets``, 21 bytes a cell), its check a separate pass:

``shipped``
    the native kernel as built from ``stgmtl/record/csrc/datamap_update.cpp``.
``shipped/2t``
    the shipped kernel on two threads (``cpu_threads=2``).
``shipped/no-check``
    the shipped kernel with ``validate=False`` (no checking pass: the inputs are read once).
``no-math``
    the same source with the probability replaced by a copy of its argument (no ``exp``, no
    division): the same loads and stores, so its time is what the memory traffic alone costs.
``no-math/no-check``
    the same without the checking pass.

Modes rotate within each round; medians over rounds. If ``no-math`` is close to ``shipped``,
the update is bound by memory traffic, and only fewer bytes per (sample, task) cell can make
it faster.

Run (under the shared lock)::

    PYTHONPATH=. python benchmarks/recording_floor.py --rounds 25

Writes benchmarks/results/recording_floor.json and prints the figures.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import stgmtl.record.native as native

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording_overhead import small_cnn  # noqa: E402

_PROBABILITY = "static_cast<double>(C(1) / (C(1) + exp_c(u[t])))"
_COMPACT_PROBABILITY = "const C p = C(1) / (C(1) + exp_c(u));"


def build(source: str, out: Path) -> ctypes.CDLL:
    """Compile ``source`` with the flags the recorder uses; the loaded library."""
    cxx = native._compiler()  # the recorder's own compiler choice and flags
    if cxx is None:
        raise SystemExit("no C++ compiler found")
    src = out.with_suffix(".cpp")
    src.write_text(source)
    subprocess.run([cxx, *native._flags(), str(src), "-o", str(out)], check=True)
    return ctypes.CDLL(str(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--rows", type=int, default=5_000, help="state rows")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--out", default="benchmarks/results/recording_floor.json")
    args = p.parse_args()
    torch.set_num_threads(2)
    shipped = native._SOURCE.read_text()
    for probability in (_PROBABILITY, _COMPACT_PROBABILITY):
        if shipped.count(probability) != 1:
            raise SystemExit(f"the kernel source changed: expected one {probability!r}")
    with tempfile.TemporaryDirectory() as tmp:
        lib = build(shipped, Path(tmp) / "shipped.so")
        no_math = shipped.replace(_PROBABILITY, "static_cast<double>(u[t])").replace(
            _COMPACT_PROBABILITY, "const C p = u;"
        )
        bare = build(no_math, Path(tmp) / "nm.so")
        libs = {  # mode: (library, threads, validate)
            "compact": (lib, 1, 1),
            "compact/no-check": (lib, 1, 0),
            "compact/no-math": (bare, 1, 1),
            "shipped": (lib, 1, 1),
            "shipped/2t": (lib, 2, 1),
            "shipped/no-check": (lib, 1, 0),
            "no-math": (bare, 1, 1),
            "no-math/no-check": (bare, 1, 0),
        }
        b, t, r = args.batch, args.tasks, args.rows
        torch.manual_seed(0)
        gen = np.random.default_rng(0)
        model = small_cnn(t)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(b, 3, 32, 32)
        y = (torch.rand(b, t) > 0.5).float()
        state = [np.zeros((r, t), d) for d in (np.float64, np.float64, np.int32, np.int8)]
        seen, out = np.zeros(r, np.int64), np.zeros(5)
        words, cseen = np.zeros((r, t), np.int64), np.zeros(r, np.int64)
        flips = np.zeros(native.flips_size(b, t), np.int64)
        ptr = ctypes.c_void_p

        def step() -> tuple[np.ndarray, float]:
            t0 = time.perf_counter()
            logits = model(x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return logits.detach().contiguous().numpy(), time.perf_counter() - t0

        steps: list[float] = []
        times: dict[str, list[float]] = {m: [] for m in libs}
        modes = list(libs)
        for i in range(args.rounds + 2):  # the first two rounds warm up
            for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:
                z, dt = step()
                rows = gen.integers(0, r, b).astype(np.int64)
                t0 = time.perf_counter()
                kernel, threads, validate = libs[mode]
                if mode.startswith("compact"):
                    if cseen.max() > 200:  # timing only: keep clear of the 255 limit
                        cseen[:] = 0
                    ret = kernel.stgmtl_compact_update(
                        0, 0, ptr(z.ctypes.data), ptr(y.numpy().ctypes.data), None,
                        ptr(rows.ctypes.data), ctypes.c_int64(b), ctypes.c_int64(t),
                        ctypes.c_int64(r), ptr(words.ctypes.data), None,
                        ptr(cseen.ctypes.data), None, ptr(flips.ctypes.data), validate, threads,
                        ptr(out.ctypes.data),
                    )  # fmt: skip
                else:
                    ret = kernel.stgmtl_binary_update(
                        0, 0, ptr(z.ctypes.data), ptr(y.numpy().ctypes.data), None,
                        ptr(rows.ctypes.data), ctypes.c_int64(b), ctypes.c_int64(t),
                        ctypes.c_int64(r), *(ptr(a.ctypes.data) for a in state), None,
                        ptr(seen.ctypes.data), validate, threads, ptr(out.ctypes.data),
                    )  # fmt: skip
                elapsed = time.perf_counter() - t0
                assert ret == 0, ret
                if i >= 2:
                    times[mode].append(elapsed)
                    steps.append(dt)
    step_s = statistics.median(steps)
    result = {
        "benchmark": "recording_floor",
        "command": "PYTHONPATH=. python benchmarks/recording_floor.py " + " ".join(sys.argv[1:]),
        "tasks": t,
        "state_rows": r,
        "batch": b,
        "bytes_per_cell_state": {"compact": 8, "float64": 21},
        "median_step_s": step_s,
        "median_update_s": {m: statistics.median(v) for m, v in times.items()},
    }
    result["one_plus_update_over_step"] = {
        m: 1 + u / step_s for m, u in result["median_update_s"].items()
    }
    for m, u in result["median_update_s"].items():
        print(
            f"{m:<16} update {u * 1e3:6.2f} ms, step {step_s * 1e3:.0f} ms: "
            f"1 + update / step = {result['one_plus_update_over_step'][m]:.4f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
