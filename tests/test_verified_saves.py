"""Every saved object is verified on load, and every manifest field is validated.

Saved objects: ``DataMaps`` and ``TaskGroups`` folders, training-loop checkpoints, and the
evaluation (study) tables the command line reads. Damage of any kind (a truncated file, an
emptied file, one flipped bit anywhere, a hand-edited manifest) must raise a ``ValueError`` that
names the damaged file; nothing is ever loaded silently with other values.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import stgmtl
from stgmtl import DataMapRecorder, DataMaps, TaskGroups
from stgmtl.affinity import TaskAffinity
from stgmtl.cli import main as cli_main
from stgmtl.loop import read_checkpoint, train_loop

FIELDS = ("task_names", "snapshot_epochs", "snapshot_kind", "ddof", "task_type", "recording",
          "epochs", "num_classes")  # fmt: skip


def _maps() -> DataMaps:
    g = torch.Generator().manual_seed(0)
    rec = DataMapRecorder(3, 8, snapshot_epochs=[1, 2])
    for _ in range(2):
        for b in (0, 4):
            i = torch.arange(b, b + 4)
            rec.update(torch.randn(4, 3, generator=g), (torch.rand(4, 3, generator=g) > 0.5), i)
        rec.end_epoch()
    return rec.compute()


def _groups() -> TaskGroups:
    x = np.random.default_rng(0).standard_normal((5, 4))
    return stgmtl.group(x, 2, progress=False)


def _same_maps(a: DataMaps, b: DataMaps) -> bool:
    arrays = ("sample_ids", "confidence", "variability", "correctness", "count", "targets",
              "snapshot_confidence", "snapshot_variability", "snapshot_correctness")  # fmt: skip
    return all(
        np.array_equal(getattr(a, n), getattr(b, n), equal_nan=True) for n in arrays
    ) and all(getattr(a, n) == getattr(b, n) for n in FIELDS)


def _damage(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "truncate":
        raw = raw[: len(raw) // 2]
    elif how == "empty":
        raw = bytearray()
    else:  # flip one bit in the middle
        raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def _affinity() -> TaskAffinity:
    rng = np.random.default_rng(0)
    return TaskAffinity(["a", "b", "c"], rng.normal(size=(3, 3)), "tag",
                        counts=rng.integers(0, 9, size=(3, 3)), snapshot_epochs=[1, 2],
                        snapshots=rng.normal(size=(2, 3, 3)), meta={"lr": 0.001})  # fmt: skip


SAVED = {
    "DataMaps": (_maps, DataMaps),
    "TaskGroups": (_groups, TaskGroups),
    "TaskAffinity": (_affinity, TaskAffinity),
}


@pytest.mark.parametrize("kind", sorted(SAVED))
@pytest.mark.parametrize("how", ["truncate", "empty", "flip"])
def test_every_file_of_a_saved_folder_is_verified(tmp_path, kind, how):
    make, cls = SAVED[kind]
    good = make().save(tmp_path / "good")
    names = sorted(p.name for p in good.iterdir())
    assert "manifest.json" in names and len(names) >= 3
    for name in names:
        bad = tmp_path / f"bad_{name}"
        shutil.copytree(good, bad)
        _damage(bad / name, how)
        with pytest.raises(ValueError) as info:
            cls.load(bad)
        assert str(bad / name) in str(info.value), (name, str(info.value))
    cls.load(good)  # the undamaged copy still loads


@pytest.mark.parametrize("kind", sorted(SAVED))
def test_one_flipped_bit_anywhere_in_a_manifest_is_refused(tmp_path, kind):
    """Each byte of the manifest in turn: a JSON-valid flip (a digit, a letter of a name) too."""
    make, cls = SAVED[kind]
    good = make().save(tmp_path / "good")
    raw = (good / "manifest.json").read_bytes()
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    step = max(1, len(raw) // 400)  # about 400 positions, every byte of small manifests
    for pos in range(0, len(raw), step):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x01
        (bad / "manifest.json").write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match="manifest.json"):
            cls.load(bad)


def test_edited_manifest_is_refused_and_removing_the_checksums_does_not_help(tmp_path):
    dm = _maps()
    out = dm.save(tmp_path / "maps")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 3 and len(manifest["manifest_sha256"]) == 64
    for edit in ({"epochs": 3}, {"task_names": ["a", "b", "c"]}):
        (out / "manifest.json").write_text(json.dumps({**manifest, **edit}))
        with pytest.raises(ValueError, match="edited"):
            DataMaps.load(out)
    unsigned = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    (out / "manifest.json").write_text(json.dumps(unsigned))
    with pytest.raises(ValueError, match="has no manifest_sha256"):
        DataMaps.load(out)
    # an older (version 1) manifest has no checksum of its own, but its tables still have one
    (out / "manifest.json").write_text(json.dumps({**unsigned, "format_version": 1}))
    assert _same_maps(DataMaps.load(out), dm)
    (out / "manifest.json").write_text(json.dumps({**unsigned, "format_version": 1, "sha256": {}}))
    with pytest.raises(ValueError, match="no sha256 for 'final.parquet'"):
        DataMaps.load(out)


# ----------------------------------------------------------------- manifest fields (kind 3)
def _rewrite(folder: Path, old_version: int, **changes) -> None:
    """Edit a manifest as an older, unsigned format version (its fields are what is tested)."""
    m = json.loads((folder / "manifest.json").read_text())
    m.pop("manifest_sha256")
    m["format_version"] = old_version
    m.update(changes)
    (folder / "manifest.json").write_text(json.dumps(m))


DATAMAPS_BAD = [
    ("ddof", 7, "ddof: expected one of 0, 1, got 7"),
    ("ddof", True, "ddof: expected one of 0, 1, got True"),
    ("ddof", "0", "ddof: expected one of 0, 1, got '0'"),
    ("snapshot_kind", "weekly", "snapshot_kind: expected one of 'cumulative', 'epoch'"),
    ("epochs", -1, "epochs: expected an int >= 0, got -1"),
    ("epochs", 2.5, "epochs: expected an int >= 0, got 2.5"),
    ("epochs", "2", "epochs: expected an int >= 0, got '2'"),
    ("task_type", "regression", "task_type: expected one of 'binary', 'multiclass'"),
    ("recording", "live", "recording: expected one of 'train', 'eval'"),
    ("num_classes", 3, "num_classes: expected None for binary tasks, got 3"),
    ("snapshot_epochs", [1.5, 2], "snapshot_epochs: expected a sequence of ints"),
    ("snapshot_epochs", ["1", "2"], "snapshot_epochs: expected a sequence of ints"),
    ("snapshot_epochs", [2, 1], "epochs do not match the manifest"),
    ("task_names", [1, 2, 3], "task_names: expected a list of strings"),
    ("task_names", ["a", "a", "b"], "task_names: expected unique names"),
    ("num_tasks", "3", "num_tasks: expected an int >= 0, got '3'"),
    ("num_samples", 8.0, "num_samples: expected an int >= 0, got 8.0"),
    ("dtypes", {"stats": "int8", "count": "int32", "targets": "int8"}, "dtypes.stats"),
    ("dtypes", None, "dtypes: expected an object"),
    ("files", {"final": "../final.parquet"}, "outside the folder"),
]


@pytest.mark.parametrize(("key", "value", "message"), DATAMAPS_BAD)
def test_datamaps_manifest_fields_are_validated(tmp_path, key, value, message):
    out = _maps().save(tmp_path / "maps")
    _rewrite(out, 1, **{key: value})
    with pytest.raises(ValueError, match="manifest.json|parquet") as info:
        DataMaps.load(out)
    assert message in str(info.value)


GROUPS_BAD = [
    ("m", 0.5, "m: expected a finite number > 1.0, got 0.5"),
    ("m", "1.07", "m: expected a finite number > 1.0, got '1.07'"),
    ("m", True, "m: expected a finite number > 1.0, got True"),
    ("method", "spectral", "method: expected one of 'kmeans', 'fcm', 'hard'"),
    ("inertia", -3.0, "inertia: expected a finite number >= 0.0, got -3.0"),
    ("inertia", "low", "inertia: expected a finite number >= 0.0, got 'low'"),
    ("reduction", "tsne", "reduction: expected one of 'none', 'pca', 'rpca', 'projection'"),
    ("refined", "no", "refined: expected True or False, got 'no'"),
    ("refined", 1, "refined: expected True or False, got 1"),
    ("has_embedding", "false", "has_embedding: expected True or False"),
    ("n_groups", "2", "n_groups: expected an int >= 1, got '2'"),
    ("n_groups", 2.5, "n_groups: expected an int >= 1, got 2.5"),
    ("n_groups", 1, "does not hold 5 tasks x 1 memberships"),
    ("num_tasks", 6, "does not hold 6 tasks x 2 memberships"),
]


@pytest.mark.parametrize(("key", "value", "message"), GROUPS_BAD)
def test_taskgroups_manifest_fields_are_validated(tmp_path, key, value, message):
    out = _groups().save(tmp_path / "groups")
    _rewrite(out, 2, **{key: value})
    with pytest.raises(ValueError, match="manifest.json|parquet") as info:
        TaskGroups.load(out)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [("m", 1.0, ValueError), ("method", "spectral", ValueError), ("inertia", -1.0, ValueError),
     ("reduction", "umap", ValueError), ("refined", "yes", TypeError)],
)  # fmt: skip
def test_taskgroups_constructor_validates_its_fields(field, value, error):
    g = _groups()
    kwargs = {"task_names": g.task_names, "membership": g.membership, "centroids": g.centroids,
              field: value}  # fmt: skip
    with pytest.raises(error, match=f"^{field}: expected"):
        TaskGroups(**kwargs)


def test_datamaps_constructor_refuses_non_integer_snapshot_epochs():
    dm = _maps()
    fields = dm.fields()
    with pytest.raises(TypeError, match="snapshot_epochs: expected a sequence of ints"):
        DataMaps(**{**fields, "snapshot_epochs": [1.0, 2.7]})


# ------------------------------------------------------------------- checkpoints, tables
@pytest.mark.parametrize("how", ["truncate", "empty", "flip"])
def test_damaged_checkpoint_is_refused_when_resuming(tmp_path, how):
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), (torch.rand(8, 2) > 0.5).float()
    loader = [(x, y, torch.arange(8))]
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = tmp_path / "run.ckpt"
    train_loop(model, loader, epochs=1, optimizer=opt, checkpoint_path=ckpt, progress=False)
    assert read_checkpoint(ckpt)["epoch"] == 1
    _damage(ckpt, how)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=str(ckpt)):
        train_loop(model, loader, epochs=2, optimizer=opt, checkpoint_path=ckpt, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_damaged_evaluation_table_is_a_one_line_error(tmp_path, capsys):
    dm = _maps()
    maps = dm.save(tmp_path / "maps")
    table = tmp_path / "evaluation.parquet"
    import polars as pl

    pl.DataFrame(
        {"method": ["grouped"], "seed": [0], "task": ["task_0"], "f1": [0.5]}
    ).write_parquet(table)
    _damage(table, "truncate")
    code = cli_main(["report", str(maps), "--evaluation", str(table), "-o",
                     str(tmp_path / "r.html")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "cannot read" in err and str(table) in err


AFFINITY_BAD = [
    ("num_tasks", "3", "num_tasks: expected an int >= 1, got '3'"),
    ("task_names", [1, 2, 3], "task_names: expected a list of strings"),
    ("snapshot_epochs", [1.0, 2.0], "snapshot_epochs: expected a list of ints"),
    ("has_counts", "yes", "has_counts: expected True or False"),
    ("orientation", "sideways", "orientation: expected one of"),
    ("signal", 5, "signal: expected a non-empty name"),
    ("meta", [], "meta: expected a dict"),
]


@pytest.mark.parametrize(("key", "value", "message"), AFFINITY_BAD)
def test_affinity_manifest_fields_are_validated(tmp_path, key, value, message):
    out = _affinity().save(tmp_path / "aff")
    _rewrite(out, 1, **{key: value})
    with pytest.raises(ValueError, match="manifest.json") as info:
        TaskAffinity.load(out)
    assert message in str(info.value)
