"""Group plots are written (PNG), rows are ordered by group, and every input route works."""

import numpy as np
import pytest

from stgmtl.grouping.grouper import TaskGroups, group
from stgmtl.plots.groups import group_order, plot_memberships, plot_task_map

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def groups():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 30)
    x = (rng.normal(scale=3, size=(3, 40))[labels] + rng.normal(size=(30, 40))).astype(np.float32)
    return group(x, 3, m=1.5, progress=False), x


def test_group_order_sorts_by_group_then_membership(groups):
    g, _ = groups
    order = group_order(g)
    lab = g.labels[order]
    assert (np.diff(lab) >= 0).all()
    own = g.membership[order, lab]
    for j in range(3):
        assert (np.diff(own[lab == j]) <= 0).all()


def test_plots_write_png_files(groups, tmp_path):
    g, x = groups
    paths = [
        plot_memberships(g, tmp_path / "m.png"),
        plot_task_map(g, tmp_path / "t.png"),
        plot_task_map(g, tmp_path / "sub" / "f.png", features=x),
        g.plot_memberships(tmp_path / "m2.png", title="hi"),
        g.plot_task_map(tmp_path / "t2.png", annotate=False),
    ]
    for p in paths:
        assert p.read_bytes()[:4] == PNG
    assert sorted(q.name for q in tmp_path.iterdir()) == [
        "m.png",
        "m2.png",
        "sub",
        "t.png",
        "t2.png",
    ]


def test_without_embedding_and_with_many_tasks(tmp_path):
    rng = np.random.default_rng(1)
    u = rng.dirichlet(np.ones(4), size=300)
    g = TaskGroups([f"t{i}" for i in range(300)], u, np.zeros((4, 2)))
    assert plot_task_map(g, tmp_path / "t.png").read_bytes()[:4] == PNG
    assert plot_memberships(g, tmp_path / "m.svg").read_text().lstrip().startswith("<?xml")


def test_features_with_wrong_rows_are_rejected(groups, tmp_path):
    g, x = groups
    with pytest.raises(ValueError, match="features has 29 rows; groups has 30 tasks"):
        plot_task_map(g, tmp_path / "t.png", features=x[:-1])
