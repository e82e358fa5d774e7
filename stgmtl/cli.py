"""The ``stgmtl`` command: group, select, choose k, plot and report from saved data maps or task
affinities; run the demo.

Each subcommand is a thin wrapper over the library (:class:`~stgmtl.datamaps.DataMaps`,
:class:`~stgmtl.affinity.TaskAffinity`, :func:`~stgmtl.grouping.grouper.group`,
:func:`~stgmtl.grouping.selection.select`, :func:`~stgmtl.grouping.choose_k.choose_k`,
:func:`~stgmtl.report.write_report`). Bad input (a missing file, an impossible ``k``) ends with a
one-line reason on stderr and a non-zero exit status, never a traceback; ``--traceback`` (or
``STGMTL_TRACEBACK=1``) shows the full traceback instead.

Exit status: 0 success, 1 bad input found while running, 2 bad command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from stgmtl.payoff_command import add_payoff_parser

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

_PROG = "stgmtl"


class _UserError(Exception):
    """A problem with the user's input, reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------------------------
# loading inputs


def _existing(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise _UserError(f"{what} {path!r} not found")
    return p


def _load_datamaps(path: str) -> Any:
    p = _existing(path, "DATAMAPS")
    from stgmtl.datamaps import DataMaps

    return DataMaps.load(p)


def _load_groups(path: str) -> Any:
    p = _existing(path, "--groups")
    from stgmtl.grouping import TaskGroups

    return TaskGroups.load(p)


def _load_table(path: str, option: str = "--evaluation") -> Any:
    import polars as pl

    p = _existing(path, option)
    readers: dict[str, Callable[..., Any]] = {
        ".parquet": pl.read_parquet,
        ".csv": pl.read_csv,
        ".json": pl.read_json,
        ".ndjson": pl.read_ndjson,
        ".jsonl": pl.read_ndjson,
    }
    reader = readers.get(p.suffix.lower())
    if reader is None:
        raise _UserError(
            f"{option} {path!r}: unknown table type {p.suffix!r}; use one of {sorted(readers)}"
        )
    try:
        return reader(p)
    except Exception as exc:  # polars raises several error types for damaged files
        raise ValueError(f"--evaluation: cannot read {str(p)!r} ({exc}); write it again") from exc


# ---- task affinities (begin: selection) -----------------------------------------------------


def _manifest_format(folder: Path) -> Any:
    import json

    try:
        return json.loads((folder / "manifest.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def _affinity_folders(path: Path) -> dict[str, Path]:
    """Signal name -> folder: ``path`` itself if it is a saved TaskAffinity, else its
    sub-folders that are (named by their manifest's signal)."""
    import json

    from stgmtl.affinity.io import FORMAT

    found: dict[str, Path] = {}
    folders = [path] if _manifest_format(path) == FORMAT else []
    if not folders and path.is_dir():
        folders = [p for p in sorted(path.iterdir()) if _manifest_format(p) == FORMAT]
    for folder in folders:
        signal = json.loads((folder / "manifest.json").read_text()).get("signal")
        found.setdefault(str(signal or folder.name), folder)
    return found


def _load_signal(path: str, signal: str | None, what: str = "DATAMAPS") -> Any:
    """Saved data maps, or one saved TaskAffinity (``path`` itself or, with several in the
    folder, the one named by ``--signal``)."""
    p = _existing(path, what)
    found = _affinity_folders(p)
    if not found:
        if signal is not None:
            raise _UserError(f"--signal {signal!r}: {path!r} holds no saved task affinity")
        return _load_datamaps(path)
    from stgmtl.affinity import TaskAffinity

    if signal is None:
        if len(found) > 1:
            raise _UserError(
                f"{path!r} holds {len(found)} task affinities ({', '.join(found)}); "
                "pick one with --signal"
            )
        return TaskAffinity.load(next(iter(found.values())))
    if signal not in found:
        raise _UserError(f"--signal {signal!r} is not in {path!r}; it has {', '.join(found)}")
    return TaskAffinity.load(found[signal])


def _load_affinities(paths: list[str]) -> dict[str, Any]:
    from stgmtl.affinity import TaskAffinity

    out: dict[str, Any] = {}
    for path in paths:
        found = _affinity_folders(_existing(path, "--affinity"))
        if not found:
            raise _UserError(f"--affinity {path!r} holds no saved task affinity")
        for name, folder in found.items():
            out[name if name not in out else f"{name} ({folder})"] = TaskAffinity.load(folder)
    return out


def _network_scores(path: str, option: str) -> dict[str, dict[str, float]]:
    """A long table ``network, task, score`` -> ``{network: {task: score}}`` (network names
    are task names joined by '|')."""
    table = _load_table(path, option)
    missing = {"network", "task", "score"} - set(table.columns)
    if missing:
        raise _UserError(f"{option} {path!r} lacks the column(s) {sorted(missing)}")
    out: dict[str, dict[str, float]] = {}
    for net, task, score in table.select("network", "task", "score").iter_rows():
        out.setdefault(str(net), {})[str(task)] = float(score)
    return out


# ---- task affinities (end: selection) -------------------------------------------------------


def _output_folder_exists(path: str, option: str = "-o") -> Path:
    p = Path(path)
    if not p.parent.is_dir():
        raise _UserError(f"{option} {path!r}: folder {str(p.parent)!r} does not exist")
    return p


def _check_k(k: int, datamaps: Any) -> None:
    t = len(datamaps.task_names)
    if not 1 <= k <= t:
        raise _UserError(f"--k must be between 1 and the number of tasks ({t}), got {k}")


def _check_same_tasks(maps: Any, groups: Any, args: argparse.Namespace) -> None:
    if list(groups.task_names) != list(maps.task_names):
        raise _UserError(
            f"--groups {args.groups!r} has tasks {_preview(groups.task_names)} but DATAMAPS "
            f"{args.datamaps!r} has {_preview(maps.task_names)}: group these data maps first"
        )


def _preview(names: Any) -> str:
    names = list(names)
    head = ", ".join(names[:3])
    return f"[{head}{', ...' if len(names) > 3 else ''}] ({len(names)})"


def _print_groups(groups: Any) -> None:
    for j, names in enumerate(groups.groups):
        print(f"group {j} ({len(names)} tasks): {', '.join(names) if names else '-'}")


# --------------------------------------------------------------------------------------------
# subcommands


def _cmd_group(args: argparse.Namespace) -> int:
    out = _output_folder_exists(args.output)
    maps = _load_signal(args.datamaps, args.signal)
    _check_k(args.k, maps)
    if args.features is not None:
        from stgmtl.features import get_kind

        if not isinstance(maps, get_kind(args.features).input_type):
            raise _UserError(
                f"--features {args.features} reads {get_kind(args.features).input_type.__name__}"
                f", but {args.datamaps!r} holds {type(maps).__name__}"
            )
    from stgmtl.grouping import group

    groups = group(
        maps,
        k=args.k,
        m=args.m,
        random_state=args.seed,
        progress=not args.quiet,
        features=args.features,
    )
    groups.save(out)
    if not args.quiet:
        _print_groups(groups)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _print_selection(sel: Any) -> None:
    served = sel.served
    for j, names in enumerate(sel.groups):
        mine = ", ".join(served[j]) or "-"
        print(f"network {j} ({len(names)} tasks): {', '.join(names)}  [serves: {mine}]")
    line = f"score {sel.score:.6g} ({sel.objective}); cost {sel.cost:g}"
    if sel.test_task_scores is not None:
        line += f"; test score {sel.test_score:.6g}"
    print(line)


def _cmd_select(args: argparse.Namespace) -> int:
    out = _output_folder_exists(args.output)
    from stgmtl.affinity import TaskAffinity
    from stgmtl.grouping.selection import select

    if (args.affinity is None) == (args.scores is None):
        raise _UserError("give either AFFINITY or --scores (for --method standley)")
    if args.scores is not None:
        if args.method != "standley":
            raise _UserError("--scores (trained results) is for --method standley")
        data: Any = _network_scores(args.scores, "--scores")
    else:
        data = _load_signal(args.affinity, args.signal, "AFFINITY")
        if not isinstance(data, TaskAffinity):
            raise _UserError(f"AFFINITY {args.affinity!r} is not a saved task affinity")
    kwargs: dict[str, Any] = {}
    if args.method == "standley":
        if args.budget is None:
            raise _UserError("--method standley needs --budget")
        if args.test_scores is not None:
            kwargs["test_scores"] = _network_scores(args.test_scores, "--test-scores")
        kwargs["greater_is_better"] = not args.lower_is_better
        if args.max_candidates is not None:
            kwargs["max_candidates"] = args.max_candidates
    else:
        for flag, value in (("--budget", args.budget), ("--test-scores", args.test_scores),
                            ("--max-candidates", args.max_candidates)):  # fmt: skip
            if value is not None:
                raise _UserError(f"{flag} is for --method standley")
        if args.method != "partition" and args.k is None:
            raise _UserError(f"--method {args.method} needs --k")
    if args.method in ("tag", "partition"):
        kwargs["singleton_score"] = args.singleton_score
    if args.method in ("tag", "partition", "ptg") and args.max_tasks is not None:
        kwargs["max_tasks"] = args.max_tasks
    if args.method == "partition":
        kwargs["objective"] = args.objective
    if args.method == "kmeans":
        kwargs["random_state"] = args.seed
    sel = select(data, args.method, n_groups=args.k, budget=args.budget, **kwargs)
    sel.save(out)
    if not args.quiet:
        _print_selection(sel)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cmd_choose_k(args: argparse.Namespace) -> int:
    maps = _load_datamaps(args.datamaps)
    t = len(maps.task_names)
    k_max = t - 1 if args.k_max is None else args.k_max
    if not 2 <= args.k_min <= k_max <= t - 1:
        raise _UserError(
            f"need 2 <= --k-min <= --k-max <= tasks - 1 = {t - 1}; "
            f"got --k-min {args.k_min}, --k-max {k_max}"
        )
    out = _output_folder_exists(args.output) if args.output else None
    from stgmtl.grouping import choose_k

    result = choose_k(
        maps, ks=range(args.k_min, k_max + 1), random_state=args.seed, features=args.features
    )
    import polars as pl

    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True):
        print(result.table)
    if out is not None:
        from stgmtl._io import atomic_file

        with atomic_file(out) as tmp:
            result.table.write_csv(tmp)
        print(f"wrote {out}", file=sys.stderr)
    print(f"chosen k: {result.best_k}")
    print(
        "note: these scores measure how well the tasks separate in the feature space, not "
        "whether training the groups separately pays off",
        file=sys.stderr,
    )
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from stgmtl import plots

    out = _output_folder_exists(args.output)
    maps = _load_datamaps(args.datamaps)
    if args.kind == "datamap":
        unknown = sorted(set(args.task or []) - set(maps.task_names))
        if unknown:
            raise _UserError(f"--task {unknown[0]!r} is not a task of {args.datamaps!r}")
        fig = plots.datamap_figure(maps, tasks=args.task)
    else:
        if args.groups is None:
            raise _UserError(f"--kind {args.kind} needs --groups GROUPS (from 'stgmtl group')")
        groups = _load_groups(args.groups)
        _check_same_tasks(maps, groups, args)
        draw = plots.memberships_figure if args.kind == "memberships" else plots.task_map_figure
        fig = draw(groups)
    plots.save_figure(fig, out, bbox_inches="tight")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from stgmtl.report import write_report

    out = _output_folder_exists(args.output)
    maps = _load_datamaps(args.datamaps)
    groups = None
    if args.groups is not None:
        groups = _load_groups(args.groups)
        _check_same_tasks(maps, groups, args)
    elif args.k is not None:
        from stgmtl.grouping import group

        _check_k(args.k, maps)
        groups = group(maps, k=args.k, random_state=args.seed, progress=not args.quiet)
    evaluation = _load_table(args.evaluation) if args.evaluation else None
    affinities = _load_affinities(args.affinity) if args.affinity else None
    write_report(
        out,
        maps,
        groups,
        evaluation,
        affinities=affinities,
        title=args.title,
        max_points=args.max_points,
        progress=not args.quiet,
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cmd_affinity(args: argparse.Namespace) -> int:
    from stgmtl.affinity import FREE_SIGNALS, free_signals

    out = _output_folder_exists(args.output)
    maps = _load_datamaps(args.datamaps)
    names = args.signals.split(",") if args.signals else list(FREE_SIGNALS)
    unknown = [s for s in names if s not in FREE_SIGNALS]
    if unknown:
        raise _UserError(
            f"--signals {unknown[0]!r} is not a free signal; choose from {', '.join(FREE_SIGNALS)} "
            "(tag, grad-cosine, rep-cosine and grad-tag need training: stgmtl.record_affinity)"
        )
    if "colearning" in names and len(maps.snapshot_epochs) < 2:
        raise _UserError(
            f"DATAMAPS {args.datamaps!r} has {len(maps.snapshot_epochs)} snapshot epoch(s); "
            "colearning needs 2 or more (record with snapshot_epochs covering every epoch), "
            "or leave it out of --signals"
        )
    if "confusion" in names and maps.task_type != "binary":
        raise _UserError("--signals confusion needs data maps of binary tasks")
    result = free_signals(maps, names, label_statistic=args.label_statistic)
    out.mkdir(exist_ok=True)
    for name, aff in result.items():
        aff.save(out / name)
    if not args.quiet:
        print("strongest partner of each task (source with the largest values[source, task]):")
        width = max(len(t) for t in maps.task_names)
        print(f"{'task':<{width}}  " + "  ".join(f"{n:<{width}}" for n in result))
        partners = {n: a.best_partners() for n, a in result.items()}
        for j, task in enumerate(maps.task_names):
            cells = "  ".join(f"{str(partners[n][j] or '-'):<{width}}" for n in result)
            print(f"{task:<{width}}  {cells}")
    print(f"wrote {out}/{{{','.join(result)}}}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from stgmtl.demo import main as demo_main

    return int(demo_main(args.demo_args))


# --------------------------------------------------------------------------------------------
# parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


_MAPS_HELP = "saved data maps (DataMaps.save / fit_datamaps output)"
_FEATURES_HELP = (
    "task features (default: datamap, STG-MTL's flattened [confidence, variability]; "
    "confusion: spectral embedding of cross-task confusion, binary tasks only)"
)
_SIGNAL_HELP = "which task affinity to use when the folder holds several (its signal name)"


def _add_group(sub: Any) -> None:
    p = sub.add_parser(
        "group",
        help="soft-group the tasks into k groups",
        description="Soft-group the tasks of saved data maps, or of a saved task affinity, into "
        "k groups (STG-MTL: faiss k-means + fuzzy memberships) and save the TaskGroups.",
    )
    p.add_argument(
        "datamaps",
        metavar="DATAMAPS",
        help=_MAPS_HELP + ", or a saved TaskAffinity (or a folder of them: see --signal)",
    )
    p.add_argument("--signal", default=None, help=_SIGNAL_HELP)
    p.add_argument("--k", type=_positive_int, required=True, help="number of groups")
    p.add_argument("-o", "--output", required=True, help="where to save the groups")
    p.add_argument("--m", type=float, default=1.07, help="fuzzifier > 1 (default: 1.07)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--features",
        choices=("datamap", "confusion", "affinity"),
        default=None,
        help=_FEATURES_HELP + "; affinity: spectral embedding of a task affinity (the default "
        "for a TaskAffinity)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="do not print the groups or a progress bar"
    )
    p.set_defaults(func=_cmd_group)


# ---- select (begin: selection)
def _add_select(sub: Any) -> None:
    p = sub.add_parser(
        "select",
        help="select task groups (networks) from a task affinity",
        description="Select networks from a saved task affinity and save the TaskSelection: "
        "tag (TAG: up to k overlapping networks, each task served by its best; exact up to 14 "
        "tasks), partition (best split into groups; exact up to 14 tasks), standley (networks "
        "within a cost budget, full network 1, single-task 0.5; from the affinity or from "
        "trained results with --scores), kmeans (spectral embedding + k-means; any number of "
        "tasks).",
    )
    p.add_argument(
        "affinity",
        metavar="AFFINITY",
        nargs="?",
        default=None,
        help="saved TaskAffinity (or a folder of them: see --signal)",
    )
    p.add_argument("--signal", default=None, help=_SIGNAL_HELP)
    p.add_argument(
        "--method",
        choices=("tag", "partition", "standley", "ptg", "kmeans"),
        default="tag",
        help="selection rule (default: tag)",
    )
    p.add_argument(
        "--k",
        type=_positive_int,
        default=None,
        help="tag: most networks; partition: exact number of groups (default: any); "
        "kmeans: number of groups",
    )
    p.add_argument("--budget", type=float, default=None, help="standley: the cost budget")
    p.add_argument(
        "--objective",
        choices=("tag", "total"),
        default="tag",
        help="partition: TAG's mean in-group affinity onto each task (default) or the "
        "total within-group affinity",
    )
    p.add_argument(
        "--singleton-score",
        type=float,
        default=-1e6,
        help="tag/partition: score of a task alone (TAG: -1e6; 0 = no transfer)",
    )
    p.add_argument(
        "--max-tasks",
        type=_positive_int,
        default=None,
        help="tag/partition: refuse more tasks than this (default 14, at most 16)",
    )
    p.add_argument(
        "--scores",
        default=None,
        help="standley: trained validation results, a table (.csv/.parquet/.json) "
        "with columns network ('a|b'), task, score",
    )
    p.add_argument(
        "--test-scores",
        default=None,
        help="standley: test results in the same form, reported for the selection",
    )
    p.add_argument("--lower-is-better", action="store_true", help="standley: the scores are losses")
    p.add_argument(
        "--max-candidates",
        type=_positive_int,
        default=None,
        help="standley: refuse more candidate networks (default 63)",
    )
    p.add_argument("--seed", type=int, default=0, help="kmeans: random seed (default: 0)")
    p.add_argument("-o", "--output", required=True, help="where to save the selection")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the selection")
    p.set_defaults(func=_cmd_select)


# ---- select (end: selection)


def _add_choose_k(sub: Any) -> None:
    p = sub.add_parser(
        "choose-k",
        help="suggest a number of groups",
        description="Score a range of k on saved data maps and print the best. The scores "
        "measure how well the tasks separate in the feature space, not whether training the "
        "groups separately pays off.",
    )
    p.add_argument("datamaps", metavar="DATAMAPS", help=_MAPS_HELP)
    p.add_argument("--k-min", type=int, default=2, help="smallest k tried (default: 2)")
    p.add_argument("--k-max", type=int, default=None, help="largest k tried (default: tasks - 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--features", choices=("datamap", "confusion"), default="datamap", help=_FEATURES_HELP
    )
    p.add_argument("-o", "--output", default=None, help="also save the score table (.csv)")
    p.set_defaults(func=_cmd_choose_k)


def _add_plot(sub: Any) -> None:
    p = sub.add_parser(
        "plot",
        help="draw data maps, memberships or the task map",
        description="Draw one figure (PNG, PDF or SVG by the file extension).",
    )
    p.add_argument("datamaps", metavar="DATAMAPS", help=_MAPS_HELP)
    p.add_argument(
        "--kind",
        choices=("datamap", "memberships", "taskmap"),
        default="datamap",
        help="datamap: per-task data maps (default); memberships: heatmap; "
        "taskmap: tasks in 2-D coloured by group (both need --groups)",
    )
    p.add_argument("--groups", default=None, help="saved groups (from 'stgmtl group')")
    p.add_argument(
        "--task",
        action="append",
        default=None,
        help="a task to draw (repeatable; default: all) for --kind datamap",
    )
    p.add_argument("-o", "--output", required=True, help="figure file")
    p.set_defaults(func=_cmd_plot)


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report",
        description="Write one offline HTML file with the groups, membership "
        "heatmap, per-task data maps and, if given, the evaluation table.",
    )
    p.add_argument("datamaps", metavar="DATAMAPS", help=_MAPS_HELP)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--groups", default=None, help="saved groups (from 'stgmtl group')")
    which.add_argument(
        "--k",
        type=_positive_int,
        default=None,
        help="group on the fly into k groups (instead of --groups)",
    )
    p.add_argument(
        "--evaluation",
        default=None,
        help="evaluation table (.parquet/.csv/.json) with columns method, seed, task, "
        "f1, balanced_accuracy, roc_auc",
    )
    p.add_argument(
        "--affinity",
        action="append",
        default=None,
        help="a saved TaskAffinity, or a folder of them, to draw (repeatable)",
    )
    p.add_argument("--title", default="stgmtl report", help="page title")
    p.add_argument(
        "--max-points",
        type=_positive_int,
        default=1000,
        help="samples drawn per task panel (default: 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for --k (default: 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, help="the .html file to write")
    p.set_defaults(func=_cmd_report)


def _add_affinity(sub: Any) -> None:
    p = sub.add_parser(
        "affinity",
        help="compute and save the free task-affinity signals",
        description="Compute the free task-affinity signals of saved data maps (datamap: "
        "negated data-map distance; confusion: P(task i says yes) on task j's positives, "
        "symmetrised; label: label co-occurrence; colearning: correlation of per-epoch "
        "confidence changes) and save one TaskAffinity folder per signal under OUTPUT "
        "(values[i, j] = effect of task i on task j, larger = more helpful). The "
        "training-based signals (tag, grad-cosine, rep-cosine, grad-tag) are recorded while "
        "training, in Python: stgmtl.record_affinity(loader, model, signals=[...]) or the "
        "probes of stgmtl.record in your own loop.",
    )
    p.add_argument("datamaps", metavar="DATAMAPS", help=_MAPS_HELP)
    p.add_argument(
        "-o", "--output", required=True, help="folder to write (one subfolder per signal)"
    )
    p.add_argument(
        "--signals",
        default=None,
        help="comma-separated subset of datamap,confusion,label,colearning (default: all)",
    )
    p.add_argument(
        "--label-statistic",
        choices=("uncertainty", "conditional_entropy", "phi"),
        default="uncertainty",
        help="statistic of the label signal (default: uncertainty, I(Y_i;Y_j)/H(Y_j))",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the partner table")
    p.set_defaults(func=_cmd_affinity)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the CIFAR-100 grouping demo",
        usage="stgmtl demo [-h] [--] [ARGS ...]",
        description="Run the CIFAR-100 grouping demo (stgmtl.demo). Every argument after "
        "'demo' goes to the demo, e.g. 'stgmtl demo --epochs 2 --out runs/demo'; "
        "'stgmtl demo -- --help' shows the demo's own options.",
    )
    p.set_defaults(func=_cmd_demo, demo_args=[])


#: The subcommands, in ``--help`` order: each adds its subparser (and its handler).
SUBCOMMANDS: list[Callable[[Any], None]] = [
    _add_group,
    _add_select,
    _add_choose_k,
    _add_plot,
    _add_report,
    _add_affinity,
    _add_demo,
    add_payoff_parser,  # stgmtl/payoff_command.py
]


def build_parser() -> argparse.ArgumentParser:
    """The ``stgmtl`` argument parser (one subparser per entry of :data:`SUBCOMMANDS`)."""
    from stgmtl._version import __version__

    parser = _Parser(
        prog=_PROG,
        description="Decide which classification tasks to train together, from data maps "
        "recorded during one multi-task training run.",
        epilog="Run 'stgmtl COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the full traceback on errors (for bug reports)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``stgmtl`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when the input was bad, 2 for a bad command line.
    """
    parser = build_parser()
    head, demo_args = _split_demo(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(head)
    if demo_args is not None:
        args.demo_args = demo_args
    show_tb = args.traceback or os.environ.get("STGMTL_TRACEBACK") == "1"
    try:
        return int(args.func(args))
    except (_UserError, FileNotFoundError, FileExistsError, ValueError) as err:
        if show_tb:
            raise
        print(f"{_PROG} {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{_PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


def _split_demo(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Cut ``demo``'s arguments off before argparse sees them: they belong to the script."""
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            continue  # global options take no values
        if arg != "demo" or argv[i + 1 :] in (["-h"], ["--help"]):
            break
        rest = argv[i + 1 :]
        return argv[: i + 1], rest[1:] if rest[:1] == ["--"] else rest
    return argv, None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
