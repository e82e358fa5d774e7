"""CIFAR-10, STG-MTL's 15 tasks: record data maps, group the tasks, optionally run the payoff study.

The 15 tasks: the 10 one-vs-rest classes, living being (bird, cat, deer, dog, frog, horse), not
living being, odd class id, upside down (images flipped vertically with probability 0.5; is it
flipped?) and random labels. STG-MTL reports that the unrelated tasks (upside down, random) end
up apart from the class tasks.

    STGMTL_DATA=/path/to/shared/data python examples/cifar10_15_tasks.py
    STGMTL_DATA=/path/to/shared/data python examples/cifar10_15_tasks.py --study

``--study`` then asks whether grouping pays, with the payoff harness (``stgmtl payoff --suite
cifar10-15``: equal, asserted budgets, paired seeds, a choice on validation confirmed on fresh
seeds; see docs/results/payoff.md); the example prints the command it runs.

Uses every CIFAR-10 training image available (the shared ``.npz`` copy holds 4,000: the first
400 per class; the official archive, ``--download``, holds 50,000) and the official test split.
Outputs go under ``--out`` (default ``runs/cifar10_15/``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import stgmtl
from stgmtl.cli import main as stgmtl_main
from stgmtl.datasets import cifar10_15_suite
from stgmtl.models import MODEL_NAMES, build_model
from stgmtl.plots import datamap_figure, memberships_figure, save_figure


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", default=None, help="folder with cifar10/ (default $STGMTL_DATA)")
    p.add_argument("--download", action="store_true", help="fetch the official archive if absent")
    p.add_argument("--out", default="runs/cifar10_15")
    p.add_argument("--model", choices=MODEL_NAMES, default="cnn")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("-k", "--k", type=int, default=3, help="number of groups (default 3)")
    p.add_argument("--m", type=float, default=1.07)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-plots", action="store_true", help="skip the data-map and heatmap plots")
    p.add_argument(
        "--study",
        action="store_true",
        help="then run the payoff harness (stgmtl payoff --suite cifar10-15) at k = --k",
    )
    p.add_argument("--study-seeds", default=None, help="payoff --seeds (default its preset's)")
    p.add_argument("--study-epochs", type=int, default=None, help="payoff --epochs")
    p.add_argument("--study-width", type=float, default=None, help="payoff --width")
    p.add_argument("--test-limit", type=int, default=None, help="first N test images only")
    return p.parse_args(argv)


def study_argv(args: argparse.Namespace) -> list[str]:
    """The ``stgmtl payoff`` command line that ``--study`` runs (the 15-task preset's recipe, the
    data-map signal, no pair truth, the example's k and model; ``--study-*`` options override)."""
    argv = ["payoff", "--suite", "cifar10-15", "--truth", "none", "--no-singles"]
    argv += ["--signals", "datamap", "--ks", str(args.k), "--model", args.model]
    argv += ["--out", str(Path(args.out) / "payoff")]
    for flag, value in (
        ("--seeds", args.study_seeds),
        ("--epochs", args.study_epochs),
        ("--width", args.study_width),
        ("--test-limit", args.test_limit),
        ("--data-root", args.data_root),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv + (["-q"] if args.no_progress else [])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = cifar10_15_suite(
        "train", root=args.data_root, download=args.download, limit=args.limit, seed=args.seed
    )
    print(f"data: {train}")
    torch.manual_seed(args.seed)
    net = build_model(args.model, train.num_tasks, args.width)
    dm = stgmtl.fit_datamaps(
        train.loader(args.batch_size, shuffle=True, seed=args.seed),
        net,
        epochs=args.epochs,
        lr=args.lr,
        pos_weight=train.pos_weight(),
        task_names=train.task_names,
        num_samples=len(train),
        snapshot_epochs=list(range(2, args.epochs + 1)),
        progress=progress,
        random_state=args.seed,
    )
    dm.save(out / "datamaps")
    groups = stgmtl.group(dm, k=args.k, m=args.m, random_state=args.seed, progress=progress)
    groups.save(out / "groups")
    print(f"\n{args.k} groups of the 15 tasks (membership of each task in its group):")
    for c, tasks in enumerate(groups.groups):
        idx = [groups.task_names.index(t) for t in tasks]
        members = ", ".join(
            f"{t} ({groups.membership[i, c]:.2f})" for t, i in zip(tasks, idx, strict=True)
        )
        print(f"  group {c}: {members}")
    plots = [
        ("datamaps", lambda: datamap_figure(dm, ncols=5)),
        ("memberships", lambda: memberships_figure(groups)),
    ]
    for name, fn in [] if args.no_plots else plots:
        try:
            save_figure(fn(), out / f"{name}.png", bbox_inches="tight")
        except Exception as exc:  # a plot failing must not lose the run's results
            print(f"warning: {name} plot failed: {exc!r}", file=sys.stderr)
    print(f"\nrecord + group: {time.perf_counter() - t0:.0f} s; results in {out}/")
    if args.study:
        argv = study_argv(args)
        print("the study is the payoff harness: stgmtl " + " ".join(argv), flush=True)
        return stgmtl_main(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
