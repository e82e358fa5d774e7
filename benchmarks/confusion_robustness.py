"""Does the `confusion` feature hold off its tuning set? Seed stability and sense on CIFAR-10.

The confusion feature's settings were first tuned on CIFAR-100 (``round(T / k)`` neighbours).
This benchmark records data maps on three task suites nobody tuned on, each with three recording
seeds, groups every recording with five grouping seeds for several ``k``, and compares three
affinity graphs:

- ``auto``: the default (a neighbour graph made connected by its maximum spanning tree, the
  number of neighbours chosen by stability under resampling of the samples);
- ``legacy``: the earlier default, ``round(T / k)`` neighbours (at least 2), kNN union only
  (no spanning tree: can be disconnected), re-implemented here;
- ``dense``: the dense symmetric confusion.

Suites (the shared CIFAR-10 copy: 4,000 train images, 400 per class):

- ``cifar10``: the 10 one-vs-rest class tasks;
- ``cifar10_15``: STG-MTL's 15 tasks (classes, living / not living, odd class id, upside down,
  random labels);
- ``cifar10_nested``: the 10 classes plus 4 nested tasks: ``vehicle`` (airplane, automobile,
  ship, truck), ``animal`` (the other 6), ``road_vehicle`` (automobile, truck), ``pet`` (cat,
  dog): overlapping labels, as the issue about ``says_yes`` describes.

Reported per suite, k and graph: ``stability`` = mean adjusted Rand index (ARI) between all pairs
of the 15 groupings (3 recordings x 5 grouping seeds), ``within_recording`` = mean ARI between
grouping seeds of one recording, ``vehicles_animals`` = mean ARI of the class tasks' groups at
k = 2 against {airplane, automobile, ship, truck} vs the six animals, ``mixed_groups`` = mean
number of groups holding both a vehicle and an animal class task (0 = every group on one side),
the modal grouping and the chosen neighbour counts. Recording (the slow part, about two
minutes per run of 6 epochs on 2 cores) and analysis are separate::

    STGMTL_DATA=/path/to/shared/data PYTHONPATH=. python benchmarks/confusion_robustness.py record
    PYTHONPATH=. python benchmarks/confusion_robustness.py analyse

Results: ``benchmarks/results/confusion_robustness.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

VEHICLES = ("airplane", "automobile", "ship", "truck")
ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")
SUITES = ("cifar10", "cifar10_15", "cifar10_nested")
KS = {"cifar10": (2, 3, 4, 5), "cifar10_15": (2, 3, 4, 5), "cifar10_nested": (2, 3, 4, 5)}


def build_suite(name: str, root: str | None) -> Any:
    import torch

    from stgmtl.datasets import TaskSuite, cifar10_15_suite, cifar10_suite

    if name == "cifar10":
        return cifar10_suite("train", root=root)
    if name == "cifar10_15":
        return cifar10_15_suite("train", root=root)
    base = cifar10_suite("train", root=root)
    labels = base.labels
    names = list(base.class_names)
    extra = {
        "vehicle": np.isin(labels, [names.index(c) for c in VEHICLES]),
        "animal": np.isin(labels, [names.index(c) for c in ANIMALS]),
        "road_vehicle": np.isin(labels, [names.index("automobile"), names.index("truck")]),
        "pet": np.isin(labels, [names.index("cat"), names.index("dog")]),
    }
    targets = torch.cat(
        [base.targets, torch.from_numpy(np.stack(list(extra.values()), 1).astype(np.float32))], 1
    )
    return TaskSuite(base.images, targets, [*names, *extra], sample_ids=base.sample_ids,
                     mean=base.mean.flatten().tolist(), std=base.std.flatten().tolist(),
                     labels=labels, class_names=names, name="cifar10_nested",
                     split="train")  # fmt: skip


def record(args: argparse.Namespace) -> None:
    import torch

    from stgmtl import fit_datamaps
    from stgmtl.models import build_model

    for suite_name in args.suites:
        suite = build_suite(suite_name, args.data_root)
        for seed in args.seeds:
            out = Path(args.out) / suite_name / f"seed{seed}"
            if (out / "manifest.json").is_file():
                continue
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            net = build_model("cnn", suite.num_tasks)
            dm = fit_datamaps(
                suite.loader(128, shuffle=True, seed=seed), net, epochs=args.epochs, lr=1e-3,
                pos_weight=suite.pos_weight(), task_names=suite.task_names,
                num_samples=len(suite), snapshot_epochs=list(range(2, args.epochs + 1)),
                progress=False, random_state=seed,
            )  # fmt: skip
            dm.save(out)
            print(f"{suite_name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)


def legacy_features(dm: Any, k: int) -> np.ndarray:
    """The earlier default: round(T / k) neighbours (>= 2), union kNN, no spanning tree."""
    import scipy.sparse as sp
    from sklearn.manifold import spectral_embedding

    from stgmtl.features import confusion_matrix

    a = confusion_matrix(dm)
    s = (a + a.T) / 2
    t = len(s)
    q = int(min(t - 1, max(2, round(t / k))))
    ranked = np.where(np.eye(t, dtype=bool), -np.inf, s)
    nearest = np.argsort(-ranked, axis=1, kind="stable")[:, :q]
    rows = np.repeat(np.arange(t), q)
    b = sp.csr_matrix((s[rows, nearest.ravel()], (rows, nearest.ravel())), shape=(t, t))
    emb = spectral_embedding(b.maximum(b.T), n_components=min(k, t - 2), drop_first=True,
                             random_state=0)  # fmt: skip
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(emb / norms, dtype=np.float32)


def _mixed(vehicle: np.ndarray, labels: np.ndarray) -> int:
    """Groups holding both a vehicle class task and an animal class task."""
    return sum(len(set(vehicle[labels == g])) > 1 for g in np.unique(labels))


def _partition(names: list[str], labels: np.ndarray) -> str:
    groups: dict[int, list[str]] = {}
    for n, lab in zip(names, labels, strict=True):
        groups.setdefault(int(lab), []).append(n)
    return " | ".join(sorted(", ".join(g) for g in groups.values()))


def analyse(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    from sklearn.metrics import adjusted_rand_score

    from stgmtl import DataMaps, TaskGrouper
    from stgmtl.features import choose_neighbors, neighbor_stability, task_features

    warnings.filterwarnings("ignore", message="Graph is not fully connected")
    results: dict[str, Any] = {}
    for suite_name in args.suites:
        maps = {s: DataMaps.load(Path(args.out) / suite_name / f"seed{s}") for s in args.seeds}
        names = list(next(iter(maps.values())).task_names)
        cls = [i for i, n in enumerate(names) if n in VEHICLES + ANIMALS]
        truth = np.array([names[i] in VEHICLES for i in cls], dtype=int)
        for k in KS[suite_name]:
            for graph in ("auto", "legacy", "dense"):
                labels, chosen = {}, {}
                for s, dm in maps.items():
                    if graph == "legacy":
                        x = legacy_features(dm, k)
                    else:
                        nn = "auto" if graph == "auto" else None
                        x = task_features(dm, "confusion", n_groups=k, n_neighbors=nn)
                    if graph == "auto":
                        sc = neighbor_stability(dm, k) if 2 <= k < len(names) - 1 else {}
                        chosen[s] = choose_neighbors(sc) if sc else None
                    for g in range(args.grouping_seeds):
                        labels[(s, g)] = TaskGrouper(k, random_state=g, progress=False).fit_predict(
                            x
                        )
                keys = list(labels)
                pairs = list(itertools.combinations(keys, 2))
                stab = np.mean([adjusted_rand_score(labels[a], labels[b]) for a, b in pairs])
                within = np.mean([adjusted_rand_score(labels[a], labels[b])
                                  for a, b in pairs if a[0] == b[0]])  # fmt: skip
                va = np.mean([adjusted_rand_score(truth, labels[key][cls]) for key in keys])
                mixed = np.mean([_mixed(truth, labels[key][cls]) for key in keys])
                modal, count = Counter(_partition(names, labels[key]) for key in keys).most_common(
                    1
                )[0]
                row = {
                    "stability": float(stab), "within_recording": float(within),
                    "vehicles_animals_ari": float(va), "mixed_groups": float(mixed),
                    "modal_partition": modal,
                    "modal_share": count / len(keys),
                    "chosen_neighbors": {str(s): (None if c is None else int(c))
                                         for s, c in chosen.items()},
                }  # fmt: skip
                results[f"{suite_name} k={k} {graph}"] = row
                print(f"{suite_name:15s} k={k} {graph:6s} stability {stab:.3f} within {within:.3f} "
                      f"veh/anim ARI {va:.3f} mixed {mixed:.2f} modal {count}/{len(keys)} "
                      f"q={row['chosen_neighbors'] or '-'}\n    {modal}", flush=True)  # fmt: skip
    out = Path(args.results)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=("record", "analyse"))
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default="runs/confusion_robustness")
    p.add_argument("--suites", nargs="+", default=list(SUITES), choices=SUITES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--grouping-seeds", type=int, default=5)
    p.add_argument(
        "--results", default=str(Path(__file__).parent / "results" / "confusion_robustness.json")
    )
    args = p.parse_args()
    record(args) if args.command == "record" else analyse(args)


if __name__ == "__main__":
    main()
