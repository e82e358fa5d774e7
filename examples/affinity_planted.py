"""Which affinity signals see the planted answers of the CIFAR-10 15-task suite?

The suite (STG-MTL's 15 tasks) plants two answers: ``living_being`` and ``not_living_being`` are
exact complements (each should be the other's strongest partner), and ``random`` has coin-flip
labels (it should be nobody's strongest partner). One ``stgmtl.record_affinity`` run records
every signal; for each, the strongest partner of task ``j`` is the source ``i != j`` with the
largest ``values[i, j]``.

    STGMTL_DATA=../shared/data python examples/affinity_planted.py
    STGMTL_DATA=../shared/data python examples/affinity_planted.py --epochs 3 --limit 1000
    STGMTL_DATA=../shared/data python examples/affinity_planted.py --optimizer sgd --lr 0.05

Writes ``--out`` (default ``runs/affinity_planted``): one saved ``TaskAffinity`` per signal, and
``benchmarks/results/affinity_planted.json`` with the table (unless ``--no-json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import stgmtl
from stgmtl.datasets import cifar10_15_suite
from stgmtl.models import SmallCNN
from stgmtl.record import SIGNALS

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "affinity_planted.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", default=None, help="folder with cifar10/ (default $STGMTL_DATA)")
    p.add_argument("--out", default="runs/affinity_planted")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--signals", default=",".join(SIGNALS))
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="adam: Adam(lr), the library default; sgd: SGD(lr, momentum 0.9) as "
                   "TAG's CelebA code")  # fmt: skip
    p.add_argument("--tag-every", type=int, default=10, help="TAG probes every n-th step")
    p.add_argument("--tag-sources", type=int, default=8,
                   help="TAG sources per probed step (0: all)")  # fmt: skip
    p.add_argument("--json", default=str(RESULTS), help="where to write the table")
    p.add_argument("--no-json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def planted(aff: stgmtl.TaskAffinity) -> dict[str, object]:
    """The planted checks for one signal."""
    partners = aff.best_partners()
    names = aff.task_names
    best = dict(zip(names, partners, strict=True))
    living, not_living = best["living_being"], best["not_living_being"]
    chosen_random = [t for t, p in best.items() if p == "random" and t != "random"]
    return {
        "living_being_best": living,
        "not_living_being_best": not_living,
        "complements_mutual": living == "not_living_being" and not_living == "living_being",
        "random_chosen_by": chosen_random,
        "random_nobodys_best": not chosen_random,
        "best_partners": best,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    train = cifar10_15_suite("train", root=args.data_root, limit=args.limit, seed=args.seed)
    print(f"data: {train}")
    torch.manual_seed(args.seed)
    model = SmallCNN(train.num_tasks)
    opt = (
        torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        if args.optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=args.lr)
    )
    tag = {"every": args.tag_every, "max_sources": args.tag_sources or None}
    names = args.signals.split(",")
    t0 = time.perf_counter()
    result = stgmtl.record_affinity(
        train.loader(args.batch_size, shuffle=True, seed=args.seed),
        model,
        signals=names,
        epochs=args.epochs,
        optimizer=opt,
        lr=args.lr,
        settings={"tag": tag} if "tag" in names else None,
        pos_weight=train.pos_weight(),
        progress=not args.no_progress,
        random_state=args.seed,
        task_names=train.task_names,
    )
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    print(f"\n{'signal':<12} {'living ->':<18} {'not_living ->':<18} mutual  random nobody's")
    for name, aff in result.items():
        aff.save(out / name)
        row = planted(aff)
        rows[name] = row
        chosen = ", ".join(row["random_chosen_by"])  # type: ignore[arg-type]
        print(
            f"{name:<12} {row['living_being_best']!s:<18} {row['not_living_being_best']!s:<18} "
            f"{'yes' if row['complements_mutual'] else 'no':<7} "
            f"{'yes' if row['random_nobodys_best'] else f'no ({chosen})'}"
        )
    print(f"\n{seconds:.0f} s; affinities in {out}")
    if not args.no_json:
        dest = Path(args.json)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(
            json.dumps(
                {
                    "command": "STGMTL_DATA=../shared/data python examples/affinity_planted.py "
                    + " ".join(sys.argv[1:] if argv is None else argv),
                    "settings": {
                        k: v for k, v in vars(args).items() if k not in ("data_root", "json")
                    },
                    "samples": len(train),
                    "seconds": round(seconds, 1),
                    "machine": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(),
                    "signals": rows,
                },
                indent=2,
            )
        )
        print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
