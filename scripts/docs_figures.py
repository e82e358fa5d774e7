"""Draw the figures of the documentation site (docs/assets/figures/*.png) with stgmtl's own plots.

Every image under docs/assets/figures/ comes from this script, so each can be redrawn:

    python scripts/docs_figures.py                                   # the synthetic example
    python scripts/docs_figures.py --cifar100 runs/cifar100 \\
        --cifar100-study runs/cifar100_study --cifar10-15 runs/cifar10_15

``--synthetic`` (always on) runs the guide's example: the 12 synthetic tasks of
docs/snippets/synthetic.py, recorded with ``fit_datamaps`` and grouped into 3 (a few seconds).
The known-answers figure (always on) is redrawn from the study's trials saved under
docs/results/data/ (``benchmarks/known_answers.py``; no training).
The CIFAR figures are redrawn from saved runs, made with the commands on the results pages:

    python examples/cifar100_grouping.py --no-progress --seed 0 --out runs/cifar100
    python examples/cifar100_grouping.py --no-progress --study --out runs/cifar100_study  # 9c0ecb2
    python examples/cifar10_15_tasks.py --no-progress --seed 0 --out runs/cifar10_15

Images are kept small (low dpi, a subsample of points, optimised PNG).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "assets" / "figures"
PNG = {"pil_kwargs": {"optimize": True}, "bbox_inches": "tight"}


def _save(fig: Any, path: Path, dpi: int) -> None:
    from stgmtl.plots import save_figure

    save_figure(fig, path, dpi=dpi, **PNG)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")


def synthetic(out: Path) -> None:
    """Data maps and memberships of the guide's synthetic example."""
    import torch
    from torch.utils.data import DataLoader

    namespace: dict[str, Any] = {}
    source = ROOT / "docs" / "snippets" / "synthetic.py"
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    import stgmtl
    from stgmtl import plots

    torch.manual_seed(0)
    loader = DataLoader(stgmtl.IndexedDataset(namespace["train_set"]), batch_size=128, shuffle=True)
    maps = stgmtl.fit_datamaps(
        loader, namespace["make_model"](), epochs=5, lr=3e-3, snapshot_epochs=[2, 3, 4, 5],
        task_names=namespace["names"], progress=False,
    )  # fmt: skip
    groups = stgmtl.group(maps, k=3, progress=False)
    shown = ["family0_task0", "family1_task0", "family2_task0"]
    _save(plots.datamap_figure(maps, tasks=shown, ncols=3, max_points=1500), out /
          "synthetic-datamaps.png", dpi=70)  # fmt: skip
    _save(plots.memberships_figure(groups), out / "synthetic-memberships.png", dpi=70)


def cifar100(run: Path, out: Path) -> None:
    """The demo's memberships heatmap and the data maps of the five people tasks."""
    import stgmtl
    from stgmtl import plots

    maps = stgmtl.DataMaps.load(run / "datamaps")
    groups = stgmtl.TaskGroups.load(run / "groups")
    _save(plots.memberships_figure(groups), out / "cifar100-memberships.png", dpi=72)
    people = ["baby", "boy", "girl", "man", "woman", "hamster", "apple", "pine_tree"]
    fig = plots.datamap_figure(maps, tasks=people, ncols=4, max_points=2000, point_size=2.0)
    _save(fig, out / "cifar100-datamaps.png", dpi=60)


def cifar100_study(run: Path, out: Path) -> None:
    """Per-task test metrics of the study: grouped models against the baselines."""
    import polars as pl

    from stgmtl import plots

    table = pl.read_csv(run / "study_metrics.csv")
    fig = plots.method_comparison_figure(table, title="CIFAR-100 study (3 seeds, k = 10)")
    _save(fig, out / "cifar100-study.png", dpi=65)


def cifar10_15(run: Path, out: Path) -> None:
    """Memberships and data maps of STG-MTL's 15 CIFAR-10 tasks."""
    import stgmtl
    from stgmtl import plots

    maps = stgmtl.DataMaps.load(run / "datamaps")
    groups = stgmtl.TaskGroups.load(run / "groups")
    _save(plots.memberships_figure(groups), out / "cifar10-15-memberships.png", dpi=65)
    fig = plots.datamap_figure(maps, ncols=5, max_points=1500, point_size=2.0)
    _save(fig, out / "cifar10-15-datamaps.png", dpi=50)


def known_answers(out: Path) -> None:
    """Power against measured effect on the two-image suite, from the study's saved trials and
    per-signal rows (docs/results/data/known-answers-2img-*.jsonl; no training)."""
    import json
    import shutil
    import sys
    import tempfile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from known_answers import figure, signal_power

    from stgmtl.payoff.study import Trial

    data = ROOT / "docs" / "results" / "data"
    lines = (data / "known-answers-2img-trials.jsonl").read_text().splitlines()
    trials = [Trial(**json.loads(line)) for line in lines if line]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(data / "known-answers-2img-signals.jsonl", Path(tmp) / "signals.jsonl")
        per_signal = signal_power(Path(tmp), trials)
    figure(trials, out / "known-answers-power.png", per_signal=per_signal, dpi=80)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT, help="folder of the images")
    p.add_argument("--cifar100", type=Path, help="a demo run folder (datamaps/, groups/)")
    p.add_argument(
        "--cifar100-study",
        type=Path,
        help="a round-1 --study run folder (study_metrics.csv; commit 9c0ecb2 or earlier)",
    )
    p.add_argument("--cifar10-15", type=Path, help="a cifar10_15_tasks.py run folder")
    args = p.parse_args(argv)
    synthetic(args.out)
    known_answers(args.out)
    if args.cifar100:
        cifar100(args.cifar100, args.out)
    if args.cifar100_study:
        cifar100_study(args.cifar100_study, args.out)
    if args.cifar10_15:
        cifar10_15(args.cifar10_15, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
