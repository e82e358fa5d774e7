"""Training length of the payoff suites: validation loss of one model after E epochs.

Runs the suite's recipe (``stgmtl payoff``'s preset) for several epoch counts with one seed and
prints / writes the mean validation loss over tasks (the training objective) and mean ROC AUC of
one model for all tasks and of one single-task network, so the length chosen for the payoff
runs can be justified by where the curve flattens. With a constant learning rate the first E
epochs of every run are identical (same seed, same batches), so the runs are one curve; with
cifar100's one-cycle schedule each length is its own run (the schedule spans the run).

    STGMTL_DATA=../shared/data PYTHONPATH=. python benchmarks/training_curve.py \
        --epochs 2 4 8 12 16
    STGMTL_DATA=../shared/data PYTHONPATH=. python benchmarks/training_curve.py \
        --suite cifar100 --epochs 3 6 10 --out benchmarks/results/training_curve_c100.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from stgmtl.datasets import cifar10_15_splits, cifar100_splits
from stgmtl.loop import task_losses
from stgmtl.models import model_factory
from stgmtl.payoff.splits import TaskColumns
from stgmtl.payoff_command import PAYOFF_PRESETS
from stgmtl.specialise import TrainConfig
from stgmtl.specialise.data import pos_weight_of
from stgmtl.specialise.metrics import task_metrics
from stgmtl.specialise.training import predict_logits, train_model


def _score(model: torch.nn.Module, view: TaskColumns, pw: torch.Tensor) -> tuple[float, float]:
    z = torch.from_numpy(predict_logits(model, view).astype(np.float64))
    y = view.targets.double()
    loss = task_losses(z, y, None, pw.double()).numpy()
    auc = task_metrics(z.numpy().astype(np.float32), y.numpy(), list(view.task_names))["roc_auc"]
    return float(loss.mean()), float(np.nanmean(auc))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=("cifar10-15", "cifar100"), default="cifar10-15")
    p.add_argument("--epochs", type=int, nargs="+", default=[2, 4, 8, 12, 16])
    p.add_argument("--single", default=None, help="the single-task network's task")
    p.add_argument("--out", default="benchmarks/results/training_curve.json")
    args = p.parse_args()
    torch.set_num_threads(2)
    pre = PAYOFF_PRESETS[args.suite]  # the recipe of `stgmtl payoff --suite ...`
    if args.suite == "cifar100":
        data = cifar100_splits(train_limit=pre["train_limit"], val_size=pre["val_size"])
    else:
        data = cifar10_15_splits(val_size=pre["val_size"])
    names = data.task_names()
    single = args.single or names[0]
    recipe = TrainConfig(width=pre["width"], batch_size=pre["batch_size"], lr=pre["lr"],
                         scheduler=pre["scheduler"])  # fmt: skip
    rows = []
    for label, tasks in (("one model", names), (f"single: {single}", [single])):
        cols = [names.index(t) for t in tasks]
        train = TaskColumns(data.train, cols, tasks)
        val = TaskColumns(data.val, cols, tasks)
        pw = pos_weight_of(train.targets)
        for e in args.epochs:
            t0 = time.perf_counter()
            m = train_model(model_factory(pre["model"]), train, replace(recipe, epochs=e),
                            progress=False, task_names=tasks)  # fmt: skip
            loss, auc = _score(m, val, pw)
            rows.append({"system": label, "epochs": e, "val_loss": loss, "val_roc_auc": auc,
                         "seconds": time.perf_counter() - t0})  # fmt: skip
            print(f"{label:>22}  epochs {e:3d}  val loss {loss:.4f}  AUC {auc:.4f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
