"""TaskGrouper / group / TaskGroups: planted recovery, memberships, determinism, I/O, bad input."""

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from stgmtl.datamaps import DataMaps
from stgmtl.features import task_features
from stgmtl.grouping import TaskGrouper, TaskGroups, group
from stgmtl.grouping.kmeans import sq_distances
from stgmtl.grouping.membership import fuzzy_memberships


def planted(t=200, d=300, k=5, noise=1.0, seed=0):
    """Tasks drawn around k centres with unequal group sizes."""
    rng = np.random.default_rng(seed)
    sizes = rng.dirichlet(np.full(k, 2.0)) * (t - 2 * k)
    labels = np.repeat(np.arange(k), np.floor(sizes).astype(int) + 2)
    labels = np.concatenate([labels, np.zeros(t - labels.size, dtype=int)])
    centres = rng.normal(scale=1.0, size=(k, d))
    x = centres[labels] + noise * rng.normal(size=(t, d)) / np.sqrt(d) * 3
    return x.astype(np.float32), labels


def test_recovers_well_separated_planted_groups_at_1000_tasks():
    x, labels = planted(t=1000, d=400, k=10)
    g = group(x, 10, progress=False)
    assert g.reduction == "rpca"
    assert adjusted_rand_score(labels, g.labels) == 1.0


def test_taskgroups_contract():
    x, labels = planted()
    names = [f"t{i}" for i in range(len(x))]
    g = group(x, 5, task_names=names, progress=False)
    assert g.membership.dtype == np.float64 and g.membership.shape == (200, 5)
    np.testing.assert_allclose(g.membership.sum(axis=1), 1.0, rtol=1e-14)
    assert g.labels.dtype == np.int64
    np.testing.assert_array_equal(g.labels, g.membership.argmax(axis=1))
    assert sorted(sum(g.groups, [])) == sorted(names) and g.n_groups == 5
    assert all(names[i] in g.groups[g.labels[i]] for i in range(200))
    frame = g.to_frame()
    assert frame.columns == ["task", "label"] + [f"membership_{j}" for j in range(5)]
    assert frame["task"].to_list() == names


def test_memberships_are_the_fuzzy_rule_on_reduced_distances():
    x, _ = planted()
    est = TaskGrouper(5, m=1.3, refine=False, progress=False).fit(x)
    d = np.sqrt(sq_distances(est.embedding_, est.cluster_centers_))
    np.testing.assert_allclose(est.membership_, fuzzy_memberships(d, 1.3), rtol=1e-12)
    assert est.inertia_ == pytest.approx(float((d**2).min(axis=1).sum()))


def test_lossless_pca_gives_the_memberships_of_the_full_space():
    x, labels = planted(t=60, d=2000, k=4, noise=3.0)
    full = TaskGrouper(4, m=1.5, reduce="none", progress=False).fit(x)
    red = TaskGrouper(4, m=1.5, n_components=59, progress=False).fit(x)
    assert red.reduction_ == "pca" and full.reduction_ == "none"
    assert adjusted_rand_score(full.labels_, red.labels_) == 1.0
    perm = [
        int(np.argmax(np.bincount(red.labels_[full.labels_ == j], minlength=4))) for j in range(4)
    ]
    np.testing.assert_allclose(red.membership_[:, perm], full.membership_, atol=1e-4)


def test_same_random_state_is_bitwise_identical():
    x, _ = planted(t=300, d=400, noise=2.0)
    a = group(x, 7, random_state=3, progress=False)
    b = group(x, 7, random_state=3, progress=False)
    np.testing.assert_array_equal(a.membership, b.membership)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.embedding, b.embedding)


def test_fit_predict_matches_fit_and_sklearn_conventions():
    x, labels = planted()
    est = TaskGrouper(5, progress=False)
    pred = est.fit_predict(x)
    np.testing.assert_array_equal(pred, TaskGrouper(5, progress=False).fit(x).labels_)
    np.testing.assert_array_equal(pred, est.labels_)
    assert est.n_features_in_ == 300 and len(est.task_names_) == 200
    assert isinstance(est.groups_, TaskGroups) and est.n_iter_ >= 1
    assert clone(est).get_params()["n_groups"] == 5


def test_hard_and_fcm_methods():
    x, labels = planted(noise=2.0)
    hard = TaskGrouper(5, method="hard", progress=False).fit(x)
    assert set(np.unique(hard.membership_)) == {0.0, 1.0}
    np.testing.assert_array_equal(hard.membership_.sum(axis=1), 1.0)
    fcm = TaskGrouper(5, method="fcm", m=1.5, progress=False).fit(x)
    assert adjusted_rand_score(labels, fcm.labels_) == 1.0
    np.testing.assert_allclose(fcm.membership_.sum(axis=1), 1.0, rtol=1e-14)
    w = fcm.membership_**1.5
    x64 = fcm.embedding_.astype(np.float64)
    np.testing.assert_allclose(
        fcm.cluster_centers_, (w.T @ x64) / w.sum(axis=0)[:, None], rtol=1e-4, atol=1e-4
    )
    assert fcm.objective_ > 0


def test_group_of_datamaps_clusters_the_feature_stage_output():
    x, labels = planted(t=50, d=200, k=3)
    names = [f"class_{i}" for i in range(50)]
    conf = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))  # planted families in [0, 1]
    dm = DataMaps(names, np.arange(200), conf, np.zeros_like(conf), (conf > 0.5) * 1.0,
                  np.ones(conf.shape, np.int32), np.zeros(conf.shape, np.int32))  # fmt: skip
    g = group(dm, 3, feature_kwargs={"stats": ["confidence"]}, progress=False)
    ref = group(task_features(dm, stats=["confidence"]), 3, task_names=names, progress=False)
    assert g.task_names == names
    np.testing.assert_array_equal(g.membership, ref.membership)
    assert adjusted_rand_score(labels, g.labels) == 1.0
    with pytest.raises(ValueError, match="features: expected the default"):
        group(x, 3, features="confusion", progress=False)
    with pytest.raises(TypeError, match="X: expected"):
        TaskGrouper(3).fit(dm)


def test_torch_and_column_block_inputs():
    torch = pytest.importorskip("torch")
    x, labels = planted(t=300, d=1000)
    ref = group(x, 5, progress=False)
    np.testing.assert_array_equal(
        group(torch.from_numpy(x), 5, progress=False).membership, ref.membership
    )
    blocks = (x[:, c : c + 256] for c in range(0, 1000, 256))
    streamed = group(blocks, 5, progress=False)
    assert adjusted_rand_score(ref.labels, streamed.labels) == 1.0


def test_save_load_round_trip(tmp_path):
    x, _ = planted()
    g = group(x, 5, m=1.2, method="fcm", progress=False)
    path = g.save(tmp_path / "groups")
    back = TaskGroups.load(path)
    assert back.task_names == g.task_names and (back.m, back.method) == (1.2, "fcm")
    assert back.reduction == g.reduction and back.inertia == g.inertia
    np.testing.assert_array_equal(back.membership, g.membership)
    np.testing.assert_array_equal(back.centroids, g.centroids)
    np.testing.assert_array_equal(back.embedding, g.embedding)
    assert back.groups == g.groups
    assert back.to_frame().equals(g.to_frame())
    g2 = group(x, 3, progress=False)
    g2.save(path)  # replaces atomically
    assert TaskGroups.load(path).n_groups == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groups"]


def test_save_refuses_foreign_directory_and_load_reports_missing(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    g = TaskGroups(["a", "b"], np.array([[1.0, 0.0], [0.2, 0.8]]), np.zeros((2, 1)))
    with pytest.raises(FileExistsError, match="not a saved folder"):
        g.save(tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        TaskGroups.load(tmp_path / "nothing")
    no_emb = TaskGroups.load(g.save(tmp_path / "g"))
    assert no_emb.embedding is None and no_emb.groups == [["a"], ["b"]]
    assert isinstance(no_emb.to_frame(), pl.DataFrame)


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"k": 0}, "n_groups: expected an int >= 1, got 0"),
        ({"k": 2.5}, "n_groups: expected an int >= 1, got 2.5"),
        ({"k": 51}, "n_groups=51 exceeds the number of tasks T=50"),
        ({"m": 1.0}, "m: expected a finite number > 1.0, got 1.0"),
        ({"m": 0.5}, "m: expected a finite number > 1.0"),
        ({"method": "soft"}, "method: expected one of 'kmeans', 'fcm', 'hard', got 'soft'"),
        ({"random_state": -1}, "random_state: expected None, an int >= 0"),
        ({"n_init": 0}, "n_init: expected one of 'auto' or an int >= 1, got 0"),
        ({"device": "gpu"}, "device: expected one of 'cpu', 'cuda', 'auto', got 'gpu'"),
        ({"task_names": ["a", "b"]}, "task_names: expected 50 names"),
        ({"task_names": ["a"] * 50}, "task_names: expected unique names, got \"'a' more"),
    ],
)
def test_bad_arguments(kwargs, msg):
    x, _ = planted(t=50, d=20, k=3)
    kwargs = {"k": 3, **kwargs}
    with pytest.raises(ValueError, match=msg):
        group(x, progress=False, **kwargs)


@pytest.mark.parametrize(
    "x, k, msg",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), 2, "non-finite value \\(nan\\)"),
        (np.array([[1.0, np.inf], [0.0, 1.0], [2.0, 2.0]]), 2, "non-finite value \\(inf\\)"),
        (np.ones((10, 400)), 2, "identical features"),
        (np.ones((10, 4)), 2, "identical features"),
        (np.zeros((0, 4)), 1, "empty"),
        (np.zeros((4, 0)), 1, "got 0 feature\\(s\\)"),
        (np.ones((1, 4)), 1, "at least 2 tasks"),
        (np.array([[0.0, 1.0]] * 5 + [[1.0, 0.0]] * 5), 3, "only 2 distinct task feature vectors"),
    ],
)
def test_bad_features(x, k, msg):
    with pytest.raises(ValueError, match=msg):
        group(x, k, progress=False)


def test_grouping_never_imports_torch():
    code = (
        "import sys, numpy as np\n"
        "import stgmtl.grouping.grouper, stgmtl.grouping.choose_k, stgmtl.plots.groups\n"
        "from stgmtl.grouping import group\n"
        "group(np.random.default_rng(0).normal(size=(20, 5)), 2, progress=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_full_space_refinement_after_a_lossy_reduction():
    x, labels = planted(t=300, d=3000, k=5, noise=2.0)
    est = TaskGrouper(5, m=1.5, progress=False).fit(x)
    assert est.reduction_ == "rpca" and est.refined_ and est.groups_.refined
    x64 = x.astype(np.float64)
    cent = np.stack([x64[est.labels_ == j].mean(axis=0) for j in range(5)])
    d2 = sq_distances(x64, cent)
    np.testing.assert_array_equal(est.labels_, d2.argmin(axis=1))
    np.testing.assert_allclose(
        est.membership_, fuzzy_memberships(d2, 1.5, squared=True), rtol=1e-4, atol=1e-8
    )
    assert est.inertia_ == pytest.approx(d2.min(axis=1).sum(), rel=1e-4)
    emb64 = est.embedding_.astype(np.float64)
    np.testing.assert_allclose(
        est.cluster_centers_, np.stack([emb64[est.labels_ == j].mean(axis=0) for j in range(5)])
    )
    off = TaskGrouper(5, m=1.5, refine=False, progress=False).fit(x)
    assert not off.refined_
    blocks = [x[:, c : c + 1000] for c in range(0, 3000, 1000)]
    assert not TaskGrouper(5, progress=False).fit(iter(blocks)).refined_  # one pass only
    with pytest.raises(ValueError, match="one-shot iterator"):
        TaskGrouper(5, refine=True, reduce="projection", progress=False).fit(iter(blocks))
    with pytest.raises(ValueError, match="method='fcm'"):
        TaskGrouper(5, refine=True, method="fcm", progress=False).fit(x)
    lossless = TaskGrouper(5, n_components=99, progress=False).fit(x[:100])
    assert lossless.reduction_ == "pca" and not lossless.refined_


def test_groups_saved_by_version_1_still_load(tmp_path):
    """Folders written before checksums existed (format "stgmtl.TaskGroups/1") load."""
    x, _ = planted()
    g = group(x, 4, progress=False)
    old = tmp_path / "v1"
    old.mkdir()
    g.to_frame().write_parquet(old / "memberships.parquet")
    pl.DataFrame(
        {f"dim_{j}": g.centroids[:, j] for j in range(g.centroids.shape[1])}
    ).write_parquet(old / "centroids.parquet")
    meta = {"format": "stgmtl.TaskGroups/1", "k": 4, "num_tasks": 200, "m": g.m,
            "method": g.method, "inertia": g.inertia, "reduction": g.reduction,
            "refined": g.refined, "has_embedding": False}  # fmt: skip
    (old / "manifest.json").write_text(json.dumps(meta))
    back = TaskGroups.load(old)
    np.testing.assert_array_equal(back.membership, g.membership)
    assert back.groups == g.groups and back.embedding is None
    (old / "centroids.parquet").unlink()
    with pytest.raises(ValueError, match="missing centroids.parquet"):
        TaskGroups.load(old)


def test_device_cuda_without_gpu_faiss_says_what_to_install():
    import faiss

    if faiss.get_num_gpus() > 0:
        pytest.skip("faiss sees a GPU here (tests/test_gpu.py covers it)")
    x, truth = planted(t=60, d=20, k=3)
    with pytest.raises(ValueError, match=r"device: expected 'cpu' or 'auto' here: .*faiss-gpu"):
        group(x, 3, device="cuda", progress=False)
    auto = group(x, 3, device="auto", progress=False)  # falls back to the CPU
    np.testing.assert_array_equal(auto.labels, group(x, 3, device="cpu", progress=False).labels)


def test_sub_second_grouping_draws_no_progress_bar(monkeypatch, capsys):
    import stgmtl.grouping.grouper as grouper_module

    monkeypatch.setattr(grouper_module, "PROGRESS_MIN_VALUES", 0)  # bars on for any size
    x = np.random.default_rng(0).normal(size=(12, 4000)).astype(np.float32)
    group(x, 3, progress=True)
    err = capsys.readouterr().err
    assert "reduce" not in err and "refine" not in err and "%|" not in err, err


def test_round_one_spellings_warn_and_name_the_new_one():
    from stgmtl.affinity import TaskAffinity
    from stgmtl.grouping import choose_k

    rng = np.random.default_rng(0)
    v = rng.normal(size=(8, 8))
    aff = TaskAffinity(task_names=[f"t{i}" for i in range(8)], values=v + v.T, signal="x")
    new = group(aff, 2, features="affinity", progress=False)
    with pytest.warns(DeprecationWarning, match=r"use features='affinity'"):
        old = group(aff, 2, feature_kwargs={"kind": "affinity"}, progress=False)
    assert old.labels.tolist() == new.labels.tolist()
    with pytest.raises(ValueError, match=r"feature_kwargs: expected no 'kind' key"):
        group(aff, 2, features="affinity", feature_kwargs={"kind": "affinity"}, progress=False)
    res = choose_k(aff, ks=[2, 3])
    with pytest.warns(DeprecationWarning, match=r"use choose_k\(\.\.\.\)\.table"):
        assert res[0] is res.table
    with pytest.warns(DeprecationWarning, match=r"\.best_k"):
        assert res[1] == res.best_k
    table, best = res  # unpacking stays supported without a warning
    assert best == res.best_k
    with pytest.raises(TypeError, match=r"use \.table or \.best_k"):
        res[2]
