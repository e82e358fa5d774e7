"""The HTML report: content, self-containment, escaping, errors, and a real headless browser."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from stgmtl.report import render_report, write_report

T, N, K = 7, 120, 3


def _maps(rng: np.random.Generator) -> SimpleNamespace:
    names = [f"task_{i}" for i in range(T - 1)] + ["<b>odd & name</b>"]
    count = np.full((T, N), 4)
    count[:, :10] = 0  # never observed: not drawn
    return SimpleNamespace(
        task_names=names,
        confidence=rng.random((T, N)),
        variability=rng.random((T, N)) * 0.5,
        correctness=rng.random((T, N)),
        count=count,
    )


def _groups(names: list[str], rng: np.random.Generator) -> SimpleNamespace:
    membership = rng.dirichlet(np.ones(K), size=T)
    # planted: task 0..2 -> group 0, 3..4 -> group 1, 5..6 -> group 2
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    membership[np.arange(T), labels] += 2.0
    membership /= membership.sum(axis=1, keepdims=True)
    return SimpleNamespace(task_names=names, membership=membership, labels=labels)


def _evaluation(names: list[str], rng: np.random.Generator) -> pl.DataFrame:
    rows = [
        dict(
            method=m,
            seed=s,
            task=t,
            f1=rng.random(),
            balanced_accuracy=rng.random(),
            roc_auc=rng.random(),
        )
        for m in ("one_model", "stg_mtl", "random_groups")
        for s in range(3)
        for t in names
    ]
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    maps = _maps(rng)
    return maps, _groups(maps.task_names, rng), _evaluation(maps.task_names, rng)


@pytest.fixture(scope="module")
def full_report(inputs) -> str:
    return render_report(*inputs, progress=False)


def test_report_holds_groups_heatmap_datamaps_and_evaluation(inputs, full_report):
    maps, groups, ev = inputs
    text = full_report
    assert text.startswith("<!DOCTYPE html>")
    # one heatmap + one data-map figure per non-empty group
    assert len(re.findall(r'<img class="membership-heatmap"', text)) == 1
    assert len(re.findall(r'<img class="datamap"', text)) == K
    # every group row lists its planted members
    rows = re.findall(r'<tr class="group-row" data-group="(\d)">(.*?)</tr>', text)
    assert [int(g) for g, _ in rows] == list(range(K))
    assert "task_0" in rows[0][1] and "task_3" in rows[1][1] and "task_5" in rows[2][1]
    # evaluation summary: per seed mean over tasks, then mean +- std over seeds (numpy reference)
    for method in ("one_model", "stg_mtl", "random_groups"):
        sub = ev.filter(pl.col("method") == method)
        per_seed = [sub.filter(pl.col("seed") == s)["f1"].to_numpy().mean() for s in range(3)]
        expected = f"{np.mean(per_seed):.3f} &plusmn; {np.std(per_seed, ddof=1):.3f}"
        row = re.search(rf'<tr class="eval-row"><td>{method}</td>(.*?)</tr>', text)
        assert row is not None and expected in row.group(1)
    assert len(re.findall(r'<tr class="task-row">', text)) == T


def test_report_is_self_contained_and_escapes_names(full_report):
    text = full_report
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'(src|href)="(?!data:)', text), "only data: URIs may be referenced"
    assert "http://" not in text and "https://" not in text
    assert "<b>odd & name</b>" not in text
    assert html.escape("<b>odd & name</b>") in text


def test_undefined_metrics_are_left_out_of_the_means():
    ev = pl.DataFrame({"method": ["a"] * 4, "seed": [0, 0, 1, 1], "task": ["x", "y"] * 2,
                       "roc_auc": [0.5, float("nan"), 0.7, 0.9]})  # fmt: skip
    text = render_report(evaluation=ev, progress=False)
    expected = f"{np.mean([0.5, 0.8]):.3f} &plusmn; {np.std([0.5, 0.8], ddof=1):.3f}"
    assert expected in text
    assert '<tr class="task-row"><td>y</td><td class="num">0.900</td></tr>' in text


def test_report_parts_are_optional(inputs):
    maps, groups, ev = inputs
    only_maps = render_report(maps, progress=False)
    assert 'id="datamaps"' in only_maps and 'id="groups"' not in only_maps
    assert len(re.findall(r'<img class="datamap"', only_maps)) == 1
    only_eval = render_report(evaluation=ev.drop("seed"), progress=False)
    assert 'id="evaluation"' in only_eval and "<img" not in only_eval
    capped = render_report(maps, max_tasks_per_figure=2, progress=False)
    assert "Not drawn (5 more)" in capped


def test_report_rejects_bad_input(inputs):
    maps, groups, ev = inputs
    with pytest.raises(ValueError, match="at least one of"):
        render_report()
    bad = SimpleNamespace(task_names=groups.task_names, membership=groups.membership[:3])
    with pytest.raises(ValueError, match="groups.membership: expected shape"):
        render_report(groups=bad)
    with pytest.raises(TypeError, match="'confidence'"):
        render_report(SimpleNamespace(task_names=["a"]))
    with pytest.raises(ValueError, match="missing column"):
        render_report(evaluation=ev.drop("task"))
    with pytest.raises(TypeError, match="polars DataFrame"):
        render_report(evaluation=ev.to_dicts())


def test_write_report_is_atomic(inputs, tmp_path):
    maps, groups, _ = inputs
    out = write_report(tmp_path / "r.html", maps, groups, progress=False)
    assert out.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any other file
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "nope" / "r.html", maps, progress=False)
    with pytest.raises(ValueError):
        write_report(tmp_path / "r.html")  # render fails: the old file stays, no temp left
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


# ---------------------------------------------------------------------------------------------
# a real browser

_PROBE = (
    '<script>window.addEventListener("load",()=>{document.body.setAttribute("data-probe-images",'
    '[...document.images].map(i=>i.complete+":"+i.naturalWidth+"x"+i.naturalHeight).join(","));'
    'document.body.setAttribute("data-probe-height",document.body.scrollHeight)});</script>'
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on this machine: run scripts/install_chromium.sh as root")


def _run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            binary, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", *args,
        ]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(full_report, tmp_path):
    binary = _chromium()
    report = tmp_path / "report.html"
    report.write_text(full_report, encoding="utf-8")
    # the probe is added to a copy only: the report itself carries no script
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"))
    dom = _run_chromium(binary, "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    sizes = re.search(r'data-probe-images="([^"]*)"', dom.stdout)
    assert sizes is not None, "the page's load event never ran"
    images = sizes.group(1).split(",")
    assert len(images) == 1 + K
    for entry in images:
        complete, size = entry.split(":")
        width, height = (int(v) for v in size.split("x"))
        assert complete == "true" and width > 100 and height > 100, entry
    assert int(re.search(r'data-probe-height="(\d+)"', dom.stdout).group(1)) > 1000
    for name in ("task_0", "task_5", "one_model", "stg_mtl", "random_groups"):
        assert name in dom.stdout
    assert "&lt;b&gt;odd &amp; name&lt;/b&gt;" in dom.stdout  # shown as text, not markup
    assert dom.stdout.count('class="task-row"') == T

    # and pixels: the unmodified report, screenshotted, is not blank
    shot = tmp_path / "shot.png"
    run = _run_chromium(binary, "--window-size=1000,1400", f"--screenshot={shot}", report.as_uri())
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[:2] == (1400, 1000)
    assert pixels[..., :3].std() > 0.05, "screenshot is blank"
    assert (pixels[..., :3].mean(axis=2) < 0.5).mean() > 0.01, "no dark pixels: nothing drawn"


def test_install_script_is_idempotent_when_chromium_exists():
    script = Path(__file__).resolve().parents[1] / "scripts" / "install_chromium.sh"
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium not installed: running the script would install it")
    run = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert run.returncode == 0 and run.stdout == ""
