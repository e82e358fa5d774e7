"""Benchmark task grouping: time, peak memory and ARI on planted data maps, against scikit-learn.

Planted data maps: T tasks in ``--groups`` groups of unequal size (Dirichlet(2) proportions); each
task has ``--samples`` samples x 2 values (confidence, variability), so D = 2 x samples columns.
Group g's profile is ``base + effect * z_g`` (``base ~ U(0, 1)``, ``z_g ~ N(0, 1)`` per column) and
each task adds uniform noise of standard deviation ``--noise``. The matrix is generated in column
chunks seeded by (seed, chunk), so any configuration is reproducible and can be streamed.

Every configuration runs in a fresh subprocess (``--threads`` BLAS/OpenMP threads) and reports its
peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which covers numpy and faiss C
allocations, unlike tracemalloc) including the data it generated. Configurations:

- ``stgmtl``: ``stgmtl.group(X, k)`` on the float32 array (defaults), end to end; the clustering
  stage alone (k-means + memberships on the reduced embedding) is timed separately too.
- ``stgmtl-stream``: the same from a callable of column blocks generated on the fly (the matrix is
  never held; the time includes generating the data once per pass).
- ``sklearn-full``: ``sklearn.cluster.KMeans(n_init=10)`` on the full float32 matrix, then the
  reference membership step (``fuzzy_memberships`` on its Euclidean distances).
- within ``stgmtl``: KMeans(n_init=10) + memberships on stgmtl's reduced embedding, against
  stgmtl's clustering stage on the same embedding.
- ``inits`` (one T): seeding methods on the reduced embedding, ARI and time over 5 seeds.
- ``reductions`` (one T): exact PCA, randomized PCA (sketch width, power iterations, number of
  components) and the one-pass projection, each followed by the same k-means, with and without
  the full-space refinement; ARI and time.

Results go to ``benchmarks/results/grouping.json`` and a table is printed::

    PYTHONPATH=. python benchmarks/grouping.py                    # T = 100, 1000, 10000
    PYTHONPATH=. python benchmarks/grouping.py --tasks 100 1000 --samples 5000   # quick
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

import numpy as np

GEN_CHUNK = 2048  # columns generated per seed


# ----------------------------------------------------------------------------- planted data
def planted_labels(t: int, k: int, seed: int, concentration: float = 2.0) -> np.ndarray:
    """Unequal planted groups (Dirichlet(concentration) proportions, at least 2 tasks each),
    shuffled. The default 2 gives sizes from 2 to about 5x the mean; 20 gives mean +- 22%."""
    rng = np.random.default_rng([seed, 10**9])
    alpha = np.full(k, float(concentration))
    sizes = np.floor(rng.dirichlet(alpha) * (t - 2 * k)).astype(int) + 2
    sizes[0] += t - sizes.sum()
    return rng.permutation(np.repeat(np.arange(k), sizes))


def planted_chunk(labels: np.ndarray, k: int, i: int, n_cols: int, cfg: dict) -> np.ndarray:
    """Columns ``[i * GEN_CHUNK, ...)`` of the planted matrix, float32 ``(T, <= GEN_CHUNK)``."""
    rng = np.random.default_rng([cfg["seed"], i])
    w = min(GEN_CHUNK, n_cols - i * GEN_CHUNK)
    base = rng.random(w, dtype=np.float32)
    effect = rng.standard_normal((k, w), dtype=np.float32) * np.float32(cfg["effect"])
    out = rng.random((labels.size, w), dtype=np.float32)
    out -= np.float32(0.5)
    out *= np.float32(cfg["noise"] * np.sqrt(12.0))
    out += base
    out += effect[labels]
    return out


def planted_matrix(labels: np.ndarray, k: int, cfg: dict) -> np.ndarray:
    n_cols = 2 * cfg["samples"]
    x = np.empty((labels.size, n_cols), dtype=np.float32)
    for i in range(-(-n_cols // GEN_CHUNK)):
        x[:, i * GEN_CHUNK : (i + 1) * GEN_CHUNK] = planted_chunk(labels, k, i, n_cols, cfg)
    return x


def planted_blocks(labels: np.ndarray, k: int, cfg: dict):
    n_cols = 2 * cfg["samples"]
    return lambda: (
        planted_chunk(labels, k, i, n_cols, cfg) for i in range(-(-n_cols // GEN_CHUNK))
    )


# ----------------------------------------------------------------------------- worker
def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_job(job: dict) -> dict:
    from sklearn.metrics import adjusted_rand_score as ari

    from stgmtl.grouping.grouper import TaskGrouper, group
    from stgmtl.grouping.membership import fuzzy_memberships

    cfg, t, k = job["cfg"], job["T"], job["cfg"]["groups"]
    labels = planted_labels(t, k, cfg["seed"])
    out: dict[str, Any] = {"kind": job["kind"], "T": t, "D": 2 * cfg["samples"], "k": k}
    if job["kind"] == "stgmtl-stream":
        t0, c0 = time.perf_counter(), _cpu_s()
        g = group(planted_blocks(labels, k, cfg), k, progress=False)
        out.update(time_s=time.perf_counter() - t0, ari=ari(labels, g.labels), cpu_s=_cpu_s() - c0)
        out.update(reduction=g.reduction, peak_rss_mib=_peak_mib())
        return out
    t0 = time.perf_counter()
    x = planted_matrix(labels, k, cfg)
    out["generate_s"] = time.perf_counter() - t0
    out["data_mib"] = x.nbytes / 2**20
    if job["kind"] == "stgmtl":
        t0, c0 = time.perf_counter(), _cpu_s()
        g = group(x, k, progress=False)
        out.update(time_s=time.perf_counter() - t0, ari=ari(labels, g.labels), cpu_s=_cpu_s() - c0)
        out.update(reduction=g.reduction, refined=g.refined, embedding_dim=g.embedding.shape[1])
        out["peak_rss_mib"] = _peak_mib()
        del x
        # clustering stage alone, ours vs scikit-learn on the same reduced embedding
        t0 = time.perf_counter()
        est = TaskGrouper(k, reduce="none", progress=False).fit(g.embedding)
        out["cluster_stage_s"] = time.perf_counter() - t0
        out["cluster_stage_ari"] = ari(labels, est.labels_)
        from sklearn.cluster import KMeans

        t0 = time.perf_counter()
        km = KMeans(k, n_init=10, random_state=0).fit(g.embedding)
        fuzzy_memberships(km.transform(g.embedding), 1.07)
        out["sklearn_reduced_s"] = time.perf_counter() - t0
        out["sklearn_reduced_ari"] = ari(labels, km.labels_)
        return out
    if job["kind"] == "sklearn-full":
        from sklearn.cluster import KMeans

        t0, c0 = time.perf_counter(), _cpu_s()
        km = KMeans(k, n_init=10, random_state=0, copy_x=False).fit(x)
        fuzzy_memberships(km.transform(x), 1.07)
        out.update(
            time_s=time.perf_counter() - t0, ari=ari(labels, km.labels_), cpu_s=_cpu_s() - c0
        )
        out["peak_rss_mib"] = _peak_mib()
        return out
    emb = TaskGrouper(k, progress=False).fit(x).embedding_
    del x
    if job["kind"] == "inits":
        from sklearn.cluster import KMeans

        rows = []
        for init in ("faiss-random", "faiss-k-means++", "k-means++", "greedy-k-means++", "sklearn"):
            for n_init in (1, 10):
                aris, t0 = [], time.perf_counter()
                for rs in range(5):
                    if init == "sklearn":
                        lab = KMeans(k, n_init=n_init, random_state=rs).fit(emb).labels_
                    else:
                        est = TaskGrouper(
                            k,
                            init=init,
                            n_init=n_init,
                            reduce="none",
                            random_state=rs,
                            progress=False,
                        )
                        lab = est.fit_predict(emb)
                    aris.append(ari(labels, lab))
                rows.append(
                    {
                        "init": init,
                        "n_init": n_init,
                        "ari_mean": float(np.mean(aris)),
                        "ari_min": float(np.min(aris)),
                        "time_s": (time.perf_counter() - t0) / 5,
                    }
                )
        out["rows"] = rows
        return out
    raise ValueError(job["kind"])


def run_reductions(job: dict) -> dict:
    from sklearn.metrics import adjusted_rand_score as ari

    from stgmtl.grouping.grouper import TaskGrouper

    cfg, t, k = job["cfg"], job["T"], job["cfg"]["groups"]
    labels = planted_labels(t, k, cfg["seed"])
    x = planted_matrix(labels, k, cfg)
    rows = []
    settings = [
        ("pca", {"refine": False}),
        ("pca", {"refine": False, "n_components": 128}),
        ("rpca", {"refine": False}),
        ("rpca", {"refine": False, "n_power_iter": 0}),
        ("rpca", {"refine": False, "n_power_iter": 0, "projection_dim": 256}),
        ("rpca", {"refine": False, "n_components": 128}),
        ("projection", {"refine": False}),
        ("projection", {"refine": True}),
        ("rpca", {"refine": "auto"}),
    ]
    for method, kw in settings:
        t0 = time.perf_counter()
        est = TaskGrouper(k, reduce=method, progress=False, **kw)
        est.fit(x)
        rows.append(
            {
                "reduce": method,
                **kw,
                "time_s": time.perf_counter() - t0,
                "ari": ari(labels, est.labels_),
            }
        )
    return {"kind": "reductions", "T": t, "D": x.shape[1], "k": k, "rows": rows}


def _worker(spec: str) -> None:
    job = json.loads(spec)
    if job.get("pin"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: job["threads"]]))
    res = run_reductions(job) if job["kind"] == "reductions" else run_job(job)
    print("RESULT " + json.dumps(res), flush=True)


# ----------------------------------------------------------------------------- driver
def _spawn(job: dict, timeout: float) -> dict:
    env = dict(os.environ)
    n = str(job["threads"])
    env.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"kind": job["kind"], "T": job["T"], "status": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-600:]
        return {"kind": job["kind"], "T": job["T"], "status": f"failed: {tail}"}
    res = json.loads(lines[-1][7:])
    res["status"] = "ok"
    res["wall_s"] = time.perf_counter() - t0
    return res


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--effect", type=float, default=0.02)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pin", action="store_true", help="pin workers to the first --threads cores")
    ap.add_argument(
        "--sklearn-full-max", type=int, default=10000, help="largest T for sklearn-full"
    )
    ap.add_argument("--compare-at", type=int, default=1000, help="T for inits and reductions")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per configuration")
    ap.add_argument("--out", default="benchmarks/results/grouping.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.worker)
        return
    cfg = {k: getattr(args, k) for k in ("samples", "groups", "effect", "noise", "seed")}
    base = {"cfg": cfg, "threads": args.threads, "pin": args.pin}
    jobs = []
    for t in args.tasks:
        jobs.append({**base, "kind": "stgmtl", "T": t})
        if t == max(args.tasks):
            jobs.append({**base, "kind": "stgmtl-stream", "T": t})
        if t <= args.sklearn_full_max:
            jobs.append({**base, "kind": "sklearn-full", "T": t})
    if args.compare_at:
        jobs.append({**base, "kind": "inits", "T": args.compare_at})
        jobs.append({**base, "kind": "reductions", "T": args.compare_at})
    results, load0 = [], os.getloadavg()
    for job in jobs:
        print(f"running {job['kind']} T={job['T']} ...", file=sys.stderr, flush=True)
        results.append(_spawn(job, args.timeout))
        print("   ", {k: v for k, v in results[-1].items() if k != "rows"}, file=sys.stderr)
    meta = {
        "command": "PYTHONPATH=. python benchmarks/grouping.py " + " ".join(argv or sys.argv[1:]),
        "config": cfg,
        "threads": args.threads,
        "pinned": args.pin,
        "cpu_count": os.cpu_count(),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    by = {(r["kind"], r["T"]): r for r in results}
    for t in args.tasks:
        ours, r = by.get(("stgmtl", t), {}), by.get(("sklearn-full", t))
        if ours.get("status") == "ok":
            ours["sklearn_reduced_ratio"] = ours["sklearn_reduced_s"] / ours["cluster_stage_s"]
            if r and r.get("status") == "ok":
                r["speedup_vs_stgmtl"] = r["time_s"] / ours["time_s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    os.replace(tmp, args.out)

    print(
        f"\nPlanted data maps: D = 2 x {args.samples} samples, k = {args.groups}, "
        f"{args.threads} threads; peak RSS includes the generated data"
    )
    print(
        f"{'config':<16}{'T':>7}{'time s':>9}{'cpu s':>8}{'cluster s':>10}{'peak MiB':>10}"
        f"{'ARI':>7}{'x slower':>10}  note"
    )
    for r in results:
        if r["kind"] in ("inits", "reductions"):
            continue
        note = r.get("status", "")
        if note == "ok":
            note = r.get("reduction", "") + (" + full-space refine" if r.get("refined") else "")
        print(
            f"{r['kind']:<16}{r['T']:>7}{_fmt(r.get('time_s')):>9}{_fmt(r.get('cpu_s'), 1):>8}"
            f"{_fmt(r.get('cluster_stage_s')):>10}{_fmt(r.get('peak_rss_mib'), 0):>10}"
            f"{_fmt(r.get('ari'), 3):>7}{_fmt(r.get('speedup_vs_stgmtl'), 1):>10}  {note}"
        )
    print("\nClustering stage on the same reduced embedding (k-means + memberships):")
    for t in args.tasks:
        r = by.get(("stgmtl", t), {})
        if r.get("status") == "ok":
            print(
                f"  T={t:>6}: stgmtl {r['cluster_stage_s']:.3f} s "
                f"(ARI {r['cluster_stage_ari']:.3f})"
                f", sklearn KMeans(n_init=10) {r['sklearn_reduced_s']:.3f} s "
                f"(ARI {r['sklearn_reduced_ari']:.3f}), ratio {r['sklearn_reduced_ratio']:.1f}"
            )
    for r in results:
        if r["kind"] == "inits" and r.get("status") == "ok":
            print(f"\nSeeding on the reduced embedding, T = {r['T']} (5 seeds):")
            print(f"{'init':<18}{'n_init':>7}{'ARI mean':>10}{'ARI min':>9}{'time s':>9}")
            for row in r["rows"]:
                print(
                    f"{row['init']:<18}{row['n_init']:>7}{row['ari_mean']:>10.3f}"
                    f"{row['ari_min']:>9.3f}{row['time_s']:>9.3f}"
                )
        if r["kind"] == "reductions" and r.get("status") == "ok":
            print(f"\nReductions, T = {r['T']}, D = {r['D']} (then the same k-means):")
            for row in r["rows"]:
                extra = {k: v for k, v in row.items() if k not in ("reduce", "time_s", "ari")}
                print(
                    f"  {row['reduce']:<11}{str(extra):<62}ARI {row['ari']:.3f}"
                    f"  {row['time_s']:.2f} s"
                )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
