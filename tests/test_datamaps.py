"""DataMaps: features, save/load round trip and errors, Cartography I/O, plot."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from stgmtl.datamaps import DataMaps
from stgmtl.features import FEATURE_KINDS, FeatureKind, register_feature_kind, task_features
from stgmtl.plots import datamap_figure, save_figure
from stgmtl.record import DataMapRecorder

_ALL = ("sample_ids", "confidence", "variability", "correctness", "count", "targets",
        "snapshot_confidence", "snapshot_variability", "snapshot_correctness")  # fmt: skip


def _maps(kind="cumulative", task_type="binary", t=4, n=12, seed=0, snaps=(1, 2, 3)):
    g = torch.Generator().manual_seed(seed)
    rec = DataMapRecorder(t, n, task_type=task_type, snapshot_epochs=snaps, snapshot_kind=kind)
    c = 3 if task_type == "multiclass" else 2
    for _ in range(3):
        order = torch.randperm(n, generator=g)
        for b in range(0, n - 1, 5):  # the last sample is never seen: NaN entries
            i = order[b : b + 5]
            i = i[i != n - 1]
            shape = (len(i), t) if task_type == "binary" else (len(i), t, c)
            z = torch.randn(shape, generator=g, dtype=torch.float64)
            y = (i[:, None] * (torch.arange(t) + 1)) % c
            rec.update(z, y, i)
        rec.end_epoch()
    return rec.compute()


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).tobytes(), a.dtype, a.shape


def test_save_load_round_trip_is_bitwise(tmp_path):
    dm = _maps(task_type="multiclass")
    assert np.isnan(dm.confidence).any()
    out = dm.save(tmp_path / "maps")
    back = DataMaps.load(out)
    for name in _ALL:
        assert _bits(getattr(back, name)) == _bits(getattr(dm, name)), name
    for name in ("task_names", "snapshot_epochs", "snapshot_kind", "ddof", "task_type",
                 "recording", "epochs", "num_classes"):  # fmt: skip
        assert getattr(back, name) == getattr(dm, name), name
    dm.save(out)  # overwrite an earlier data map in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps"]  # no temp dirs left
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_tasks"] == 4 and manifest["snapshot_epochs"] == [1, 2, 3]
    assert "stgmtl_version" in manifest


def test_load_errors(tmp_path):
    dm = _maps()
    out = dm.save(tmp_path / "maps")
    with pytest.raises(FileNotFoundError, match="manifest"):
        DataMaps.load(tmp_path / "nothing")
    raw = bytearray((out / "final.parquet").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (out / "final.parquet").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        DataMaps.load(out)
    out = dm.save(tmp_path / "maps2")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["num_samples"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="edited"):  # the manifest's own checksum
        DataMaps.load(out)
    del manifest["manifest_sha256"]
    manifest["format_version"] = 1  # an older, unsigned format: the tables are checked
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="rows"):
        DataMaps.load(out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        DataMaps.load(out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        dm.save(tmp_path / "other")


def test_constructor_checks_shapes():
    dm = _maps()
    with pytest.raises(ValueError, match="confidence: expected shape"):
        DataMaps(dm.task_names, dm.sample_ids, dm.confidence[:, :3], dm.variability,
                 dm.correctness, dm.count, dm.targets)  # fmt: skip


def test_default_features_follow_stg_mtl_layout():
    dm = _maps()
    f = task_features(dm)
    t, n, s = dm.num_tasks, dm.num_samples, len(dm.snapshot_epochs)
    # STG-MTL: data map (T, epochs, N, 2 = [confidence, std]) reshaped to (T, -1)
    ref = np.stack([dm.snapshot_confidence, dm.snapshot_variability], axis=-1)
    ref = np.nan_to_num(ref.transpose(1, 0, 2, 3).reshape(t, -1).astype(np.float32))
    assert f.dtype == np.float32 and f.shape == (t, s * n * 2) and f.flags.c_contiguous
    np.testing.assert_array_equal(f, ref)


def test_feature_options():
    dm = _maps()
    f = task_features(dm, snapshots="final", stats=["correctness"], samples=[3, 1], nan_fill=-1.0)
    np.testing.assert_array_equal(f, dm.correctness[:, [3, 1]].astype(np.float32))
    f = task_features(dm, snapshots=[2, "final"], stats=["confidence"])
    np.testing.assert_array_equal(
        f[:, : dm.num_samples], np.nan_to_num(dm.snapshot_confidence[1]).astype(np.float32)
    )
    z = task_features(dm, standardize=True)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    spread = task_features(dm).std(axis=0) > 0
    np.testing.assert_allclose(z.std(axis=0)[spread], 1, atol=1e-4)
    bare = DataMaps(dm.task_names, dm.sample_ids, dm.confidence, dm.variability,
                    dm.correctness, dm.count, dm.targets)  # fmt: skip
    pairs = np.stack([dm.confidence, dm.variability], axis=-1).reshape(dm.num_tasks, -1)
    np.testing.assert_array_equal(task_features(bare), np.nan_to_num(pairs).astype(np.float32))
    with pytest.raises(ValueError, match="kind"):
        task_features(dm, "nope")
    with pytest.raises(ValueError, match="snapshot"):
        task_features(dm, snapshots=[9])
    with pytest.raises(ValueError, match="samples"):
        task_features(dm, samples=[99])
    with pytest.raises(ValueError, match="stats"):
        task_features(dm, stats=["mean"])
    with pytest.raises(TypeError, match="data: expected a DataMaps"):
        task_features(dm.confidence)


def test_registering_a_feature_kind():
    dm = _maps()
    kind = FeatureKind("_test_counts", lambda d: d.count.astype(np.float32), DataMaps, False, "")
    register_feature_kind(kind)
    try:
        np.testing.assert_array_equal(task_features(dm, "_test_counts"), dm.count)
        with pytest.raises(ValueError, match="not yet registered"):
            register_feature_kind(kind)
    finally:
        FEATURE_KINDS.pop("_test_counts")
    assert "_test_counts" not in FEATURE_KINDS


@pytest.mark.parametrize("task_type", ["binary", "multiclass"])
def test_cartography_round_trip(tmp_path, task_type):
    dm = _maps(kind="epoch", task_type=task_type)
    root = dm.to_cartography(tmp_path / "carto")
    files = sorted(p.name for p in (root / "task_0" / "training_dynamics").iterdir())
    assert files == [f"dynamics_epoch_{e}.jsonl" for e in range(3)]
    line = json.loads(
        (root / "task_0" / "training_dynamics" / files[0]).read_text().splitlines()[0]
    )
    assert set(line) == {"guid", "logits_epoch_0", "gold"}
    back = DataMaps.from_cartography(root)
    seen = dm.count[0] > 0
    assert back.sample_ids.tolist() == dm.sample_ids[seen].tolist()
    assert back.task_type == task_type and back.snapshot_epochs == [1, 2, 3]
    np.testing.assert_allclose(back.confidence, dm.confidence[:, seen], atol=1e-12, rtol=0)
    np.testing.assert_allclose(back.variability, dm.variability[:, seen], atol=1e-7, rtol=0)
    np.testing.assert_array_equal(back.targets, dm.targets[:, seen])
    if task_type == "binary":  # one observation per epoch: argmax of written logits is exact
        np.testing.assert_array_equal(back.correctness, dm.correctness[:, seen])
    with pytest.raises(ValueError, match="per-epoch snapshots"):
        _maps().to_cartography(tmp_path / "x")


def test_cartography_import_matches_numpy(tmp_path):
    folder = tmp_path / "model" / "training_dynamics"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 3))  # epochs, examples, classes
    gold = np.array([0, 2, 1, 1, 0])
    for e in range(3):
        rows = [{"guid": 10 + k, f"logits_epoch_{e}": logits[e, k].tolist(), "gold": int(gold[k])}
                for k in range(5)]  # fmt: skip
        pl.DataFrame(rows).write_ndjson(folder / f"dynamics_epoch_{e}.jsonl")
    dm = DataMaps.from_cartography(tmp_path / "model")
    p = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    true = p[:, np.arange(5), gold]
    np.testing.assert_allclose(dm.confidence[0], true.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(dm.variability[0], true.std(axis=0), atol=1e-12)
    np.testing.assert_allclose(dm.correctness[0], (logits.argmax(2) == gold).mean(axis=0))
    assert dm.sample_ids.tolist() == [10, 11, 12, 13, 14] and dm.num_classes == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="expected a folder with dynamics_epoch"):
        DataMaps.from_cartography(tmp_path / "empty")


def test_plot_draws_each_task_and_saves_a_png(tmp_path):
    dm = _maps(t=5)
    fig = datamap_figure(dm, ncols=3)
    assert len([a for a in fig.axes if a.get_visible()]) == 5 + 1  # panels + colour bar
    out = save_figure(fig, tmp_path / "plots" / "maps.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["maps.png"]  # no temp file left
    fig = datamap_figure(dm, tasks="task_2", snapshot=2, max_points=5)
    assert fig.axes[0].get_title() == "task_2"
    # 5 of the 12 samples drawn; the one never observed (NaN) is left out if drawn
    assert len(fig.axes[0].collections[0].get_offsets()) in (4, 5)
    with pytest.raises(ValueError, match="tasks"):
        datamap_figure(dm, tasks=["zzz"])
