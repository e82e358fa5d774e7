"""The documentation: its code runs, its commands parse, every public name is documented, and the
site builds (``mkdocs build --strict``) and renders in a headless browser.

* Every Python block of the README and the guide pages (``docs/getting-started.md``,
  ``docs/guide/*.md``, ``docs/reference/file-formats.md``) is executed, page by page in one
  namespace, in a temporary folder. A block preceded by ``<!-- skip-test: REASON -->`` is not
  run, and must give a reason.
  ``--8<-- "file"`` lines include ``docs/snippets/file`` as the site does. The README's blocks run
  after ``docs/snippets/synthetic.py`` (the guide's small synthetic problem) and
  ``model = make_model()``, which define the dataset and model they name.
* Every ``stgmtl ...`` command line in a bash block parses with the real parser, and every
  ``python examples/...`` / ``benchmarks/...`` / ``scripts/...`` script it names exists.
* Every name in the ``__all__`` of a public module is rendered by some ``::: module`` directive of
  ``docs/api/`` (read back from the built site's inventory in the build test).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"
SKIP = re.compile(r"^<!-- skip-test: (?P<reason>.*?) -->$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<lang>[\w-]*)")
INCLUDE = re.compile(r'^(?P<indent> *)--8<-- "(?P<file>[^"]+)"\s*$')


def guide_pages() -> list[Path]:
    """The pages whose Python blocks must run: README, getting started, guide, file formats."""
    return [
        ROOT / "README.md",
        DOCS / "getting-started.md",
        *sorted((DOCS / "guide").glob("*.md")),
        DOCS / "reference" / "file-formats.md",
    ]


def _include(body: str) -> str:
    def repl(match: re.Match[str]) -> str:
        text = (SNIPPETS / match.group("file")).read_text(encoding="utf-8")
        return "".join(match.group("indent") + line for line in text.splitlines(keepends=True))

    return INCLUDE.sub(repl, body)


def code_blocks(page: Path) -> list[dict[str, Any]]:
    """Fenced blocks of ``page``: language, body (dedented, snippets included), line, skip."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i, previous = [], 0, ""
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, fence, start = len(m.group("indent")), m.group("fence"), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        skip = SKIP.match(previous)
        blocks.append({
            "lang": m.group("lang"),
            "body": _include("\n".join(body) + "\n"),
            "line": start + 1,
            "skip": None if skip is None else skip.group("reason").strip(),
        })  # fmt: skip
        previous, i = "", i + 1
    return blocks


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# --------------------------------------------------------------------------------------------
# the code in the docs runs


# pages whose blocks train several models or start Lightning (> ~10 s on 2 cores)
SLOW_PAGES = {"docs/guide/training.md", "docs/guide/lightning.md", "docs/guide/transformers.md"}


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, id=_page_id(p), marks=[pytest.mark.slow] * (_page_id(p) in SLOW_PAGES))
        for p in guide_pages()
    ],
)
def test_python_blocks_run(
    page: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    single_thread: None,
) -> None:
    blocks = [b for b in code_blocks(page) if b["lang"] in ("python", "py")]
    assert blocks, f"{page} has no Python block"
    for b in blocks:
        assert b["skip"] != "", f"{page}:{b['line']}: a skipped block must say why"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STGMTL_DATA", str(tmp_path / "no-data"))  # no block may need CIFAR
    from stgmtl.features import FEATURE_KINDS

    kinds = dict(FEATURE_KINDS)  # a page may register a kind: restored afterwards
    request.addfinalizer(lambda: (FEATURE_KINDS.clear(), FEATURE_KINDS.update(kinds)))
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    if page.name == "README.md":  # the README names a dataset and a model of the reader's
        exec(compile((SNIPPETS / "synthetic.py").read_text(), "synthetic.py", "exec"), namespace)
        exec("model = make_model()", namespace)
    ran = 0
    for b in blocks:
        if b["skip"] is not None:
            continue
        code = compile(b["body"], f"{_page_id(page)}:{b['line']}", "exec")
        try:
            exec(code, namespace)
        except ModuleNotFoundError as err:
            if err.name in ("lightning", "pytorch_lightning"):
                pytest.skip(f"{page.name} needs the extra: pip install 'stgmtl[lightning]'")
            if err.name in ("transformers", "accelerate"):
                pytest.skip(f"{page.name} needs the extra: pip install 'stgmtl[transformers]'")
            raise
        ran += 1
    assert ran, f"{page}: every Python block is skipped"


def test_skip_markers_name_a_reason() -> None:
    for page in guide_pages():
        for b in code_blocks(page):
            assert b["skip"] is None or len(b["skip"]) >= 10, f"{page}:{b['line']}: {b['skip']!r}"


def test_every_guide_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted(DOCS.rglob("*.md")):
        rel = page.relative_to(DOCS).as_posix()
        if not rel.startswith("snippets/"):
            assert f" {rel}" in nav, f"{rel} is not in mkdocs.yml's nav"


def test_images_are_small_and_drawn_by_the_figure_script() -> None:
    script = (ROOT / "scripts" / "docs_figures.py").read_text(encoding="utf-8")
    images = [p for p in DOCS.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".svg", ".gif")]
    assert images, "docs/ holds no figure"
    for image in images:
        assert image.parent == DOCS / "assets" / "figures", f"{image}: not in assets/figures/"
        assert f'"{image.name}"' in script, f"{image.name} is not drawn by scripts/docs_figures.py"
        assert image.stat().st_size < 200 * 1024, f"{image.name} is over 200 KiB"


# --------------------------------------------------------------------------------------------
# the commands in the docs parse


def _command_lines() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    out = []
    for page in pages:
        for b in code_blocks(page):
            if b["lang"] not in ("bash", "sh", "console"):
                continue
            text = b["body"].replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split(" #", 1)[0].strip()
                if line:
                    out.append((f"{_page_id(page)}:{b['line']}", line))
    return out


def test_stgmtl_command_lines_parse() -> None:
    from stgmtl.cli import build_parser
    from stgmtl.demo import parse_args as demo_args

    seen = 0
    for where, line in _command_lines():
        words = shlex.split(line)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]  # VAR=value prefixes
        if not words or words[0] != "stgmtl":
            continue
        seen += 1
        if len(words) > 1 and words[1] == "demo":
            demo_args(words[2:])
            continue
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as exc:
            if exc.code != 0:  # --help / --version exit 0
                pytest.fail(f"{where}: `{line}` does not parse")
    assert seen >= 5


def test_readme_gives_the_command_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [ln.strip() for ln in ci.splitlines() if ln.strip().startswith("make ")]
    assert commands, ".ci/run runs no make target"
    readme = [b["body"] for b in code_blocks(ROOT / "README.md") if b["lang"] == "bash"]
    for command in commands:
        assert any(command in body for body in readme), f"the README lacks `{command}`"


def test_scripts_named_in_the_docs_exist() -> None:
    for where, line in _command_lines():
        for word in shlex.split(line.replace("$", "")):
            if re.match(r"^(examples|benchmarks|scripts)/[\w./-]+\.(py|sh)$", word):
                assert (ROOT / word).is_file(), f"{where}: {word} does not exist"


# --------------------------------------------------------------------------------------------
# every public name is in the API reference


def public_modules() -> list[str]:
    """Every importable public module of stgmtl (the Lightning one only with its extra)."""
    import stgmtl

    names = ["stgmtl"]
    for info in pkgutil.walk_packages(stgmtl.__path__, "stgmtl."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts):
            continue
        if info.name == "stgmtl.integrations.lightning" and not _has("lightning"):
            continue
        names.append(info.name)
    return names


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def api_directives() -> dict[str, bool]:
    """``::: module`` directives of docs/api: module -> whether its members are rendered."""
    out: dict[str, bool] = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"^::: ([\w.]+)\n((?:    .*\n)*)", text, re.M):
            out[m.group(1)] = "members: false" not in m.group(2)
    return out


def _documented_owner(name: str, obj: Any, rendered: set[str]) -> str | None:
    """A rendered module whose ``__all__`` holds ``name`` as this very object."""
    for mod in sorted(rendered):
        module = importlib.import_module(mod)
        if name in getattr(module, "__all__", ()) and getattr(module, name, None) is obj:
            return mod
    return None


def test_every_public_name_has_an_api_directive() -> None:
    directives = api_directives()
    rendered = {m for m, members in directives.items() if members}
    missing = []
    for mod in public_modules():
        assert mod in directives, (
            f"public module {mod} is not in the API reference: add a line '::: {mod}' to the "
            "docs/api/ page of its pipeline stage"
        )
        module = importlib.import_module(mod)
        for name in getattr(module, "__all__", ()):
            if name == "__version__":
                continue
            if _documented_owner(name, getattr(module, name), rendered) is None:
                missing.append(f"{mod}.{name}")
    assert not missing, f"public names rendered by no '::: module' of docs/api/: {missing}"


# --------------------------------------------------------------------------------------------
# the site builds and renders


def _docs_extra() -> None:
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
               if not _has(m)]  # fmt: skip
    if missing:
        pytest.skip(f"the docs extra is not installed ({missing}): pip install -e '.[docs]'")


def _inventory(path: Path) -> set[str]:
    """Object names of a Sphinx ``objects.inv`` (version 2) as mkdocstrings writes it."""
    data = path.read_bytes()
    body = zlib.decompress(data[data.index(b"zlib") :].split(b"\n", 1)[1])
    return {line.split(" ", 1)[0] for line in body.decode().splitlines() if line.strip()}


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _docs_extra()
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return site


@pytest.mark.slow
def test_site_builds_strict_with_every_public_name(built_site: Path) -> None:
    assert (built_site / "index.html").is_file()
    inventory = _inventory(built_site / "objects.inv")
    missing = []
    for mod in public_modules():
        module = importlib.import_module(mod)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            owners = [
                entry for entry in inventory
                if entry.rsplit(".", 1)[-1] == name and entry.rsplit(".", 1)[0] in sys.modules
                and getattr(sys.modules[entry.rsplit(".", 1)[0]], name, None) is obj
            ]  # fmt: skip
            if not owners and name != "__version__":
                missing.append(f"{mod}.{name}")
    assert not missing, f"public names missing from the built API reference: {missing}"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on this machine: run scripts/install_chromium.sh as root")


def _dump_dom(binary: str, url: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            binary, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
            "--dump-dom", url,
        ]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def _text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


@pytest.mark.slow
def test_site_renders_in_headless_chromium(built_site: Path) -> None:
    binary = _chromium()
    index = _dump_dom(binary, (built_site / "index.html").as_uri())
    text = _text(index)
    assert "Decide which classification tasks" in text  # the README is the front page
    assert "make demo" in text and "make test" in text
    for page in ("getting-started.html", "guide/record.html", "api/record.html"):
        assert f'href="{page}"' in index, f"the navigation lacks {page}"
    assert 'class="md-nav' in index  # the theme rendered its navigation

    api = _dump_dom(binary, (built_site / "api" / "record.html").as_uri())
    text = _text(api)
    assert 'id="stgmtl.record.recorder.DataMapRecorder"' in api
    assert "Per (task, sample) confidence, variability and correctness" in text  # docstring
    assert re.search(r"update \( logits : Tensor , targets : Tensor", text)  # a signature
    assert re.search(r"Parameters:?\s+Name\s+Type\s+Description", text)  # a parameter table
    # a cross-reference from a docstring role became a link into another page
    assert re.search(r'href="loop\.html#stgmtl\.loop\.[A-Za-z_]+"', api)
