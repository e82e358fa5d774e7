"""TaskAffinity: validation, the one orientation convention, bitwise save/load, damaged files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stgmtl.affinity import TaskAffinity


def _aff(t=4, snaps=(1, 2), counts=True, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(t, t))
    v[0, 1] = np.nan  # never observed
    return TaskAffinity(
        [f"task{i}" for i in range(t)],
        v,
        "tag",
        counts=rng.integers(0, 9, size=(t, t)) if counts else None,
        snapshot_epochs=list(snaps),
        snapshots=rng.normal(size=(len(snaps), t, t)),
        meta={"lr": 1e-3, "every": 5},
    )


def test_round_trip_is_bitwise(tmp_path):
    a = _aff()
    back = TaskAffinity.load(a.save(tmp_path / "aff"))
    for name in ("values", "counts", "snapshots"):
        got, want = getattr(back, name), getattr(a, name)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), name
    for name in ("task_names", "signal", "orientation", "snapshot_epochs", "meta"):
        assert getattr(back, name) == getattr(a, name)
    bare = TaskAffinity.load(_aff(counts=False, snaps=()).save(tmp_path / "bare"))
    assert bare.counts is None and bare.snapshots.shape == (0, 4, 4)
    a.save(tmp_path / "aff")  # replaces a saved affinity in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aff", "bare"]


def test_damaged_files_name_the_file(tmp_path):
    out = _aff().save(tmp_path / "aff")
    raw = bytearray((out / "values.parquet").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (out / "values.parquet").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="values.parquet is corrupt"):
        TaskAffinity.load(out)
    out = _aff().save(tmp_path / "aff2")
    m = json.loads((out / "manifest.json").read_text())
    m["orientation"] = "sideways"
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="edited"):  # the manifest's own checksum
        TaskAffinity.load(out)
    del m["manifest_sha256"]
    m["format_version"] = 1  # an older, unsigned manifest: its fields are validated
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="orientation: expected one of"):
        TaskAffinity.load(out)
    (out / "manifest.json").write_text('{"format": "stgmtl.affin')
    with pytest.raises(ValueError, match="not valid JSON"):
        TaskAffinity.load(out)


def test_convention_helpers_match_loops():
    a = _aff(t=5)
    sym = a.symmetric()
    v = a.values
    for i in range(5):
        for j in range(5):
            x, y = v[i, j], v[j, i]
            want = (
                (x + y) / 2 if np.isfinite(x) and np.isfinite(y) else (x if np.isfinite(x) else y)
            )
            assert sym[i, j] == pytest.approx(want)
    best = a.best_partners()
    for j in range(5):
        col = [(v[i, j], i) for i in range(5) if i != j and np.isfinite(v[i, j])]
        assert best[j] == a.task_names[max(col)[1]]
    frame = a.to_frame()
    assert frame.height == 25 and frame.filter(frame["source"] == "task2")["value"].to_list() == [
        pytest.approx(x, nan_ok=True) for x in v[2]
    ]


@pytest.mark.parametrize(
    "kwargs, error, msg",
    [
        ({"values": np.zeros((3, 4))}, ValueError, "values: expected a square"),
        ({"values": np.full((4, 4), np.inf)}, ValueError, "values: expected finite"),
        ({"task_names": ["a"] * 4}, ValueError, "task_names: expected unique"),
        ({"orientation": "symmetric"}, ValueError, "symmetric matrix"),
        ({"counts": -np.ones((4, 4), int)}, ValueError, "counts: expected non-negative"),
        ({"snapshot_epochs": [2, 1]}, ValueError, "snapshot_epochs: expected increasing"),
        ({"snapshots": np.zeros((1, 4, 4))}, ValueError, "snapshots: expected shape \\(2, 4, 4\\)"),
        ({"signal": ""}, ValueError, "signal: expected a non-empty name"),
        ({"signal": 3}, TypeError, "signal: expected a non-empty name"),
    ],
)
def test_bad_fields_are_rejected(kwargs, error, msg):
    base = _aff().fields()
    base.update(kwargs)
    with pytest.raises(error, match=msg):
        TaskAffinity(**base)
