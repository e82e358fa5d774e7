"""``stgmtl payoff``: does grouping pay off on a CIFAR task suite? (the payoff harness's command).

Builds the suite's train / validation / test splits (validation from training images only),
runs :func:`stgmtl.payoff.run_payoff` with a model from :mod:`stgmtl.models`, prints the
tables, and writes under ``--out``: ``result/`` (the saved ``PayoffResult``), ``cache/`` (every
trained run, reused by reruns), ``figures/`` (one figure per table) and ``report.html``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "PAYOFF_PRESETS",
    "add_payoff_parser",
    "payoff_main",
    "payoff_settings",
    "run_payoff_command",
]

#: Defaults per suite (options given explicitly win), and ``--quick``'s few-minute run.
PAYOFF_PRESETS: dict[str, dict[str, Any]] = {
    "cifar10-15": {
        "tasks": None,
        "seeds": "0,1,2",
        "model": "cnn",
        "width": 0.5,
        "epochs": 8,
        "batch_size": 256,
        "lr": 1e-3,
        "scheduler": "constant",
        "ks": "2,3",
        "architectures": "network",
        "budget": None,
        "val_size": 800,
        "train_limit": None,
        "test_limit": None,
        "random_partitions": 2,
        "truth": "auto",
        "signal_seeds": None,
        "confirm_seeds": 5,
    },
    "cifar100": {
        "tasks": None,
        "seeds": "0,1,2",
        "model": "wide-cnn",
        "width": 0.5,
        "epochs": 6,
        "batch_size": 256,
        "lr": 4e-3,
        "scheduler": "onecycle",
        "ks": "5,10",
        "architectures": "separate,branched,branched-early",
        "budget": 1.0,
        "val_size": 5000,
        "train_limit": 10_000,
        "test_limit": None,
        "random_partitions": 5,
        "truth": "none",
        "signal_seeds": None,
        "confirm_seeds": 5,
    },
    "quick": {
        "tasks": "airplane,automobile,living_being,not_living_being",
        "seeds": "0,1",
        "model": "cnn",
        "width": 0.25,
        "epochs": 2,
        "batch_size": 256,
        "lr": 1e-3,
        "scheduler": "constant",
        "ks": "2",
        "architectures": "network,branched",
        "budget": 2.0,
        "val_size": 800,
        "train_limit": None,
        "test_limit": 2000,
        "random_partitions": 1,
        "truth": "auto",
        "signal_seeds": None,
        "confirm_seeds": 2,
    },
    # the 10 CIFAR-10 class tasks with planted label noise on 5 of them (known answer: the
    # clean / noisy split; docs/results/known-answers.md): the power study's setting, with the
    # free signals (one recording run) as grouping sources
    "planted": {
        "tasks": None,
        "seeds": "0,1,2",
        "model": "cnn",
        "width": 0.25,
        "epochs": 4,
        "batch_size": 256,
        "lr": 1e-3,
        "scheduler": "constant",
        "ks": "2",
        "architectures": "network",
        "budget": 2.0,
        "val_size": 800,
        "train_limit": None,
        "test_limit": 2000,
        "random_partitions": 1,
        "truth": "none",
        "signal_seeds": None,
        "confirm_seeds": 5,
        "signals": "datamap,confusion,colearning,label",
        "strength": 1.0,
        "instance": 0,
        "mechanism": "label-noise",
    },
}

_EPILOG = """\
examples:
  stgmtl payoff --quick --out runs/payoff-quick          # 4 tasks, exhaustive tier, minutes
  stgmtl payoff --out runs/payoff-c10                    # the 15-task CIFAR-10 suite
  stgmtl payoff --suite cifar100 --out runs/payoff-c100  # 100 tasks, groupings at k=5,10
  stgmtl payoff --suite planted --strength 1 --out runs/planted  # a known answer: does it find it?
A rerun with the same --out trains only what is not in its cache (e.g. a new signal).
"""


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _one_model_variants(text: str | None) -> tuple[str, ...] | None:
    """``--one-model``'s variants, ``plain`` first (always trained); None when not given."""
    if text is None:
        return None
    from stgmtl.payoff.plan import ONE_MODEL_VARIANTS

    given = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in given if v not in ONE_MODEL_VARIANTS]
    if bad or not given:
        raise ValueError(
            f"--one-model: expected comma-separated variants among {', '.join(ONE_MODEL_VARIANTS)}"
            f", got {text!r}"
        )
    return ("plain", *dict.fromkeys(v for v in given if v != "plain"))


def payoff_main(argv: list[str]) -> int:
    """Run ``stgmtl payoff ARGV`` in this process (the demo's ``--study``); returns its status."""
    parser = argparse.ArgumentParser(prog="stgmtl")
    add_payoff_parser(parser.add_subparsers(dest="command"))
    return run_payoff_command(parser.parse_args(["payoff", *argv]))


def add_payoff_parser(sub: Any) -> None:
    """Add the ``payoff`` subcommand to ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser(
        "payoff",
        help="does grouping pay off? train the truth, score signals, recommend a grouping",
        description="Train single-task, pair and all-task networks on several seeds (the "
        "truth), record affinity signals in runs under the same conditions and score them "
        "against it, train the groupings they imply next to one model, random groups and "
        "single-task models at equal, asserted parameter budgets, choose what to train on "
        "validation against the budget-matched one model, and confirm that choice on fresh "
        "seeds with a paired test (the verdict). Every run is cached under --out.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--suite",
        choices=("cifar10-15", "cifar100", "planted"),
        default="cifar10-15",
        help="task suite (default cifar10-15: STG-MTL's 15 CIFAR-10 tasks with the "
        "planted pairs; cifar100: 100 one-vs-rest tasks at the group level, no pairs; "
        "planted: the 10 CIFAR-10 class tasks with a known answer planted (--mechanism: label "
        "noise on 5 of them, where the planted grouping did not beat one model at 2x, or two "
        "images per input read by 5 + 5 of them, where it did); docs/results/known-answers.md)",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=None,
        help="--suite planted: the knob, 0..1 (default 1): the fraction of the noisy side's "
        "labels replaced by fair coins (label-noise: 1 = random-label tasks), or of the samples "
        "whose second image is another one (two-images)",
    )
    p.add_argument(
        "--instance",
        type=int,
        default=None,
        help="--suite planted: which draw of the noisy classes and the noise (default 0)",
    )
    p.add_argument(
        "--mechanism",
        choices=("label-noise", "two-images"),
        default=None,
        help="--suite planted: what is planted (default label-noise; two-images: 5 tasks read "
        "a second grey image carried in the same input, --strength the share of samples whose "
        "second image is another one; there the planted grouping beats one model at 2x: "
        "docs/results/known-answers.md)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a run of a few minutes: 4 CIFAR-10 tasks (exhaustive tier), 2 seeds, "
        "2 epochs, width 0.25, 2,000 test images",
    )
    p.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    p.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2)")
    p.add_argument(
        "--signals",
        default=None,
        help="comma-separated signals of stgmtl.record_affinity (default: all of them: "
        "datamap, confusion, label, colearning, tag, grad-cosine, rep-cosine, grad-tag; "
        "colearning needs --epochs >= 2); label is computed from the training labels "
        "without a recording run, and with a truth label, a random matrix and each partner's "
        "single-task loss (difficulty) are controls",
    )
    p.add_argument(
        "--signal-seeds",
        default=None,
        help="seeds of the recording runs: comma-separated, or 'same' for every "
        "training seed (default: the first seed, whose groupings are then trained on every "
        "seed, as the verdict needs: a grouping trained on one seed only cannot be chosen)",
    )
    p.add_argument("--ks", default=None, help="numbers of groups (default 2,3; cifar100 5,10)")
    p.add_argument(
        "--architectures",
        default=None,
        help="how groupings are trained, comma-separated: network (one network per group, "
        "k models' parameters together), separate / separate-soft (STG-MTL's k networks at "
        "one model's parameters, hard / soft memberships), branched / branched-early (shared "
        "trunk, a branch per group, one model's parameters; the CNNs split before the MLP head "
        "/ one conv block earlier, ResNet-18 before stage 4 / 3: list both and the "
        "recommendation chooses the split on validation; the early split costs more "
        "multiply-adds); default network (cifar100: separate,branched,branched-early)",
    )
    p.add_argument(
        "--one-model",
        default=None,
        metavar="VARIANTS",
        help="how the one model for all tasks is trained, comma-separated: plain (the recipe; "
        "always trained) and uncertainty (Kendall et al.'s 2018 uncertainty weighting, a "
        "loss-balancing baseline), each at every budget on every seed; the verdict's reference "
        "is the one model with the lowest validation loss (default plain)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="inference budget of the recommendation in parameters of one model "
        "(default: the largest budget of the groupings: network k uses k models)",
    )
    p.add_argument(
        "--confirm-seeds",
        type=int,
        default=None,
        help="fresh seeds on which the candidate chosen on validation and its budget-matched "
        "one model are retrained for the verdict (default 5; --quick 2; 0: no verdict)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="level of the confirmation test and the corrected tests (default 0.05)",
    )
    p.add_argument(
        "--truth",
        choices=("auto", "subsets", "pairs", "none"),
        default=None,
        help="ground-truth runs (auto: every subset for <= 5 tasks, pairs for <= 30)",
    )
    p.add_argument("--max-pairs", type=int, default=None, help="train a seeded sample of pairs")
    p.add_argument(
        "--group-sizes",
        default=None,
        help="with --truth pairs: also train seeded groups of these sizes, comma-separated "
        "(e.g. 3,4; for the gain predictor, stgmtl.payoff.predictor)",
    )
    p.add_argument(
        "--max-groups",
        type=int,
        default=None,
        help="groups drawn per size of --group-sizes (default every group of that size)",
    )
    p.add_argument(
        "--no-singles",
        action="store_true",
        help="do not train single-task networks (default: trained whenever there is a truth "
        "or at most 30 tasks; they are also candidates of the recommendation)",
    )
    p.add_argument(
        "--random-partitions",
        type=int,
        default=None,
        help="fixed random partitions per k, each trained on every seed (default 2; "
        "cifar100 5; 19 or more for a claim at 5 %%)",
    )
    p.add_argument(
        "--target-entropy",
        type=float,
        default=0.3,
        help="membership entropy of separate-soft, 0..1 (default 0.3)",
    )
    r = p.add_argument_group("recipe (the same for every run)")
    r.add_argument("--model", choices=("cnn", "wide-cnn", "resnet18"), default=None)
    r.add_argument("--width", type=float, default=None, help="width of one model")
    r.add_argument("--epochs", type=int, default=None)
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--lr", type=float, default=None)
    r.add_argument("--scheduler", choices=("constant", "onecycle"), default=None)
    d = p.add_argument_group("data")
    d.add_argument(
        "--data-root",
        default=None,
        help="folder with cifar10/ and cifar100/ (default $STGMTL_DATA or data/)",
    )
    d.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="validation images, from the training images (default 800; cifar100 "
        "5,000 of its last 5,000)",
    )
    d.add_argument("--train-limit", type=int, default=None, help="cifar100: training images")
    d.add_argument("--test-limit", type=int, default=None, help="test on the first N images")
    x = p.add_argument_group("execution")
    x.add_argument(
        "--workers",
        type=int,
        default=1,
        help="parallel runs in a local process pool (default 1: in this process)",
    )
    x.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="run every training on a Dask cluster, e.g. tcp://10.0.0.5:8786 (needs "
        "stgmtl[dask]; the cache must be a path every worker reaches; docs/guide/dask.md)",
    )
    x.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (default: 1 with --workers > 1)",
    )
    x.add_argument("--out", default="runs/payoff", help="output folder (default %(default)s)")
    x.add_argument(
        "--cache",
        default=None,
        help="run cache folder (default OUT/cache); share it between commands to "
        "reuse every trained run",
    )
    x.add_argument("--no-report", action="store_true", help="skip the HTML report")
    x.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_payoff_command)


def payoff_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The preset of ``--suite`` (or ``--quick``) with the explicitly given options applied."""
    preset = dict(PAYOFF_PRESETS["quick" if args.quick else args.suite])
    for key in preset:
        value = getattr(args, key, None)
        if value is not None:
            preset[key] = value
    return preset


def run_payoff_command(args: argparse.Namespace) -> int:
    """Run the harness for the parsed command line; prints tables, writes ``--out``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import polars as pl

    from stgmtl.datasets import cifar10_15_splits, cifar10_planted_splits, cifar100_splits
    from stgmtl.models import model_factory
    from stgmtl.payoff import run_payoff
    from stgmtl.specialise import TrainConfig

    st = payoff_settings(args)
    suite = "cifar10-15" if args.quick else args.suite
    tasks = None if not st["tasks"] else [t.strip() for t in str(st["tasks"]).split(",")]
    if suite != "planted" and any(
        getattr(args, k, None) is not None for k in ("strength", "instance", "mechanism")
    ):
        raise ValueError("--strength, --instance, --mechanism: only with --suite planted")
    data: Any
    if suite == "planted":
        if tasks:
            raise ValueError("--tasks: the planted suite uses the 10 CIFAR-10 class tasks")
        data = functools.partial(
            cifar10_planted_splits,
            strength=st["strength"],
            instance=st["instance"],
            mechanism=st["mechanism"],
            val_size=st["val_size"],
            test_limit=st["test_limit"],
            root=args.data_root,
        )
    elif suite == "cifar10-15":
        data = functools.partial(
            cifar10_15_splits,
            tasks=tasks,
            val_size=st["val_size"],
            test_limit=st["test_limit"],
            root=args.data_root,
        )
    else:
        data = functools.partial(
            cifar100_splits,
            tasks=tasks,
            train_limit=st["train_limit"],
            val_size=st["val_size"],
            test_limit=st["test_limit"],
            root=args.data_root,
        )
    seeds = _ints(str(st["seeds"]))
    ss = st["signal_seeds"]
    signal_seeds = None if ss is None else seeds if ss == "same" else _ints(str(ss))
    signal_text = args.signals if args.signals is not None else st.get("signals")
    signals = (
        None  # every signal record_affinity can record with the recipe
        if signal_text is None
        else [s.strip() for s in str(signal_text).split(",") if s.strip()]
    )
    variants = _one_model_variants(getattr(args, "one_model", None))
    recipe = TrainConfig(
        width=st["width"],
        epochs=st["epochs"],
        batch_size=st["batch_size"],
        lr=st["lr"],
        scheduler=st["scheduler"],
    )
    dask = getattr(args, "dask", None)
    if dask and args.workers > 1:
        raise ValueError("--dask: runs go to the Dask cluster; leave out --workers")
    many = args.workers > 1 or bool(dask)
    threads = args.threads if args.threads is not None else (1 if many else None)
    out = Path(args.out)
    # spawned (not forked) workers: a fork of a process whose torch thread pool is running can
    # deadlock
    spawn = multiprocessing.get_context("spawn")
    pool = None
    if dask:
        from stgmtl.payoff.dask_engine import DaskEngineError, dask_executor

        engine: Any = dask_executor(dask)
        lost: Any = DaskEngineError
    else:
        pool = ProcessPoolExecutor(args.workers, mp_context=spawn) if args.workers > 1 else None
        engine, lost = contextlib.nullcontext(pool), ()
    t0 = time.perf_counter()
    try:
        with engine as executor:
            result = run_payoff(
                data,
                model_factory(st["model"]),
                recipe,
                out,
                seeds=seeds,
                truth=st["truth"],
                max_pairs=args.max_pairs,
                group_sizes=tuple(_ints(args.group_sizes)) if args.group_sizes else (),
                max_groups=args.max_groups,
                singles=False if getattr(args, "no_singles", False) else None,
                signals=signals,
                signal_seeds=signal_seeds,
                ks=_ints(str(st["ks"])),
                architectures=str(st["architectures"]).split(","),
                random_partitions=st["random_partitions"],
                target_entropy=args.target_entropy,
                budget=st["budget"],
                confirm_seeds=st["confirm_seeds"],
                alpha=args.alpha,
                executor=executor,
                threads=threads,
                progress=not args.quiet,
                cache_dir=args.cache,
                **({"one_model_variants": variants} if variants else {}),
            )
    except lost as err:
        print(f"stgmtl payoff: error: {err}", file=sys.stderr)
        return 1
    finally:
        if pool is not None:
            pool.shutdown()
    _print_tables(result, pl)
    if suite == "planted":
        _print_known_answer(data(), result.recommendation)
    _write_figures(result, out / "figures")
    if not args.no_report:
        from stgmtl.report import write_report

        write_report(
            out / "report.html", payoff=result, title=f"stgmtl payoff: {suite}", progress=False
        )
        print(f"wrote {out / 'report.html'}", file=sys.stderr)
    print(f"wall time {time.perf_counter() - t0:.0f} s; results in {out}/", file=sys.stderr)
    return 0


def _print_tables(result: Any, pl: Any) -> None:
    from stgmtl.payoff.scoring import SCORE_COLUMNS, reliability_sentence
    from stgmtl.payoff.tables import SUMMARY_COLUMNS, labelled

    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=200,
        float_precision=4,
        tbl_hide_dataframe_shape=True,
    ):
        scores = result.signal_scores
        if scores.height:
            print("\n" + reliability_sentence(scores))
            print("signals against the measured pair gains (test):")
            print(labelled(scores.select([c for c in SCORE_COLUMNS if c in scores.columns])))
        test = result.summary.filter(pl.col("split") == "test")
        if test.height:
            print(
                "\npayoff on test (gain vs one model: mean relative loss decrease against one "
                "model at 1x; each grouping's systems hold its budget, see parameters):"
            )
            print(labelled(test.select([c for c in SUMMARY_COLUMNS if c in test.columns])))
        if result.soft_vs_hard.height:
            print("\nsoft minus hard memberships:")
            print(labelled(result.soft_vs_hard))
        if result.selection.height:
            print("\nbudgeted selection (chosen on validation; test reported, not used):")
            print(labelled(result.selection))
    print("\n" + str(result.recommendation.get("message", "")))


def _print_known_answer(suite: Any, rec: dict[str, Any]) -> None:
    from stgmtl.payoff.study import recommends_planted

    print("\n" + suite.describe())
    groups = [list(g) for g in rec.get("groups", [])]
    if len(groups) > 1:
        mixed = "mixes the two sides" if suite.mixes(groups) else "mixes no sides"
        print(f"The recommended grouping {groups} {mixed}.")
    found = recommends_planted(rec, suite)
    print(
        "Known answer found: a confirmed grouping that mixes no sides."
        if found
        else f"Known answer not found (verdict: {rec.get('verdict')})."
    )


def _write_figures(result: Any, folder: Path) -> None:
    from stgmtl import plots

    makers = {
        "signal_scores": lambda: plots.signal_scores_figure(result.signal_scores),
        "truth": lambda: plots.truth_figure(result.truth, result.task_names),
        "payoff": lambda: plots.payoff_figure(result.summary),
        "payoff_auc": lambda: plots.payoff_figure(result.summary, metric="roc_auc"),
        "soft_vs_hard": lambda: plots.soft_hard_figure(result.soft_vs_hard),
        "selection": lambda: plots.selection_figure(result.selection),
    }
    for name, make in makers.items():
        try:
            plots.save_figure(make(), folder / f"{name}.png", bbox_inches="tight")
        except ValueError:  # an empty table (no pairs, no soft runs): no figure
            continue
