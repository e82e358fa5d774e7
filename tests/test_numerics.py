"""Nothing a user passes aborts the interpreter inside faiss or BLAS (issue 13, item 1).

Each kind of input (huge, tiny, mixed scales, near-duplicate rows, more groups than distinct rows,
beyond the supported magnitude) is run through every grouping entry point that reaches faiss or
BLAS (reduce, k-means, k-means++, distances, memberships, FCM, choose_k, the full-space
refinement) in a subprocess: an abort (SIGABRT from an uncaught faiss exception) fails the test
instead of killing pytest. Each entry point must either work (groups recovered where the input
has them) or raise a ValueError that says what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

_SCRIPT = r"""
import json, sys
import numpy as np
from sklearn.metrics import adjusted_rand_score as ari

from stgmtl.grouping import TaskGrouper, choose_k, fuzzy_memberships, group
from stgmtl.grouping.choose_k import xie_beni
from stgmtl.grouping.kmeans import kmeans, kmeans_plusplus, refine_full_space, sq_distances
from stgmtl.grouping.membership import fuzzy_cmeans
from stgmtl.grouping.reduce import reduce_features

kind, k = sys.argv[1], 3
rng = np.random.default_rng(0)
truth = np.repeat(np.arange(k), [25, 20, 15])
centres = rng.normal(size=(k, 300)) * 3.0
x = centres[truth] + rng.normal(size=(60, 300))  # three planted groups
if kind == "huge":  # rows of normal noise scaled by 1e20: once a faiss abort
    x = x * 1e20
elif kind == "tiny":
    x = x * 1e-20
elif kind == "mixed":  # columns of wildly different magnitudes
    x = x * np.where(np.arange(300) % 2 == 0, 1e20, 1e-20)
elif kind == "near_duplicates":  # groups of rows that differ in the 12th digit only
    x = centres[truth] * (1 + 1e-12 * rng.normal(size=(60, 300)))
elif kind == "few_distinct":  # 60 rows, 2 distinct, more groups (3) than distinct rows
    x = centres[truth % 2].copy()
elif kind == "beyond":
    x = x * 1e200
elif kind == "float32_huge":
    x = (x * 1e30).astype(np.float32)


def run(name, fn):
    print("START", name, flush=True)  # the last START names the entry point of an abort
    try:
        value = fn()
        print("RESULT", json.dumps({"name": name, "ok": True, "value": value}), flush=True)
    except Exception as err:  # noqa: BLE001 - reported to the test
        print("RESULT", json.dumps({"name": name, "ok": False,
              "error": f"{type(err).__name__}: {err}"}), flush=True)


def labels_ari(labels):
    return float(ari(truth, labels))


for red in ("auto", "none", "pca", "rpca", "projection"):
    run(f"group reduce={red}",
        lambda red=red: labels_ari(group(x, k, reduce=red, progress=False).labels))
for method in ("fcm", "hard"):
    run(f"group method={method}",
        lambda method=method: labels_ari(group(x, k, method=method, progress=False).labels))
run("group refine=True",
    lambda: labels_ari(group(x, k, reduce="rpca", refine=True, progress=False).labels))
run("TaskGrouper n_init=1",
    lambda: labels_ari(TaskGrouper(k, n_init=1, progress=False).fit(x).labels_))
run("reduce_features", lambda: list(reduce_features(x).embedding.shape))
x32 = x.astype(np.float32) if np.abs(x).max() < 3e38 else x
run("kmeans", lambda: labels_ari(kmeans(x32, k).labels))
run("kmeans k=6", lambda: int(kmeans(x32, 6).labels.max()))
run("kmeans_plusplus", lambda: kmeans_plusplus(x32, k, np.random.default_rng(0)).shape[0])
cent = np.stack([x[truth == j].mean(axis=0) for j in range(k)])
run("sq_distances", lambda: bool(np.isfinite(sq_distances(x, cent)).all()))
run("fuzzy_memberships", lambda: labels_ari(
    fuzzy_memberships(sq_distances(x, cent), squared=True).argmax(axis=1)))
run("fuzzy_cmeans", lambda: labels_ari(fuzzy_cmeans(x, cent)[1].argmax(axis=1)))
run("xie_beni", lambda: float(xie_beni(x, np.eye(k)[truth], cent, 1.07)))
run("refine_full_space", lambda: labels_ari(refine_full_space(x, truth, k)[1]))
run("choose_k", lambda: int(choose_k(x, ks=[2, 3, 4], n_seeds=2).best_k))
"""


def _run_kind(kind: str) -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), kind],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    started = [ln[6:] for ln in res.stdout.splitlines() if ln.startswith("START ")]
    assert res.returncode == 0, (
        f"{kind}: the interpreter died (return code {res.returncode}) in {started[-1:]}: "
        f"{res.stderr[-1500:]}"
    )
    out = {}
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            row = json.loads(line[7:])
            out[row["name"]] = row
    assert len(out) == len(started), res.stdout[-2000:]
    return out


@pytest.mark.parametrize("kind", ["huge", "tiny", "mixed", "float32_huge"])
def test_extreme_scales_group_as_the_unscaled_data(kind):
    """Grouping is scale-invariant: every entry point works and recovers the planted groups."""
    out = _run_kind(kind)
    for name, row in out.items():
        assert row["ok"], f"{kind} / {name}: {row['error']}"
        if isinstance(row["value"], float) and name != "xie_beni":
            assert row["value"] == 1.0, f"{kind} / {name}: ARI {row['value']}"
    assert out["choose_k"]["value"] == 3
    assert out["sq_distances"]["value"] is True
    assert np.isfinite(out["xie_beni"]["value"])


def test_near_duplicate_rows_are_grouped():
    out = _run_kind("near_duplicates")
    for name, row in out.items():
        if row["ok"]:
            if isinstance(row["value"], float) and name != "xie_beni":
                assert row["value"] == pytest.approx(1.0), f"{name}: ARI {row['value']}"
        else:  # rows identical in float32: too few distinct rows is the only acceptable error
            assert row["error"].startswith("ValueError") and "distinct" in row["error"], (
                f"{name}: {row['error']}"
            )


def test_more_groups_than_distinct_rows_raise_or_work_without_abort():
    out = _run_kind("few_distinct")
    for name in [n for n in out if n.startswith(("group", "TaskGrouper"))] + ["choose_k"]:
        assert not out[name]["ok"], name
        assert "only 2 distinct task feature vectors, fewer than n_groups=3" in out[name]["error"]
        assert "lower n_groups or check for duplicated tasks" in out[name]["error"]
    assert out["kmeans k=6"]["ok"] and out["kmeans_plusplus"]["ok"]  # coinciding centroids


def test_values_beyond_float64_squares_raise_what_to_do():
    out = _run_kind("beyond")
    for name, row in out.items():
        assert not row["ok"], name
        assert (
            "expected feature values of magnitude at most 1e+100, got 1.36538e+201"
            in (row["error"])
        ), name
        assert "divide the features by a constant" in row["error"], name


_ONCE_ABORTED = r"""
import numpy as np
from stgmtl import group

rng = np.random.default_rng(0)
x = rng.normal(size=(60, 40)) * 1e20  # the issue's input
groups = group(x, 3, progress=False)
scaled = group(x * 1e-20, 3, progress=False)  # the same grouping at unit scale
print(groups.membership.shape, bool(np.isfinite(groups.membership).all()),
      float(np.abs(groups.membership.sum(axis=1) - 1).max()) < 1e-12,
      groups.inertia > 1e40, bool(np.isfinite(groups.inertia)),
      bool((groups.labels == scaled.labels).all()))
"""


def test_the_once_aborting_input_now_groups():
    """Rows of normal noise scaled by 1e20 made faiss abort the process (SIGABRT) on main."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run([sys.executable, "-c", _ONCE_ABORTED], capture_output=True, text=True,
                         env=env, timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, f"return code {res.returncode}: {res.stderr[-1500:]}"
    assert res.stdout.split() == ["(60,", "3)", "True", "True", "True", "True", "True"]
