"""Grouping at scale: 100,000 tasks into 1,000 groups, 100,000 features, choose_k at 10,000 tasks.

Planted data maps as in ``benchmarks/grouping.py`` (group profile ``base + effect * z_g`` plus
uniform noise of standard deviation ``noise`` per value, generated in seeded column chunks).
Every configuration runs in a fresh subprocess that reports its wall time, CPU time and peak
resident memory (``ru_maxrss``, including the generated data; generation is not timed).

``large_k``
    T = 100,000 tasks, D = 16,000 features (probe-sized data maps: 2,000 samples x 4 snapshots
    x 2 statistics), k = 1,000 groups of about 100 tasks (Dirichlet(20) proportions, sd about
    22% of the mean; the first group also takes the rounding remainder: sizes 46 to 580 with
    the default seed), ``stgmtl.group(X, 1000)`` with its defaults. Also reported:
    the same k-means without swap rounds on the same embedding (what seeding + restarts alone
    give) and the time of each stage.
``wide``
    T = 10,000 tasks, D = 100,000 features (50,000 samples x 2), k = 10 (Dirichlet(2) sizes, as
    in ``benchmarks/grouping.py``), ``stgmtl.group(X, 10)``.
``choose_k``
    ``stgmtl.choose_k(X, ks=range(2, 21))`` at T = 10,000, D = 16,000, planted k = 10: one
    reduction, 3 seeds per k.

Targets (issue 15): large_k < 300 s, < 16 GiB, ARI >= 0.99; wide < 20 s; choose_k < 60 s.

Run (under the shared lock)::

    PYTHONPATH=. python benchmarks/grouping_scale.py                 # all three
    PYTHONPATH=. python benchmarks/grouping_scale.py --only wide choose_k

Writes benchmarks/results/grouping_scale.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grouping import planted_labels, planted_matrix  # noqa: E402 - the benchmark's generator

CONFIGS: dict[str, dict[str, Any]] = {
    "large_k": {
        "T": 100_000,
        "samples": 8_000,
        "groups": 1_000,
        "effect": 0.05,
        "noise": 0.1,
        "concentration": 20.0,
        "seed": 0,
        "target_s": 300,
        "target_gib": 16,
        "target_ari": 0.99,
    },  # fmt: skip
    "wide": {
        "T": 10_000,
        "samples": 50_000,
        "groups": 10,
        "effect": 0.02,
        "noise": 0.1,
        "concentration": 2.0,
        "seed": 0,
        "target_s": 20,
    },  # fmt: skip
    "choose_k": {
        "T": 10_000,
        "samples": 8_000,
        "groups": 10,
        "effect": 0.02,
        "noise": 0.1,
        "concentration": 2.0,
        "seed": 0,
        "target_s": 60,
        "ks": [2, 20],
    },  # fmt: skip
}


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _stage_timers(out: dict[str, float]) -> None:
    """Time the grouper's stages (wrapping the functions it calls; this process only)."""
    import stgmtl.grouping.grouper as grouper

    for name in ("reduce_features", "kmeans", "refine_full_space", "fuzzy_memberships"):
        fn = getattr(grouper, name)

        def timed(*a: Any, _fn: Any = fn, _name: str = name, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _fn(*a, **kw)
            finally:
                out[_name] = out.get(_name, 0.0) + time.perf_counter() - t0

        setattr(grouper, name, timed)


def run_job(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from sklearn.metrics import adjusted_rand_score as ari

    from stgmtl import choose_k, group

    labels = planted_labels(cfg["T"], cfg["groups"], cfg["seed"], cfg["concentration"])
    x = planted_matrix(labels, cfg["groups"], cfg)
    sizes = np.bincount(labels)
    out: dict[str, Any] = {"kind": kind, **cfg, "D": x.shape[1], "data_gib": x.nbytes / 2**30,
                           "group_sizes": [int(sizes.min()), int(sizes.max())]}  # fmt: skip
    if kind == "choose_k":
        t0, c0 = time.perf_counter(), _cpu_s()
        res = choose_k(x, ks=range(cfg["ks"][0], cfg["ks"][1] + 1), progress=False)
        out.update(time_s=time.perf_counter() - t0, cpu_s=_cpu_s() - c0, best_k=res.best_k,
                   peak_rss_gib=_peak_gib())  # fmt: skip
        return out
    stages: dict[str, float] = {}
    _stage_timers(stages)
    t0, c0 = time.perf_counter(), _cpu_s()
    g = group(x, cfg["groups"], progress=False)
    out.update(time_s=time.perf_counter() - t0, cpu_s=_cpu_s() - c0, ari=ari(labels, g.labels),
               reduction=g.reduction, refined=g.refined, embedding_dim=g.embedding.shape[1],
               stages_s=stages, peak_rss_gib=_peak_gib())  # fmt: skip
    if kind == "large_k":  # seeding + restarts alone, on the same embedding
        from stgmtl.grouping.kmeans import kmeans

        del x
        t0 = time.perf_counter()
        plain = kmeans(g.embedding, cfg["groups"], swap_rounds=0)
        out["kmeans_without_swaps"] = {"time_s": time.perf_counter() - t0,
                                       "ari": ari(labels, plain.labels)}  # fmt: skip
    return out


def _spawn(kind: str, cfg: dict[str, Any], threads: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    n = str(threads)
    env.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(cfg)],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"kind": kind, **cfg, "status": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"kind": kind, **cfg, "status": f"failed: {(proc.stderr or proc.stdout)[-800:]}"}
    return {**json.loads(lines[-1][7:]), "status": "ok"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--out", default="benchmarks/results/grouping_scale.json")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, cfg = args.worker[0], json.loads(args.worker[1])
        print("RESULT " + json.dumps(run_job(kind, cfg)), flush=True)
        return
    results, load0 = [], os.getloadavg()
    for kind in args.only:
        print(f"running {kind} ...", file=sys.stderr, flush=True)
        results.append(_spawn(kind, CONFIGS[kind], args.threads, args.timeout))
        print("   ", results[-1], file=sys.stderr, flush=True)
    meta = {
        "command": "PYTHONPATH=. python benchmarks/grouping_scale.py " + " ".join(sys.argv[1:]),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    os.replace(tmp, out)
    print(f"\n{'config':<10}{'T':>8}{'D':>8}{'k':>6}{'time s':>9}{'target':>8}{'peak GiB':>10}"
          f"{'ARI':>7}  note")  # fmt: skip
    for r in results:
        note = r["status"] if r["status"] != "ok" else (
            f"best_k={r['best_k']}" if r["kind"] == "choose_k" else
            f"{r['reduction']}{' + refine' if r['refined'] else ''}, stages "
            + ", ".join(f"{k} {v:.0f}s" for k, v in r["stages_s"].items())
        )  # fmt: skip
        ari = r.get("ari")
        print(f"{r['kind']:<10}{r['T']:>8}{r.get('D', 2 * r['samples']):>8}{r['groups']:>6}"
              f"{r.get('time_s', float('nan')):>9.1f}{r['target_s']:>8}"
              f"{r.get('peak_rss_gib', float('nan')):>10.1f}"
              f"{'' if ari is None else f'{ari:.3f}':>7}  {note}")  # fmt: skip
        if "kmeans_without_swaps" in r:
            w = r["kmeans_without_swaps"]
            print(f"{'':<10}k-means without swap rounds on the same embedding: ARI {w['ari']:.3f}"
                  f" ({w['time_s']:.0f} s)")  # fmt: skip
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
