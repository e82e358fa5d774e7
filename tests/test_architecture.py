"""The package's shape: a one-way pipeline without import cycles, and a small public surface.

Read from the source (every ``import`` / ``from ... import`` at any depth: function-local and
``TYPE_CHECKING`` imports count), so a new module that imports against the pipeline fails here.

Stages, in pipeline order; a module may import from its own stage and from stages to its left:

    base (utilities, the training loop) -> data objects (DataMaps, TaskAffinity) -> record ->
    features -> grouping -> specialise -> payoff (the experiment) -> example users (CIFAR suites,
    models) -> presentation
    -> the root package (a facade that lazily re-exports public names; nothing imports it)

The data objects sit left of recording because every stage reads them and the recorders build
them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "stgmtl"

STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("stgmtl._version", "stgmtl._lazy", "stgmtl._checks", "stgmtl._io",
              "stgmtl.batches", "stgmtl.loop")),
    ("data", ("stgmtl.datamaps", "stgmtl.affinity")),
    ("record", ("stgmtl.record",)),
    ("features", ("stgmtl.features",)),
    ("grouping", ("stgmtl.grouping",)),
    ("specialise", ("stgmtl.specialise",)),
    ("payoff", ("stgmtl.payoff",)),
    ("users", ("stgmtl.datasets", "stgmtl.models")),
    ("presentation", ("stgmtl.plots", "stgmtl.report", "stgmtl.cli", "stgmtl.demo",
                      "stgmtl.payoff_command",
                      "stgmtl.__main__", "stgmtl.integrations")),
    ("facade", ()),  # the root package: lazy re-exports of every stage's public names
]  # fmt: skip
#: third-party packages a stage must not import
FORBIDDEN = {
    "data": ("torch", "faiss", "sklearn", "matplotlib"),
    "record": ("faiss", "sklearn", "matplotlib"),
    "features": ("torch", "faiss", "matplotlib"),
    "grouping": ("torch", "matplotlib"),
    "specialise": ("faiss", "matplotlib"),
    "payoff": ("faiss", "matplotlib"),
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


MODULES = _modules()


def _stage(module: str) -> int:
    if module == "stgmtl":
        return len(STAGES) - 1
    best = None
    for i, (_, prefixes) in enumerate(STAGES):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (
                best is None or len(p) > len(best[1])
            ):
                best = (i, p)
    assert best is not None, f"{module} is in no pipeline stage: add it to STAGES"
    return best[0]


def _resolve(current: str, node: ast.Import | ast.ImportFrom) -> tuple[set[str], set[str]]:
    """(stgmtl modules, third-party top-level packages) that ``node`` imports."""
    is_pkg = MODULES[current].name == "__init__.py"
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = current.split(".") if is_pkg else current.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        targets = [f"{base}.{a.name}" for a in node.names] or [base]
        if not any(t in MODULES for t in targets):
            targets = [base]
    ours, theirs = set(), set()
    for t in targets:
        if t.split(".")[0] != "stgmtl":
            theirs.add(t.split(".")[0])
            continue
        while t not in MODULES:
            t = t.rsplit(".", 1)[0]
        if t != current:
            ours.add(t)
    return ours, theirs


def _imports() -> dict[str, tuple[set[str], set[str], list[str]]]:
    out = {}
    for name, path in MODULES.items():
        ours: set[str] = set()
        theirs: set[str] = set()
        private: list[str] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                o, t = _resolve(name, node)
                ours |= o
                theirs |= t
                if isinstance(node, ast.ImportFrom) and o:
                    private += [a.name for a in node.names if a.name.startswith("_")
                                and a.name != "__version__"]  # fmt: skip
        out[name] = (ours, theirs, private)
    return out


IMPORTS = _imports()


def test_every_module_belongs_to_a_stage():
    for name in MODULES:
        _stage(name)


def test_no_import_runs_against_the_pipeline():
    bad = [
        f"{m} ({STAGES[_stage(m)][0]}) -> {d} ({STAGES[_stage(d)][0]})"
        for m, (ours, _, _) in IMPORTS.items()
        for d in sorted(ours)
        if _stage(d) > _stage(m)
    ]
    assert not bad, "imports against the pipeline:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {m: ours for m, (ours, _, _) in IMPORTS.items()}
    colour: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        colour[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if colour.get(w) == 1:
                cycles.append(stack[stack.index(w) :] + [w])
            elif w not in colour:
                visit(w)
        stack.pop()
        colour[v] = 2

    for v in sorted(graph):
        if v not in colour:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_stages_keep_out_of_heavy_or_foreign_packages():
    bad = []
    for m, (_, theirs, _) in IMPORTS.items():
        stage = STAGES[_stage(m)][0]
        bad += [f"{m} imports {pkg}" for pkg in sorted(theirs & set(FORBIDDEN.get(stage, ())))]
    assert not bad, "\n".join(bad)


def test_no_private_name_is_imported_across_modules():
    bad = [f"{m}: {names}" for m, (_, _, names) in IMPORTS.items() if names]
    assert not bad, "private names imported from other modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "stgmtl.__main__"))
def test_every_module_declares_its_public_names(module):
    tree = ast.parse(MODULES[module].read_text())
    names = [
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    ]
    assert "__all__" in names, f"{module} has no __all__"


def test_the_checker_catches_a_violation(tmp_path, monkeypatch):
    """The graph reader sees a function-local import that runs against the pipeline."""
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    from stgmtl.plots import save_figure\n")
    monkeypatch.setitem(MODULES, "stgmtl.grouping.probe", fake)
    node = next(n for n in ast.walk(ast.parse(fake.read_text())) if isinstance(n, ast.ImportFrom))
    ours, _ = _resolve("stgmtl.grouping.probe", node)
    assert ours == {"stgmtl.plots"}
    assert _stage("stgmtl.plots") > _stage("stgmtl.grouping.probe")
