"""The native (C++) recording kernel: float64 numpy reference, torch path, threads, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from stgmtl.record import DataMapRecorder
from stgmtl.record.compact import BOUND, LEVELS
from stgmtl.record.native import native_kernel, native_status

needs_native = pytest.mark.skipif(
    native_kernel() is None, reason=f"native kernel unavailable: {native_status()['reason']}"
)


def _batches(rng, *, n_batches, b, t, n, zdtype, ydtype, masked):
    out = []
    for _ in range(n_batches):
        z = torch.from_numpy(rng.normal(0, 3, size=(b, t))).to(zdtype)
        z[0, 0] = 0.0  # z = 0 exactly: wrong for y = 1, right for y = 0
        y = torch.from_numpy(rng.integers(0, 2, size=(b, t))).to(ydtype)
        i = torch.from_numpy(rng.integers(0, n, size=b))  # duplicates within a batch
        m = torch.from_numpy(rng.random((b, t)) > 0.3) if masked else None
        out.append((z, y, i, m))
    return out


def _reference(batches, t, n):
    """float64 numpy: sums of p, p^2, right and observed counts with np.add.at, row by row."""
    s1, s2 = np.zeros((n, t)), np.zeros((n, t))
    right, count = np.zeros((n, t), np.int64), np.zeros((n, t), np.int64)
    for z, y, i, m in batches:
        z64, yy = z.double().numpy(), y.double().numpy() > 0.5
        s = 1.0 / (1.0 + np.exp(-z64))
        p = np.where(yy, s, 1.0 - s)
        ok = (z64 > 0) == yy
        on = np.ones_like(yy) if m is None else m.numpy()
        for r, row in enumerate(i.tolist()):
            s1[row] += np.where(on[r], p[r], 0.0)
            s2[row] += np.where(on[r], p[r] ** 2, 0.0)
            right[row] += on[r] & ok[r]
            count[row] += on[r]
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = s1 / count
        var = np.sqrt(np.maximum(s2 / count - conf**2, 0.0))
        corr = right / count
    return conf.T, var.T, corr.T, count.T


def _record(batches, t, n, **kw):
    rec = DataMapRecorder(t, n, **kw)
    for z, y, i, m in batches:
        rec.update(z, y, i, mask=m)
    return rec


@needs_native
@pytest.mark.parametrize("zdtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize(
    "ydtype", [torch.float32, torch.float64, torch.bool, torch.int64, torch.int32, torch.int16,
               torch.int8, torch.uint8]
)  # fmt: skip
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("layout", ["compact", "float64"])
def test_native_statistics_match_float64_reference(zdtype, ydtype, masked, layout):
    rng = np.random.default_rng(hash((str(zdtype), str(ydtype), masked)) % 2**32)
    t, n = 37, 11  # columns not a multiple of any vector width
    batches = _batches(rng, n_batches=6, b=9, t=t, n=n, zdtype=zdtype, ydtype=ydtype,
                       masked=masked)  # fmt: skip
    dm = _record(batches, t, n, kernel="native", layout=layout).compute()
    conf, var, corr, count = _reference(batches, t, n)
    np.testing.assert_array_equal(dm.count, count)
    # p is computed in the logits' precision: float64 logits to 1e-15, float32 (and bfloat16,
    # converted to float32) to a few float32 ulps of p <= 1; the compact layout to its bound
    atol = 1e-15 if zdtype == torch.float64 else 2.5e-7
    atol, vtol = (atol, 1e-7) if layout == "float64" else (BOUND, BOUND)
    np.testing.assert_allclose(dm.confidence, conf, rtol=0, atol=atol)
    np.testing.assert_allclose(dm.variability, var, rtol=0, atol=vtol)
    np.testing.assert_allclose(dm.correctness, corr, rtol=0, atol=1e-15)


@needs_native
@pytest.mark.parametrize("masked", [False, True])
def test_native_and_torch_paths_agree_compact(masked):
    rng = np.random.default_rng(5)
    t, n = 300, 40
    batches = _batches(rng, n_batches=5, b=64, t=t, n=n, zdtype=torch.float32,
                       ydtype=torch.float32, masked=masked)  # fmt: skip
    a = _record(batches, t, n, kernel="native").state_dict()["state"]
    b = _record(batches, t, n, kernel="torch").state_dict()["state"]
    for key in ("seen", "missing"):
        assert (a[key] is None and b[key] is None) or torch.equal(a[key], b[key]), key
    wa, wb = a["packed"], b["packed"]
    right, sign = 255, -(1 << 63)
    assert torch.equal(wa & right, wb & right) and torch.equal(wa & sign, wb & sign)
    # q = floor(p * M + 1/2) from float32 (kernel) and float64 (torch) p: at most 1 apart per
    # observation, so the S1 fields differ by at most the count
    s1a, s1b = (wa >> 8) & ((1 << 21) - 1), (wb >> 8) & ((1 << 21) - 1)
    n_obs = a["seen"].view(-1, 1) - (0 if a["missing"] is None else a["missing"].long())
    assert bool(((s1a - s1b).abs() <= n_obs).all())
    assert int((s1a != s1b).sum()) < 0.01 * s1a.numel()


@needs_native
@pytest.mark.parametrize("masked", [False, True])
def test_native_and_torch_paths_agree(masked):
    rng = np.random.default_rng(5)
    t, n = 300, 40
    batches = _batches(rng, n_batches=5, b=64, t=t, n=n, zdtype=torch.float32,
                       ydtype=torch.float32, masked=masked)  # fmt: skip
    a = _record(batches, t, n, kernel="native", layout="float64")
    b = _record(batches, t, n, kernel="torch", layout="float64")
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    for key in ("correct", "seen", "targets", "missing"):
        if sa[key] is None:
            assert sb[key] is None
        else:
            assert torch.equal(sa[key], sb[key]), key
    # both take the sigmoid in float32 (torch's and the kernel's own exp: a few ulps apart)
    torch.testing.assert_close(sa["s1"], sb["s1"], rtol=2e-7, atol=1e-7)
    torch.testing.assert_close(sa["s2"], sb["s2"], rtol=2e-7, atol=1e-7)


@needs_native
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("layout", ["compact", "float64"])
def test_native_result_does_not_depend_on_threads(masked, layout):
    rng = np.random.default_rng(9)
    t, n = 9000, 30  # wide enough to be split between threads
    batches = _batches(rng, n_batches=3, b=40, t=t, n=n, zdtype=torch.float32,
                       ydtype=torch.float32, masked=masked)  # fmt: skip
    kw = dict(kernel="native", layout=layout)
    one = _record(batches, t, n, cpu_threads=1, **kw).state_dict()["state"]
    three = _record(batches, t, n, cpu_threads=3, **kw).state_dict()["state"]
    for key, value in one.items():
        if value is not None:
            assert torch.equal(value, three[key]), key


@needs_native
def test_native_probe_indices_and_valid_rows():
    rng = np.random.default_rng(2)
    t, n = 6, 20
    batches = _batches(rng, n_batches=4, b=12, t=t, n=n, zdtype=torch.float32,
                       ydtype=torch.float32, masked=False)  # fmt: skip
    probe = [1, 4, 7, 19]
    for kernel in ("native", "torch"):
        rec = DataMapRecorder(t, n, probe_indices=probe, kernel=kernel)
        for z, y, i, _ in batches:
            rec.update(z, y, i, valid=i % 3 != 0)
        dm = rec.compute()
        kept = [(z[i % 3 != 0], y[i % 3 != 0], i[i % 3 != 0], None) for z, y, i, _ in batches]
        conf, _, _, count = _reference(kept, t, n)
        np.testing.assert_array_equal(dm.count, count[:, probe])
        np.testing.assert_allclose(dm.confidence, conf[:, probe], rtol=0, atol=BOUND)


@needs_native
@pytest.mark.parametrize(
    "bad",
    [
        {"z": float("nan")},
        {"z": float("inf")},
        {"y": 2.0},
        {"y": 0.5},
        {"y": float("nan")},
        {"y": -1.0, "masked_out": True},  # hidden by the mask: accepted
    ],
)
@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("layout", ["compact", "float64"])
def test_native_refuses_bad_batch_and_leaves_state_unchanged(bad, first, layout):
    rng = np.random.default_rng(0)
    t, n = 5, 8
    (z, y, i, _), (z2, y2, i2, _) = _batches(rng, n_batches=2, b=6, t=t, n=n,
                                             zdtype=torch.float32, ydtype=torch.float32,
                                             masked=False)  # fmt: skip
    native = DataMapRecorder(t, n, kernel="native", layout=layout)
    ref = DataMapRecorder(t, n, kernel="torch", layout=layout)
    if not first:
        for rec in (native, ref):
            rec.update(z, y, i)
    before = {k: None if v is None else v.clone()
              for k, v in (native.state_dict()["state"] or {}).items()}  # fmt: skip
    z2, y2 = z2.clone(), y2.clone()
    z2[3, 2] = bad.get("z", z2[3, 2])
    y2[3, 2] = bad.get("y", y2[3, 2])
    mask = None
    if bad.get("masked_out"):
        mask = torch.ones(6, t, dtype=torch.bool)
        mask[3, 2] = False
        for rec in (native, ref):
            rec.update(z2, y2, i2, mask=mask)
        np.testing.assert_allclose(native.compute().confidence, ref.compute().confidence,
                                   atol=1e-6 if layout == "float64" else 2 * BOUND,
                                   equal_nan=True)  # fmt: skip
        return
    with pytest.raises(ValueError) as native_err:
        native.update(z2, y2, i2)
    with pytest.raises(ValueError) as torch_err:
        ref.update(z2, y2, i2)
    assert str(native_err.value).split(" got")[0] == str(torch_err.value).split(" got")[0]
    after = native.state_dict()["state"]
    if first:
        assert after is None
    else:
        for key, value in before.items():
            assert (value is None and after[key] is None) or torch.equal(value, after[key])


@needs_native
def test_native_index_out_of_range_raises_even_without_validation():
    rec = DataMapRecorder(3, 4, kernel="native", validate=False)
    with pytest.raises(ValueError, match=r"indices: expected sample ids in \[0, 4\)"):
        rec.update(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 4]))


def _run(code: str, env: dict[str, str]) -> str:
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=full, timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


_FALLBACK = """
    import numpy as np, torch
    from stgmtl.record import DataMapRecorder
    from stgmtl.record.native import native_status
    print(native_status())
    try:
        DataMapRecorder(2, 3, kernel="native")
    except ValueError as err:
        print("native refused:", err)
    rec = DataMapRecorder(2, 3, layout="float64")  # auto: the torch path
    rec.update(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([2]))
    print("confidence", rec.compute().confidence[:, 2].round(6).tolist())
"""


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"STGMTL_NATIVE": "0"}, "disabled by STGMTL_NATIVE=0"),
        ({"CXX": "/bin/false"}, "build or load failed"),
        ({"CXX": "no-such-compiler-here"}, "no C++ compiler found"),
    ],
)
def test_without_native_kernel_recording_falls_back_to_torch(tmp_path, env, reason):
    out = _run(_FALLBACK, {**env, "STGMTL_CACHE_DIR": str(tmp_path)})
    assert "'available': False" in out and reason in out
    assert "native refused: kernel: expected 'auto' or 'torch'" in out
    assert "confidence [0.5, 0.268941]" in out  # sigmoid(0), 1 - sigmoid(1)


def test_native_kernel_is_built_once_per_source_and_compiler(tmp_path):
    code = "from stgmtl.record.native import native_status; print(native_status())"
    first = _run(code, {"STGMTL_CACHE_DIR": str(tmp_path)})
    if "'available': False" in first:
        pytest.skip(f"no native kernel here: {first.strip()}")
    built = sorted(p.name for p in tmp_path.iterdir())
    assert len(built) == 1 and built[0].startswith("datamap_update-") and built[0].endswith(".so")
    mtime = (tmp_path / built[0]).stat().st_mtime_ns
    _run(code, {"STGMTL_CACHE_DIR": str(tmp_path)})
    assert (tmp_path / built[0]).stat().st_mtime_ns == mtime  # loaded, not rebuilt


@needs_native
def test_native_float32_probability_error_bound_over_the_logit_range():
    """The documented bound: for float32 logits, |p - p_float64| < 1e-7 for every logit from
    -90 to 90 (past the float32 exp's clamp) and either label; p of float64 logits to 1e-15."""
    z64 = np.concatenate([np.linspace(-90, 90, 180_001), [-1e30, 1e30, 0.0]])
    for dtype, bound in ((torch.float32, 1e-7), (torch.float64, 1e-15)):
        z = torch.from_numpy(z64).to(dtype).reshape(1, -1)
        zz = z.double().numpy()[0]
        for label in (0.0, 1.0):
            rec = DataMapRecorder(z.shape[1], 1, kernel="native", layout="float64")
            rec.update(z, torch.full(z.shape, label), torch.zeros(1, dtype=torch.long))
            u = -zz if label else zz  # p = sigmoid(-u), computed without cancellation
            ref = 1.0 / (1.0 + np.exp(np.minimum(u, 700.0)))
            err = np.abs(rec.compute().confidence[:, 0] - ref)
            assert err.max() < bound, (dtype, label, float(err.max()))
            # the compact layout: p rounded to the nearest of LEVELS + 1 values, within BOUND
            for kernel in ("native", "torch"):
                rec = DataMapRecorder(z.shape[1], 1, kernel=kernel)
                rec.update(z, torch.full(z.shape, label), torch.zeros(1, dtype=torch.long))
                err = np.abs(rec.compute().confidence[:, 0] - ref)
                assert 0.5 / LEVELS <= BOUND and err.max() <= 0.5 / LEVELS + bound + 1e-9
