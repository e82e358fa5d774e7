"""Group plots return figures drawn from the groups alone; saving is one atomic helper."""

import numpy as np
import pytest

from stgmtl.grouping import TaskGroups, group
from stgmtl.plots import group_order, memberships_figure, save_figure, task_map_figure

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def groups():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 30)
    x = (rng.normal(scale=3, size=(3, 40))[labels] + rng.normal(size=(30, 40))).astype(np.float32)
    return group(x, 3, m=1.5, progress=False)


def test_group_order_sorts_by_group_then_membership(groups):
    order = group_order(groups)
    lab = groups.labels[order]
    assert (np.diff(lab) >= 0).all()
    own = groups.membership[order, lab]
    for j in range(3):
        assert (np.diff(own[lab == j]) <= 0).all()


def test_figures_draw_what_the_groups_hold(groups, tmp_path):
    heat = memberships_figure(groups, title="hi")
    image = heat.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(image), groups.membership[group_order(groups)])
    assert heat.axes[0].get_title() == "hi"
    tmap = task_map_figure(groups, annotate=False)
    points = np.concatenate([c.get_offsets() for c in tmap.axes[0].collections[:3]])
    assert points.shape == (30, 2)  # every task once, in the stored embedding's 2-D PCA
    paths = [save_figure(heat, tmp_path / "m.png"), save_figure(tmap, tmp_path / "sub" / "t.png")]
    for p in paths:
        assert p.read_bytes()[:4] == PNG
    assert sorted(q.name for q in tmp_path.iterdir()) == ["m.png", "sub"]  # no temp files


def test_without_embedding_and_with_many_tasks(tmp_path):
    rng = np.random.default_rng(1)
    u = rng.dirichlet(np.ones(4), size=300)
    g = TaskGroups([f"t{i}" for i in range(300)], u, np.zeros((4, 2)))
    assert save_figure(task_map_figure(g), tmp_path / "t.png").read_bytes()[:4] == PNG
    svg = save_figure(memberships_figure(g), tmp_path / "m.svg")
    assert svg.read_text().lstrip().startswith("<?xml")
