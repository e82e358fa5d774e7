"""CIFAR-100: record data maps in one multi-task run, group the 100 tasks, compare to superclasses.

Default run (``--preset stgmtl``): the first 45,000 train images, 5 epochs, batch 256,
pos_weight 99, cumulative snapshots after epochs 2..5, k = 20, as in STG-MTL's anchor; but a
wider 3-block CNN (``wide-cnn``) trained with a one-cycle learning rate peaking at 4e-3, and the
tasks grouped by their cross-task confusion embedding (``--features confusion``):

    STGMTL_DATA=/path/to/shared/data stgmtl demo          # or: python -m stgmtl.demo

``--preset stg-mtl`` runs STG-MTL's own recipe instead (its small CNN, constant Adam 1e-3, the
flattened [confidence, variability] data-map features); any option given explicitly wins over
the preset. The run prints every group with its tasks and their superclasses, the NMI / ARI of
the grouping against the 20 superclasses beside random groups of the same sizes (and the same
data maps grouped with the other feature kind), and writes data maps, groups, plots and a
summary JSON under ``--out`` (default ``runs/cifar100/``).

``--study`` runs the grouped-training study, which is now the payoff harness's CIFAR-100 preset
(``stgmtl payoff --suite cifar100``: equal, asserted budgets, paired seeds, fixed random
partitions, a choice on validation confirmed on fresh seeds); the ``--study-*`` options map to
its options (:func:`study_argv`). The round-1 study (``compare_methods``) compared systems at
unequal budgets on unpaired seeds and is retired.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stgmtl._io import atomic_file
from stgmtl.datamaps import DataMaps
from stgmtl.datasets import TaskSuite, cifar100_suite
from stgmtl.grouping import TaskGroups, group
from stgmtl.models import MODEL_NAMES, build_model
from stgmtl.plots import datamap_figure, memberships_figure, save_figure
from stgmtl.record import fit_datamaps
from stgmtl.specialise import grouping_agreement

__all__ = ["PRESETS", "main", "parse_args"]

#: Defaults of the recording recipe and task features; options given explicitly win.
PRESETS: dict[str, dict[str, Any]] = {
    "stgmtl": {"model": "wide-cnn", "scheduler": "onecycle", "lr": 4e-3, "features": "confusion"},
    "stg-mtl": {"model": "cnn", "scheduler": "constant", "lr": 1e-3, "features": "datamap"},
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="stgmtl demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--data-root", default=None, help="folder with cifar100/ (default $STGMTL_DATA)")
    p.add_argument("--download", action="store_true", help="fetch the official archive if absent")
    p.add_argument("--out", default="runs/cifar100", help="output folder (default %(default)s)")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="stgmtl",
        help="defaults of --model, --scheduler, --lr and --features (default %(default)s): "
        + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()),
    )
    p.add_argument("--model", choices=MODEL_NAMES, default=None)
    p.add_argument("--width", type=float, default=1.0, help="model width multiplier")
    p.add_argument("--epochs", type=int, default=5, help="recording epochs (default 5)")
    p.add_argument(
        "--snapshots",
        default=None,
        help="comma list of snapshot epochs (default 2..epochs, cumulative)",
    )
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="use only the first N of the 45,000 training images",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=None, help="(peak) learning rate")
    p.add_argument(
        "--scheduler",
        choices=("constant", "onecycle"),
        default=None,
        help="learning-rate schedule of the recording run",
    )
    p.add_argument("-k", "--k", type=int, default=20, help="number of groups (default 20)")
    p.add_argument("--m", type=float, default=1.07, help="fuzzifier (default 1.07)")
    p.add_argument(
        "--features",
        default=None,
        help="task feature kind (stgmtl.features): 'datamap' (STG-MTL) or "
        "'confusion' (cross-task confusion embedding)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--permutations",
        type=int,
        default=1000,
        help="random-group permutations for the NMI/ARI baseline",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")
    _add_study_options(p)
    args = p.parse_args(argv)
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _add_study_options(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group(
        "grouped-training study (--study: the payoff harness's cifar100 preset, "
        "`stgmtl payoff --suite cifar100`; options left out take that preset's values)"
    )
    s.add_argument(
        "--study",
        action="store_true",
        help="run the grouped-training study (the payoff harness) instead of the demo; it uses "
        "the payoff preset's recipe (not --model, --preset, --seed) and reads the data from "
        "--data-root / $STGMTL_DATA (no --download)",
    )
    s.add_argument("--study-seeds", default=None, help="comma list of seeds (payoff --seeds)")
    s.add_argument("--study-k", default=None, help="numbers of groups, comma list (payoff --ks)")
    s.add_argument("--study-train-limit", type=int, default=None, help="payoff --train-limit")
    s.add_argument("--study-train-epochs", type=int, default=None, help="payoff --epochs")
    s.add_argument("--study-width", type=float, default=None, help="payoff --width")
    s.add_argument("--study-test-limit", type=int, default=None, help="payoff --test-limit")


def study_argv(args: argparse.Namespace, out: Path) -> list[str]:
    """The ``stgmtl payoff`` command line that the demo's ``--study`` runs.

    The CIFAR-100 preset with the data-map and confusion signals, the ``--study-*`` options
    given, results under ``out / "payoff"``.
    """
    argv = ["payoff", "--suite", "cifar100", "--signals", "datamap,confusion"]
    argv += ["--out", str(out / "payoff")]
    for flag, value in (
        ("--seeds", args.study_seeds),
        ("--ks", args.study_k),
        ("--train-limit", args.study_train_limit),
        ("--epochs", args.study_train_epochs),
        ("--width", args.study_width),
        ("--test-limit", args.study_test_limit),
        ("--data-root", args.data_root),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv + (["-q"] if args.no_progress else [])


def _snapshots(arg: str | None, epochs: int) -> list[int]:
    if arg:
        return [int(e) for e in arg.split(",")]
    return list(range(2, epochs + 1)) if epochs >= 2 else [epochs]


def record(
    suite: TaskSuite,
    *,
    model: str,
    width: float,
    epochs: int,
    snapshots: Sequence[int],
    batch_size: int,
    lr: float,
    scheduler: str,
    seed: int,
    progress: bool,
) -> DataMaps:
    """One multi-task training run with a data-map recorder: returns ``stgmtl.DataMaps``."""
    torch.manual_seed(seed)
    net = build_model(model, suite.num_tasks, width)
    loader = suite.loader(batch_size, shuffle=True, seed=seed)
    return fit_datamaps(
        loader,
        net,
        epochs=epochs,
        lr=lr,
        scheduler=scheduler,  # type: ignore[arg-type]
        pos_weight=suite.pos_weight(),
        task_names=suite.task_names,
        num_samples=len(suite),
        snapshot_epochs=snapshots,
        snapshot_kind="cumulative",
        progress=progress,
        random_state=seed,
    )


def describe_groups(groups: Any, superclass: dict[str, str]) -> str:
    """One block per group: its tasks with their superclasses, the most common superclass."""
    lines = []
    for c, tasks in enumerate(groups.groups):
        sup = [superclass[t] for t in tasks]
        # most common superclass; ties go to the first listed (a set would follow hash order)
        top = max(sup, key=sup.count) if sup else "-"
        share = sup.count(top) / len(sup) if sup else 0.0
        lines.append(f"group {c:2d} ({len(tasks):2d} tasks; {share:4.0%} {top})")
        lines += [f"    {t:<16s} {s}" for t, s in zip(tasks, sup, strict=True)]
    return "\n".join(lines)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=float))


def group_and_report(
    dm: DataMaps,
    suite: TaskSuite,
    k: int,
    m: float,
    seed: int,
    permutations: int,
    progress: bool,
    features: str = "datamap",
) -> tuple[TaskGroups, dict[str, float]]:
    groups = group(dm, k=k, m=m, random_state=seed, progress=progress, features=features)
    assert suite.task_superclass is not None
    agreement = grouping_agreement(
        groups.labels, suite.task_superclass, n_permutations=permutations, random_state=seed
    )
    return groups, agreement


def _fmt_agreement(a: dict[str, float]) -> str:
    return (
        f"NMI {a['nmi']:.3f} (random groups of the same sizes: {a['nmi_random_mean']:.3f} "
        f"+- {a['nmi_random_std']:.3f}, p = {a['nmi_p']:.4f})\n"
        f"ARI {a['ari']:.3f} (random groups of the same sizes: {a['ari_random_mean']:.3f} "
        f"+- {a['ari_random_std']:.3f}, p = {a['ari_p']:.4f})"
    )


def run_demo(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    progress = not args.no_progress
    t0 = time.perf_counter()
    train = cifar100_suite(
        "train45k",
        root=args.data_root,
        download=args.download,
        limit=args.train_limit,
        seed=args.seed,
    )
    print(f"data: {train} (pos_weight {float(train.pos_weight().mean()):.1f})")
    snaps = _snapshots(args.snapshots, args.epochs)
    dm = record(
        train,
        model=args.model,
        width=args.width,
        epochs=args.epochs,
        snapshots=snaps,
        batch_size=args.batch_size,
        lr=args.lr,
        scheduler=args.scheduler,
        seed=args.seed,
        progress=progress,
    )
    t_record = time.perf_counter() - t0
    dm.save(out / "datamaps")
    t1 = time.perf_counter()
    groups, agreement = group_and_report(
        dm, train, args.k, args.m, args.seed, args.permutations, progress, args.features
    )
    t_group = time.perf_counter() - t1
    groups.save(out / "groups")
    superclass = dict(zip(train.task_names, train.task_superclass or [], strict=True))
    print(describe_groups(groups, superclass))
    print(f"\nk = {args.k} groups vs the 20 CIFAR-100 superclasses:\n{_fmt_agreement(agreement)}")
    # the same data maps grouped with the other feature kind, for comparison (a few seconds)
    other = "confusion" if args.features == "datamap" else "datamap"
    _, other_agreement = group_and_report(
        dm, train, args.k, args.m, args.seed, args.permutations, False, other
    )
    print(f"\nthe same data maps with features={other!r}:\n{_fmt_agreement(other_agreement)}")
    plots = {}
    # one data map per group (its first task) keeps the grid readable for 100 tasks
    shown = [g[0] for g in groups.groups if g]
    for name, fn in (
        ("datamaps", lambda: datamap_figure(dm, tasks=shown, ncols=5, max_points=5000)),
        ("memberships", lambda: memberships_figure(groups)),
    ):
        path = out / f"{name}.png"
        try:
            save_figure(fn(), path, bbox_inches="tight")
            plots[name] = str(path)
        except Exception as exc:  # a plot failing must not lose the run's results
            print(f"warning: {name} plot failed: {exc!r}", file=sys.stderr)
    summary = {
        "config": vars(args),
        "snapshots": snaps,
        "train_images": len(train),
        "agreement": agreement,
        "features": args.features,
        "agreement_other_features": {"features": other, **other_agreement},
        "groups": groups.groups,
        "seconds": {"record": t_record, "group": t_group, "total": time.perf_counter() - t0},
        "plots": plots,
    }
    _write_json(out / "summary.json", summary)
    print(f"\nrecording {t_record:.0f} s, grouping {t_group:.1f} s; results in {out}/")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.study:  # the payoff harness records, groups, trains and decides itself
        from stgmtl.payoff_command import payoff_main

        argv = study_argv(args, out)
        print("the study is the payoff harness: stgmtl " + " ".join(argv), flush=True)
        return payoff_main(argv[1:])
    run_demo(args, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
