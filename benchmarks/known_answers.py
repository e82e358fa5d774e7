"""The known-answer study: power on planted CIFAR-10 suites, false positives on exact nulls.

Each trial is one instance (a new draw of the noisy classes and of the noise; the images are the
shared CIFAR-10 copy's): planted trials run the harness with
:data:`stgmtl.payoff.study.POWER_STUDY` (no pair truth, k = 2, the planted split and the label
statistic as grouping sources, one random partition, one network per group at budget 2, 5 fresh
confirmation seeds); null trials run :func:`stgmtl.payoff.study.exact_null_trial` (2 candidates
that are the one model retrained with other seeds). Trials run interleaved (every level's
instance 0 first, then instance 1, ...) and each is appended to ``OUT/trials.jsonl`` as it
finishes, so a run stopped by ``--minutes`` still leaves a complete table of what it did.

    STGMTL_DATA=../shared/data PYTHONPATH=. python benchmarks/known_answers.py \\
        --strengths 1.0,0.5 --instances 3 --null-instances 3 --minutes 40
    python benchmarks/known_answers.py --summarise   # the tables from OUT/trials.jsonl
    python benchmarks/known_answers.py --simulate    # the null rate at the study's shapes

``--summarise`` also draws ``OUT/power.png``: power (with its interval) against each level's
measured effect, and the false-positive rate on the nulls. Other recipes of the same mechanism:
``--n-noisy 8`` (more noisy than clean tasks), ``--epochs`` / ``--width`` (longer training,
a smaller trunk), ``--one-model plain,uncertainty`` (the loss-balanced one model as a reference
too); a run writes them to ``OUT/settings.json``, which ``--summarise`` reads.

``--mechanism two-images`` plants the other mechanism (:func:`stgmtl.payoff.two_image_suite`:
the second side's tasks read a second grey image in the same input; ``--n-noisy`` is then the
second side's size); its null trials are the exact nulls of the strongest level's two-image
suite. ``--record SIGNALS`` records the signals once per planted instance (seed 100) and checks
whether each one's 2-group partition is the planted split: ``OUT/signals.jsonl``, and per signal
power (recovered and confirmed) in ``--summarise`` and the figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl


def _trials(args: argparse.Namespace) -> list[tuple[str, float, int]]:
    strengths = [float(s) for s in args.strengths.split(",") if s.strip()]
    out = []
    for i in range(max(args.instances, args.null_instances)):
        # the strongest level first, then the null, then the other levels: a run cut short
        # still has both ends of the study
        levels = [("planted", s, i) for s in strengths if i < args.instances]
        null = [("null", 0.0, i)] if i < args.null_instances else []
        out += levels[:1] + null + levels[1:]
    return out


def _settings(out: Path) -> dict:
    """The recipe a run recorded (``OUT/settings.json``; the first study's defaults if none)."""
    f = out / "settings.json"
    first = {"n_noisy": 5, "test_limit": 2000, "mechanism": "label-noise"}
    return {**first, **json.loads(f.read_text())} if f.is_file() else first


def summarise(path: Path, alpha: float = 0.05) -> None:
    from stgmtl.payoff.study import Trial, false_positive_rate, power_by_strength

    trials = [Trial(**json.loads(line)) for line in path.read_text().splitlines() if line]
    with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=4, tbl_width_chars=200):
        for t in trials:
            print(
                f"{t.kind:8s} strength {t.strength:g} instance {t.instance}: {t.verdict}, "
                f"hit {t.hit}, effect {[round(e, 4) for e in t.effect]}, "
                f"{t.seconds:.0f} s, {t.detail}"
            )
        if any(t.kind == "planted" for t in trials):
            print(power_by_strength(trials, alpha))
        if any(t.kind == "null" for t in trials):
            print(false_positive_rate(trials, alpha).describe("false-positive rate"))
    print(f"total trial time {sum(t.seconds for t in trials):.0f} s over {len(trials)} trials")
    by_side(trials, path.parent, alpha)
    backfill_free_rows(path.parent, trials)
    per_signal = signal_power(path.parent, trials, alpha)
    if per_signal.height:
        print(
            "per signal: its 2-group partition is the planted split (recovered), and power "
            "(recovered and confirmed):"
        )
        with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=3):
            print(per_signal)
    if trials:
        figure(trials, path.parent / "power.png", alpha, per_signal)


def by_side(trials: list, out: Path, alpha: float = 0.05) -> None:
    """The planted grouping's test gain per side (clean / noisy), mean over seeds, and its t
    interval over instances (the seeds of an instance share its draw of sides)."""
    import numpy as np
    from scipy import stats

    from stgmtl.payoff.study import effect_by_side
    from stgmtl.payoff.tables import PayoffResult

    rows = []
    for t in (t for t in trials if t.kind == "planted"):
        folder = out / f"planted-{t.strength:g}-{t.instance}" / "result"
        if not folder.is_dir():
            continue
        suite = _suite_of(out, t.strength, t.instance)
        for r in effect_by_side(PayoffResult.load(folder), suite).iter_rows(named=True):
            rows.append({"strength": t.strength, "instance": t.instance, **r})
    if not rows:
        return
    tab = pl.DataFrame(rows)
    print("planted grouping vs one model at its budget, per side (test, relative loss decrease):")
    for (strength, side), g in tab.group_by("strength", "side", maintain_order=True):
        m = g.group_by("instance").agg(pl.col("gain").mean())["gain"].to_numpy()
        half = stats.t.ppf(1 - alpha / 2, m.size - 1) * m.std(ddof=1) / np.sqrt(m.size)
        print(
            f"  strength {strength:g} {side}: {100 * g['gain'].mean():+.2f} % "
            f"({100 * (m.mean() - half):+.2f}, {100 * (m.mean() + half):+.2f}) over {m.size} "
            f"instances; {int((g['gain'] > 0).sum())} of {g.height} seeds > 0"
        )


#: seed of the recording run of ``--record`` (not an exploration or confirmation seed)
RECORD_SEED = 100


def _partition_rows(suite, found: dict, seconds: dict) -> list[dict]:
    from stgmtl.payoff.search import partition_from_affinity

    planted = {frozenset(suite.sides[0]), frozenset(suite.sides[1])}
    rows = []
    for name, aff in found.items():
        groups = partition_from_affinity(aff, 2, random_state=0).groups
        rows.append({
            "signal": name, "groups": groups,
            "recovered": {frozenset(g) for g in groups} == planted,
            "mixes": suite.mixes(groups), "seconds": seconds.get(name, 0.0),
        })  # fmt: skip
    return rows


def free_rows(suite) -> list[dict]:
    """The controls that need no training: the label statistic of the training labels and a
    seeded random matrix (``random (matrix)``: not the trial's size-matched random partition)."""
    from stgmtl.payoff.signal_runs import label_control, random_affinity
    from stgmtl.specialise.data import targets_of

    names = suite.task_names()
    found = {
        "label": label_control(targets_of(suite.train), names),
        "random (matrix)": random_affinity(names, RECORD_SEED + suite.instance),
    }
    return _partition_rows(suite, found, {})


def recovery(suite, factory, recipe, signals: list[str]) -> list[dict]:
    """Record ``signals`` in one all-task run and check each one's 2-group partition.

    Returns one row per signal and per free control (:func:`free_rows`): its groups, whether
    they are the planted split exactly (``recovered``), whether they mix the sides, and the
    recording's seconds (shared by the signals of the run). A signal that recovers the split
    proposes the very grouping the trial trained as ``planted`` (same tasks, same networks).
    """
    from dataclasses import replace

    from stgmtl.payoff.signal_runs import record_signals

    t0 = time.perf_counter()
    found = record_signals(suite.train, factory, replace(recipe, seed=RECORD_SEED), signals)
    seconds = time.perf_counter() - t0
    rows = _partition_rows(suite, found, dict.fromkeys(found, seconds))
    return rows + free_rows(suite)


def _suite_of(out: Path, strength: float, instance: int):
    from stgmtl.datasets import cifar10_planted_splits

    st = _settings(out)
    return cifar10_planted_splits(
        strength=strength, instance=instance, n_noisy=st["n_noisy"],
        test_limit=st["test_limit"], mechanism=st["mechanism"],
    )  # fmt: skip


def signal_rows(out: Path) -> list[dict]:
    """The rows of ``OUT/signals.jsonl`` (none if absent); the first version's name of the
    seeded random matrix, ``random``, is read as ``random (matrix)``."""
    f = out / "signals.jsonl"
    rows = [json.loads(line) for line in f.read_text().splitlines() if line] if f.is_file() else []
    for r in rows:
        r["first_version_random"] = r["signal"] == "random"
        r["signal"] = "random (matrix)" if r["signal"] == "random" else r["signal"]
    return rows


def backfill_free_rows(out: Path, trials: list) -> None:
    """Append the free controls' rows (:func:`free_rows`) for recorded instances without them
    (a folder written before they were added, or a run stopped between the two writes)."""
    rows = signal_rows(out)
    recorded = {(r["strength"], r["instance"]) for r in rows}
    have = {(r["strength"], r["instance"]) for r in rows if r["signal"] == "label"}
    # rows of the first version named the same seeded matrix "random"
    old = {(r["strength"], r["instance"]) for r in rows if r["first_version_random"]}
    for strength, instance in sorted(recorded - have):
        with (out / "signals.jsonl").open("a") as fh:
            for row in free_rows(_suite_of(out, strength, instance)):
                if row["signal"].startswith("random") and (strength, instance) in old:
                    continue
                fh.write(json.dumps({"strength": strength, "instance": instance, **row}) + "\n")


def record(out: Path, strength: float, instance: int, suite, factory, recipe, signals: str):
    """:func:`recovery` for one planted instance, appended to ``OUT/signals.jsonl``."""
    names = [v.strip() for v in signals.split(",") if v.strip()]
    rows = recovery(suite, factory, recipe, names)
    with (out / "signals.jsonl").open("a") as f:
        for row in rows:
            f.write(json.dumps({"strength": strength, "instance": instance, **row}) + "\n")


def rows_planted(rows: list[dict], strength: float, instance: int) -> list[list[str]]:
    """The planted split of an instance, read back from a recovered row (or ``[]``)."""
    for r in rows:
        if r["strength"] == strength and r["instance"] == instance and r["recovered"]:
            return r["groups"]
    return []


def signal_power(out: Path, trials: list, alpha: float = 0.05) -> pl.DataFrame:
    """Per level and signal: how often its 2-group partition is the planted split, and its
    power (recovered **and** the trial confirmed the planted grouping), with intervals."""
    from stgmtl.payoff.study import rate

    rows = signal_rows(out)
    if not rows:
        return pl.DataFrame()
    # the signal's power is the trial's verdict only where the trial confirmed exactly the
    # planted split (with k = 2, an unmixed grouping is the split; checked, not assumed)
    hit = {
        (t.strength, t.instance): t.hit
        and {frozenset(g) for g in t.groups}
        == {frozenset(g) for g in rows_planted(rows, t.strength, t.instance)}
        for t in trials
        if t.kind == "planted"
    }
    out_rows = []
    table = pl.DataFrame(rows).drop("groups", "first_version_random")
    for (strength, signal), g in table.group_by("strength", "signal", maintain_order=True):
        rec = g["recovered"].to_list()
        inst = g["instance"].to_list()
        both = [r and hit.get((strength, i), False) for r, i in zip(rec, inst, strict=True)]
        p = rate(both, alpha)
        out_rows.append({
            "strength": strength, "signal": signal, "n": len(rec), "recovered": sum(rec),
            "power": p.rate, "lo": p.lo, "hi": p.hi, "record_s": float(g["seconds"].mean()),
        })  # fmt: skip
    return pl.DataFrame(out_rows).sort("signal", "strength")


def simulate(n_sim: int = 2000) -> None:
    """The false-positive rate simulated (stgmtl.payoff.null) at the shapes of both trials."""
    import numpy as np

    from stgmtl.payoff.null import simulate_null

    shapes = {
        "planted trial (1x one model + 3 groupings of cost 2, budget 2)": (
            np.array([1.0, 2.0, 2.0, 2.0]), 2.0),
        "exact-null trial (2 retrained copies of one model, budget 1)": (np.ones(2), 1.0),
    }  # fmt: skip
    for name, (costs, budget) in shapes.items():
        for noise in (0.01, 0.03, 0.10):
            r = simulate_null(systems=costs.size, tasks=10, seeds=3, confirm_seeds=5,
                              budget=budget, costs=costs, n_sim=n_sim, noise_sd=noise,
                              random_state=0)  # fmt: skip
            print(
                f"{name}, noise {noise:g}: verdict {100 * r.rate:.2f} % [{100 * r.lo:.2f}, "
                f"{100 * r.hi:.2f}]; validation only {100 * r.validation_rate:.2f} % "
                f"[{100 * r.validation_lo:.2f}, {100 * r.validation_hi:.2f}]; a candidate to "
                f"confirm in {100 * r.candidate_rate:.1f} %",
                flush=True,
            )


def figure(trials: list, path: Path, alpha: float = 0.05, per_signal=None, dpi: int = 120) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stgmtl.payoff.study import false_positive_rate, power_by_strength

    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    if any(t.kind == "planted" for t in trials):
        tab = power_by_strength(trials, alpha)
        x = [100 * e for e in tab["effect"].to_list()]
        y = tab["power"].to_list()
        err = [[p - lo for p, lo in zip(y, tab["lo"], strict=True)],
               [hi - p for p, hi in zip(y, tab["hi"], strict=True)]]  # fmt: skip
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label="planted split + label (harness)")
        for xi, yi, s in zip(x, y, tab["strength"].to_list(), strict=True):
            ax.annotate(f"strength {s:g}", (xi, yi), textcoords="offset points", xytext=(-30, 8),
                        fontsize=8)  # fmt: skip
        effect = dict(zip(tab["strength"].to_list(), x, strict=True))
        if per_signal is not None and per_signal.height:
            for (signal,), g in per_signal.group_by("signal", maintain_order=True):
                g = g.filter(pl.col("strength").is_in(list(effect))).sort("strength")
                ax.plot(
                    [effect[v] for v in g["strength"]],
                    g["power"].to_list(),
                    marker=".",
                    lw=1,
                    ls=":" if str(signal).startswith("random") else "-",
                    label=str(signal),
                )
    if any(t.kind == "null" for t in trials):
        fp = false_positive_rate(trials, alpha)
        ax.axhline(fp.rate, color="grey", ls="--", label=f"exact null: {fp.k}/{fp.n}")
        ax.axhspan(fp.lo, fp.hi, color="grey", alpha=0.15)
    ax.set_xlabel("measured effect: planted grouping vs one model at 2x (% test loss)")
    ax.set_xlim(min(ax.get_xlim()[0], -0.5), max(ax.get_xlim()[1], 0.5))
    ax.set_ylabel("power (confirmed, unmixed)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pil_kwargs={"optimize": True})
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strengths", default="1.0,0.5")
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--null-instances", type=int, default=2)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--test-limit", type=int, default=2000)
    p.add_argument(
        "--n-noisy", type=int, default=5, help="noisy-side (second-image side) tasks of the 10"
    )
    p.add_argument(
        "--mechanism",
        default="label-noise",
        choices=("label-noise", "two-images"),
        help="what is planted (stgmtl.payoff.planted.MECHANISMS)",
    )
    p.add_argument("--one-model", default="plain",
                   help="one-model variants of the planted trials' reference (plain,uncertainty: "
                   "the loss-balanced one model too, the better one on validation)")  # fmt: skip
    p.add_argument(
        "--record",
        default="",
        help="signals recorded once per planted instance (seed 100, the recipe), "
        "whose 2-group partitions are checked against the planted split: "
        "OUT/signals.jsonl (e.g. datamap,confusion,colearning,tag,grad-cosine,"
        "rep-cosine,grad-tag)",
    )
    p.add_argument("--minutes", type=float, default=None, help="start no trial after this")
    p.add_argument("--until", default=None, help="start no trial after this UTC time (HH:MM)")
    p.add_argument("--out", default="benchmarks/results/known_answers")
    p.add_argument("--workers", type=int, default=1, help="runs in parallel (spawned processes)")
    p.add_argument("--summarise", action="store_true")
    p.add_argument("--simulate", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    log = out / "trials.jsonl"
    if args.simulate:
        simulate()
        return
    if args.summarise:
        summarise(log)
        return

    import contextlib
    import functools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from stgmtl.datasets import cifar10_planted_splits
    from stgmtl.models import model_factory
    from stgmtl.payoff.study import exact_null_trial, planted_trial
    from stgmtl.specialise import TrainConfig

    out.mkdir(parents=True, exist_ok=True)
    settings = {"n_noisy": args.n_noisy, "test_limit": args.test_limit, "epochs": args.epochs,
                "width": args.width, "seeds": args.seeds, "one_model": args.one_model,
                "mechanism": args.mechanism}  # fmt: skip
    strengths = [float(v) for v in args.strengths.split(",") if v.strip()]
    if args.mechanism == "two-images":  # the level whose exact null the null trials are
        settings["null_level"] = max(strengths)
    if (out / "settings.json").is_file() or log.exists():
        # a folder of the first study has trials and no settings.json: its recipe is the default
        old = _settings(out)
        if any(old.get(k, v) != v for k, v in settings.items()) or (
            not (out / "settings.json").is_file() and (args.n_noisy, args.test_limit) != (5, 2000)
        ):
            raise SystemExit(f"{out} holds trials of another recipe ({old}): use another --out")
    (out / "settings.json").write_text(json.dumps(settings))
    recipe = TrainConfig(width=args.width, epochs=args.epochs, batch_size=256, lr=1e-3)
    factory = model_factory("cnn")
    seeds = tuple(int(s) for s in args.seeds.split(","))
    done = set()
    if log.exists():
        for line in log.read_text().splitlines():
            d = json.loads(line)
            done.add((d["kind"], d["strength"], d["instance"]))
    threads = 1 if args.workers > 1 else None
    pool = (
        ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
        if args.workers > 1
        else None
    )
    t0 = time.perf_counter()
    with contextlib.nullcontext(pool) if pool is None else pool:
        recorded = {(r["strength"], r["instance"]) for r in signal_rows(out)}
        for kind, s, i in _trials(args):
            if (kind, s, i) in done and not (
                kind == "planted" and args.record and (s, i) not in recorded
            ):
                continue
            if args.minutes is not None and time.perf_counter() - t0 > 60 * args.minutes:
                print(f"--minutes {args.minutes:g} reached: no more trials started", flush=True)
                break
            if args.until is not None and time.strftime("%H:%M", time.gmtime()) >= args.until:
                print(f"--until {args.until} (UTC) reached: no more trials started", flush=True)
                break
            # the two-image null is the exact null of the strongest level's suite
            level = max(strengths) if kind == "null" and args.mechanism == "two-images" else s
            data = functools.partial(cifar10_planted_splits, strength=level, instance=i, kind=kind,
                                     n_noisy=args.n_noisy, test_limit=args.test_limit,
                                     mechanism=args.mechanism)  # fmt: skip
            if (kind, s, i) in done:  # trained before a stop: only its recording is missing
                record(out, s, i, data(), factory, recipe, args.record)
                continue
            if kind == "planted":
                asked = [v.strip() for v in args.one_model.split(",") if v.strip()]
                variants = ("plain", *(v for v in asked if v != "plain"))  # plain: always
                trial = planted_trial(data, factory, recipe, out / f"planted-{s:g}-{i}",
                                      executor=pool, seeds=seeds, threads=threads,
                                      cache_dir=str(out / "cache"),
                                      one_model_variants=variants)  # fmt: skip
            else:
                trial = exact_null_trial(data, factory, recipe, out / "cache", seeds=seeds,
                                         executor=pool, threads=threads)  # fmt: skip
            with log.open("a") as f:
                f.write(json.dumps(trial.to_dict(), default=float) + "\n")
            if kind == "planted" and args.record:
                record(out, s, i, data(), factory, recipe, args.record)
            print(
                f"{kind} {s:g} #{i}: {trial.verdict} (hit {trial.hit}) effect "
                f"{[round(e, 4) for e in trial.effect]} {trial.seconds:.0f} s "
                f"[{time.perf_counter() - t0:.0f} s]",
                flush=True,
            )
    summarise(log)


if __name__ == "__main__":
    main()
