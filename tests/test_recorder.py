"""DataMapRecorder against a plain numpy reference; bad input; snapshots; resume."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from stgmtl.record import DataMapRecorder, distributed_valid_mask
from stgmtl.record.compact import BOUND, BOUND_DDOF1

_ALL = ("sample_ids", "confidence", "variability", "correctness", "count", "targets",
        "snapshot_confidence", "snapshot_variability", "snapshot_correctness")  # fmt: skip


def _stream(rng, *, epochs, batches, b, t, n, c, masked):
    """Random batches with duplicate indices (sampled with replacement) and optional masks."""
    out = []
    for _ in range(epochs):
        ep = []
        for _ in range(batches):
            shape = (b, t) if c is None else (b, t, c)
            z = torch.from_numpy(rng.normal(0, 2, size=shape))
            y = torch.from_numpy(rng.integers(0, 2 if c is None else c, size=(b, t)))
            i = torch.from_numpy(rng.integers(0, n, size=b))
            m = torch.from_numpy(rng.random((b, t)) > 0.25) if masked else None
            ep.append((z, y, i, m))
        out.append(ep)
    return out


def _true_prob(z, y, c):
    z, y = z.numpy().astype(np.float64), y.numpy()
    if c is None:
        s = 1.0 / (1.0 + np.exp(-z))
        return np.where(y == 1, s, 1.0 - s), (s > 0.5) == (y == 1)
    e = np.exp(z - z.max(axis=2, keepdims=True))
    p = e / e.sum(axis=2, keepdims=True)
    py = np.take_along_axis(p, y[..., None], axis=2)[..., 0]
    return py, z.argmax(axis=2) == y


def _reference(epochs, t, n, c, ddof):
    """Plain numpy: lists of observations per (task, sample), then mean / std / mean."""
    obs = [[[] for _ in range(n)] for _ in range(t)]
    right = [[[] for _ in range(n)] for _ in range(t)]
    for ep in epochs:
        for z, y, i, m in ep:
            p, ok = _true_prob(z, y, c)
            for r, s in enumerate(i.tolist()):
                for k in range(t):
                    if m is None or bool(m[r, k]):
                        obs[k][s].append(p[r, k])
                        right[k][s].append(float(ok[r, k]))
    conf = np.full((t, n), np.nan)
    var = np.full((t, n), np.nan)
    corr = np.full((t, n), np.nan)
    cnt = np.zeros((t, n), dtype=np.int64)
    for k in range(t):
        for s in range(n):
            v = np.asarray(obs[k][s])
            cnt[k, s] = len(v)
            if len(v):
                conf[k, s] = v.mean()
                var[k, s] = 0.0 if len(v) <= ddof else v.std(ddof=ddof)
                corr[k, s] = np.mean(right[k][s])
    return conf, var, corr, cnt


def _record(rec, epochs):
    for ep in epochs:
        for z, y, i, m in ep:
            rec.update(z, y, i, mask=m)
        rec.end_epoch()
    return rec


def _tol(layout, ddof=0):
    """(confidence, variability) tolerance of a layout against the float64 numpy reference."""
    if layout == "float64":
        return 1e-12, 1e-7
    return BOUND, BOUND_DDOF1 if ddof else BOUND


def _assert_maps(dm, ref, atol=1e-12, vtol=1e-7):
    conf, var, corr, cnt = ref
    np.testing.assert_array_equal(dm.count, cnt)
    np.testing.assert_allclose(dm.confidence, conf, rtol=0, atol=atol)
    np.testing.assert_allclose(dm.variability, var, rtol=0, atol=max(atol, vtol))
    np.testing.assert_allclose(dm.correctness, corr, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layout", ["compact", "float64"])
@pytest.mark.parametrize("c", [None, 4])
@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("masked", [False, True])
def test_statistics_match_numpy_reference(c, ddof, masked, layout):
    rng = np.random.default_rng(7 + ddof + (c or 0) + masked)
    t, n = 5, 12
    epochs = _stream(rng, epochs=3, batches=4, b=9, t=t, n=n, c=c, masked=masked)
    task_type = "binary" if c is None else "multiclass"
    rec = DataMapRecorder(t, n, task_type=task_type, ddof=ddof, layout=layout)
    dm = _record(rec, epochs).compute()
    _assert_maps(dm, _reference(epochs, t, n, c, ddof), *_tol(layout, ddof))
    assert dm.confidence.shape == (t, n) and dm.task_type == task_type and dm.ddof == ddof
    assert np.isnan(dm.confidence[dm.count == 0]).all()


@pytest.mark.parametrize("layout", ["compact", "float64"])
@pytest.mark.parametrize("kind", ["cumulative", "epoch"])
def test_snapshots_match_reference(kind, layout):
    rng = np.random.default_rng(3)
    t, n = 3, 10
    epochs = _stream(rng, epochs=4, batches=3, b=8, t=t, n=n, c=None, masked=True)
    rec = DataMapRecorder(t, n, snapshot_epochs=[2, 4], snapshot_kind=kind, layout=layout)
    dm = _record(rec, epochs).compute()
    assert dm.snapshot_epochs == [2, 4] and dm.snapshot_confidence.shape == (2, t, n)
    ctol, vtol = _tol(layout)
    for s, e in enumerate([2, 4]):
        part = epochs[:e] if kind == "cumulative" else epochs[e - 1 : e]
        conf, var, corr, _ = _reference(part, t, n, None, 0)
        np.testing.assert_allclose(dm.snapshot_confidence[s], conf, atol=ctol, rtol=0)
        np.testing.assert_allclose(dm.snapshot_variability[s], var, atol=vtol, rtol=0)
        np.testing.assert_allclose(dm.snapshot_correctness[s], corr, atol=1e-12, rtol=0)
    _assert_maps(dm, _reference(epochs, t, n, None, 0), ctol, vtol)


@pytest.mark.parametrize("layout", ["compact", "float64"])
def test_float32_logits_and_bool_targets(layout):
    rng = np.random.default_rng(1)
    epochs = _stream(rng, epochs=2, batches=3, b=6, t=4, n=8, c=None, masked=False)
    rec = DataMapRecorder(4, 8, layout=layout)
    for ep in epochs:
        for z, y, i, _ in ep:
            rec.update(z.float(), y.bool(), i.int())
        rec.end_epoch()
    tol = 1e-6 if layout == "float64" else BOUND
    _assert_maps(rec.compute(), _reference(epochs, 4, 8, None, 0), tol, tol)


@pytest.mark.parametrize("layout", ["compact", "float64"])
def test_duplicates_within_a_batch_each_count_and_single_observation(layout):
    rec = DataMapRecorder(1, 3, ddof=1, layout=layout)
    z = torch.tensor([[0.0], [2.0], [1.0]], dtype=torch.float64)
    rec.update(z, torch.tensor([[1], [1], [0]]), torch.tensor([0, 0, 1]))
    dm = rec.compute()
    p = 1 / (1 + np.exp(-np.array([0.0, 2.0])))
    ctol, vtol = (1e-15, 1e-8) if layout == "float64" else (BOUND, BOUND_DDOF1)
    assert dm.count.tolist() == [[2, 1, 0]]
    assert dm.confidence[0, 0] == pytest.approx(p.mean(), abs=ctol)
    assert dm.variability[0, 0] == pytest.approx(p.std(ddof=1), abs=vtol)
    assert dm.variability[0, 1] == 0.0  # ddof=1 with one observation: 0, not NaN
    assert dm.correctness[0].tolist()[:2] == [0.5, 0.0]
    assert np.isnan(dm.confidence[0, 2]) and dm.targets.tolist() == [[1, 0, -1]]


def test_target_dtypes_give_identical_maps():
    rng = np.random.default_rng(5)
    epochs = _stream(rng, epochs=2, batches=2, b=10, t=6, n=9, c=None, masked=True)
    maps = []
    for cast in (
        lambda y: y,
        lambda y: y.double(),
        lambda y: y.bool(),
        lambda y: y.to(torch.uint8),
    ):
        rec = DataMapRecorder(6, 9)
        for ep in epochs:
            for z, y, i, m in ep:
                rec.update(z, cast(y), i, mask=m)
            rec.end_epoch()
        maps.append(rec.compute())
    for other in maps[1:]:
        for name in _ALL:
            np.testing.assert_array_equal(getattr(other, name), getattr(maps[0], name))


def test_probe_indices_and_valid_rows():
    rng = np.random.default_rng(9)
    epochs = _stream(rng, epochs=2, batches=3, b=8, t=3, n=15, c=None, masked=False)
    full = _record(DataMapRecorder(3, 15), epochs).compute()
    probe = [11, 2, 7, 2]
    dm = _record(DataMapRecorder(3, 15, probe_indices=probe), epochs).compute()
    assert dm.sample_ids.tolist() == [2, 7, 11]
    np.testing.assert_array_equal(dm.confidence, full.confidence[:, [2, 7, 11]])
    np.testing.assert_array_equal(dm.count, full.count[:, [2, 7, 11]])
    rec = DataMapRecorder(3, 15)
    keep = [(z, y, i, m) for z, y, i, m in epochs[0][:1]]
    z, y, i, _ = keep[0]
    valid = torch.arange(len(i)) % 2 == 0
    rec.update(z, y, i, valid=valid)
    ref = DataMapRecorder(3, 15)
    ref.update(z[valid], y[valid], i[valid])
    np.testing.assert_array_equal(rec.compute().count, ref.compute().count)


def test_distributed_valid_mask_marks_padding():
    ds = list(range(7))
    seen = []
    for rank in range(3):
        s = torch.utils.data.DistributedSampler(ds, num_replicas=3, rank=rank, shuffle=True, seed=1)
        order = list(s)
        mask = distributed_valid_mask(s)
        assert len(mask) == len(order) == 3
        seen += [i for i, v in zip(order, mask.tolist(), strict=True) if v]
    assert sorted(seen) == ds  # every sample exactly once after dropping padding
    with pytest.raises(TypeError, match="sampler"):
        distributed_valid_mask(object())


def _snapshot(rec):
    return copy.deepcopy(rec.state_dict())


def _same_state(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    return a == b


_Z = torch.randn(4, 3, dtype=torch.float64)
_Y = torch.randint(0, 2, (4, 3))
_I = torch.tensor([0, 1, 2, 2])


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((_Z[:, :2], _Y[:, :2], _I), ValueError, "logits: expected 3 tasks"),
        ((_Z[0], _Y, _I), ValueError, "logits: expected shape"),
        ((_Z.long(), _Y, _I), TypeError, "logits: expected a floating"),
        ((_Z.numpy(), _Y, _I), TypeError, "logits: expected a torch.Tensor"),
        (
            (torch.where(_I[:, None] == 1, float("nan"), _Z), _Y, _I),
            ValueError,
            "logits: expected finite",
        ),
        (
            (torch.where(_I[:, None] == 1, float("inf"), _Z), _Y, _I),
            ValueError,
            "logits: expected finite",
        ),
        (
            (_Z, _Y, torch.tensor([0, 1, 2, 5])),
            ValueError,
            r"indices: expected sample ids in \[0, 5\)",
        ),
        ((_Z, _Y, torch.tensor([0, -1, 2, 2])), ValueError, "indices: expected sample ids"),
        ((_Z, _Y, _I.float()), TypeError, "indices: expected an integer"),
        ((_Z, _Y, _I[:3]), ValueError, "indices: expected shape"),
        ((_Z, _Y + 1, _I), ValueError, "targets: expected labels 0 or 1"),
        ((_Z, _Y.double() * 0.5, _I), ValueError, "targets: expected labels 0 or 1"),
        ((_Z, _Y[:, :2], _I), ValueError, "targets: expected shape"),
    ],
)
def test_bad_input_raises_and_leaves_state_unchanged(args, exc, match):
    rec = DataMapRecorder(3, 5)
    rec.update(_Z, _Y, _I)
    before = _snapshot(rec)
    with pytest.raises(exc, match=match):
        rec.update(*args)
    assert _same_state(before, rec.state_dict())


def test_bad_mask_and_multiclass_targets():
    rec = DataMapRecorder(3, 5)
    rec.update(_Z, _Y, _I)
    before = _snapshot(rec)
    with pytest.raises(ValueError, match="mask: expected shape"):
        rec.update(_Z, _Y, _I, mask=torch.ones(4, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask: expected a bool"):
        rec.update(_Z, _Y, _I, mask=torch.ones(4, 3))
    with pytest.raises(ValueError, match="valid: expected shape"):
        rec.update(_Z, _Y, _I, valid=torch.ones(3, dtype=torch.bool))
    assert _same_state(before, rec.state_dict())
    # missing labels may hold anything where the mask is False
    m = torch.ones(4, 3, dtype=torch.bool)
    m[0, 0] = False
    y = _Y.double()
    y[0, 0] = float("nan")
    rec.update(_Z, y, _I, mask=m)
    mc = DataMapRecorder(3, 5, task_type="multiclass")
    mc.update(torch.randn(4, 3, 4), torch.randint(0, 4, (4, 3)), _I)
    before = _snapshot(mc)
    with pytest.raises(ValueError, match=r"targets: expected class ids in \[0, 3\]"):
        mc.update(torch.randn(4, 3, 4), torch.full((4, 3), 4), _I)
    with pytest.raises(TypeError, match="targets: expected integer class ids"):
        mc.update(torch.randn(4, 3, 4), torch.zeros(4, 3), _I)
    with pytest.raises(ValueError, match="logits: expected C=4"):
        mc.update(torch.randn(4, 3, 5), torch.zeros(4, 3, dtype=torch.long), _I)
    assert _same_state(before, mc.state_dict())


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="num_tasks"):
        DataMapRecorder(0, 5)
    with pytest.raises(ValueError, match="ddof"):
        DataMapRecorder(2, 5, ddof=2)
    with pytest.raises(ValueError, match="task_names"):
        DataMapRecorder(2, 5, task_names=["a"])
    with pytest.raises(ValueError, match="probe_indices"):
        DataMapRecorder(2, 5, probe_indices=[9])


@pytest.mark.parametrize("kind", ["cumulative", "epoch"])
def test_resume_from_state_dict_is_exact(kind):
    rng = np.random.default_rng(11)
    epochs = _stream(rng, epochs=4, batches=3, b=7, t=3, n=9, c=None, masked=True)
    make = lambda: DataMapRecorder(3, 9, snapshot_epochs=[2, 3, 4], snapshot_kind=kind)  # noqa: E731
    straight = _record(make(), epochs).compute()
    first = _record(make(), epochs[:2])
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = make()
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.epoch == 2
    dm = _record(resumed, epochs[2:]).compute()
    for name in _ALL[1:]:
        np.testing.assert_array_equal(getattr(dm, name), getattr(straight, name))
    with pytest.raises(ValueError, match="configuration of this recorder, got one that differs"):
        DataMapRecorder(3, 10).load_state_dict(first.state_dict())


def test_reset_and_sync_without_distributed():
    rec = DataMapRecorder(3, 5)
    rec.update(_Z, _Y, _I)
    rec.end_epoch()
    assert rec.sync() is rec  # one process: nothing to merge
    merged, own = rec.merged_state_dict(), rec.state_dict()
    assert merged.keys() == own.keys() and merged["epoch"] == own["epoch"] == 1
    torch.testing.assert_close(merged["state"], own["state"], rtol=0, atol=0)
    rec.reset()
    dm = rec.compute()
    assert rec.epoch == 0 and dm.count.sum() == 0 and np.isnan(dm.confidence).all()
