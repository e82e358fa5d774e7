"""The GPU path: recorder and fit_datamaps on CUDA, NCCL sync, faiss on GPU (``make test-gpu``).

Every test here is marked ``gpu`` and skips with a reason where its hardware or library is
missing (no CUDA device; fewer than 2 GPUs for NCCL; faiss without GPU support). Run them with
``make test-gpu`` (``pytest -m gpu``) on a CUDA machine; install ``stgmtl[gpu]`` for faiss-gpu.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from stgmtl.record import DataMapRecorder, fit_datamaps
from stgmtl.record.compact import BOUND, MAX_UPDATES

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def _batches(seed, *, n_batches, b, t, n, c=None, masked=False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        shape = (b, t) if c is None else (b, t, c)
        z = torch.from_numpy(rng.normal(0, 3, size=shape)).float()
        y = torch.from_numpy(rng.integers(0, 2 if c is None else c, size=(b, t)))
        i = torch.from_numpy(rng.integers(0, n, size=b))
        m = torch.from_numpy(rng.random((b, t)) > 0.3) if masked else None
        out.append((z, y, i, m))
    return out


def _reference(batches, t, n, c):
    """float64 numpy: per (sample, task) sums of p, p^2, right and counts, row by row."""
    s1, s2 = np.zeros((n, t)), np.zeros((n, t))
    right, count = np.zeros((n, t)), np.zeros((n, t))
    for z, y, i, m in batches:
        z64, yy = z.double().numpy(), y.numpy()
        if c is None:
            s = 1.0 / (1.0 + np.exp(-z64))
            p, ok = np.where(yy == 1, s, 1.0 - s), (z64 > 0) == (yy == 1)
        else:
            e = np.exp(z64 - z64.max(axis=2, keepdims=True))
            p = np.take_along_axis(e / e.sum(axis=2, keepdims=True), yy[..., None], axis=2)[..., 0]
            ok = z64.argmax(axis=2) == yy
        on = np.ones(yy.shape, dtype=bool) if m is None else m.numpy()
        for r, row in enumerate(i.tolist()):
            s1[row] += np.where(on[r], p[r], 0.0)
            s2[row] += np.where(on[r], p[r] ** 2, 0.0)
            right[row] += on[r] & ok[r]
            count[row] += on[r]
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = s1 / count
        var = np.sqrt(np.maximum(s2 / count - conf**2, 0.0))
    return conf.T, var.T, (right / count).T, count.T


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("c", [None, 4])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("layout", ["compact", "float64"])
def test_recorder_on_cuda_matches_numpy_reference(validate, c, masked, layout):
    t, n = 7, 13
    batches = _batches(3, n_batches=5, b=10, t=t, n=n, c=c, masked=masked)
    rec = DataMapRecorder(t, n, task_type="binary" if c is None else "multiclass",
                          validate=validate, layout=layout)  # fmt: skip
    for z, y, i, m in batches:
        rec.update(z.cuda(), y.cuda(), i.cuda(), mask=None if m is None else m.cuda())
    assert rec.device is not None and rec.device.type == "cuda"
    dm = rec.compute()
    conf, var, corr, count = _reference(batches, t, n, c)
    np.testing.assert_array_equal(dm.count, count)
    atol = 1e-6 if layout == "float64" else BOUND  # float32 logits; the compact bound
    np.testing.assert_allclose(dm.confidence, conf, rtol=0, atol=atol)
    np.testing.assert_allclose(dm.variability, var, rtol=0, atol=atol)
    np.testing.assert_allclose(dm.correctness, corr, rtol=0, atol=1e-12)
    ref = DataMapRecorder(t, n, task_type=rec.task_type, layout=layout, kernel="torch")
    for z, y, i, m in batches:
        ref.update(z, y, i, mask=m)
    np.testing.assert_array_equal(dm.targets, ref.compute().targets)  # CPU, same layout


def test_compact_counter_limit_on_cuda():
    rec = DataMapRecorder(2, 3)
    z, y, i = (torch.zeros(1, 2, device="cuda"), torch.ones(1, 2, device="cuda"),
               torch.tensor([1], device="cuda"))  # fmt: skip
    for _ in range(MAX_UPDATES):
        rec.update(z, y, i)
    before = rec.state_dict()["state"]["packed"].clone()
    with pytest.raises(RuntimeError, match="more than the 255"):
        rec.update(z, y, i)
    assert torch.equal(rec.state_dict()["state"]["packed"], before)
    assert rec.compute().count[0, 1] == MAX_UPDATES


def test_recorder_on_cuda_refuses_bad_batch_with_validation():
    rec = DataMapRecorder(3, 5)
    z = torch.zeros(2, 3, device="cuda")
    z[0, 0] = float("nan")
    with pytest.raises(ValueError, match="logits: expected finite"):
        rec.update(z, torch.zeros(2, 3, device="cuda"), torch.tensor([0, 1], device="cuda"))
    assert rec.state_dict()["state"] is None


def test_fit_datamaps_on_cuda_matches_cpu():
    """lr = 0: the same logits on both devices, so the data maps agree to float32 rounding."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 10, generator=g), (torch.rand(64, 4, generator=g) > 0.5).float()
    loader = [(x[s : s + 16], y[s : s + 16], torch.arange(s, s + 16)) for s in range(0, 64, 16)]
    maps = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(1)
        model = torch.nn.Linear(10, 4)
        maps[device] = fit_datamaps(loader, model, epochs=2, lr=0.0, device=device,
                                    progress=False, snapshot_epochs=[1, 2])  # fmt: skip
    np.testing.assert_array_equal(maps["cpu"].count, maps["cuda"].count)
    for name in ("confidence", "variability", "correctness", "snapshot_confidence"):
        np.testing.assert_allclose(getattr(maps["cuda"], name), getattr(maps["cpu"], name),
                                   rtol=0, atol=2 * BOUND, err_msg=name)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nccl_worker(rank, port, batches, t, n, out):
    import torch.distributed as dist

    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)  # fmt: skip
    try:
        torch.cuda.set_device(rank)
        rec = DataMapRecorder(t, n, snapshot_epochs=[1])
        for j, (z, y, i, _) in enumerate(batches):
            if j % 2 == rank:
                rec.update(z.cuda(rank), y.cuda(rank), i.cuda(rank))
        rec.end_epoch()
        dm = rec.compute()
        out[rank] = (dm.confidence, dm.variability, dm.count)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL sync needs 2 GPUs")
def test_sync_on_two_gpus_with_nccl_equals_one_process():
    import torch.multiprocessing as mp

    t, n = 5, 9
    batches = _batches(7, n_batches=6, b=8, t=t, n=n)
    out = mp.Manager().dict()
    mp.spawn(_nccl_worker, args=(_free_port(), batches, t, n, out), nprocs=2, join=True)
    conf, var, _, count = _reference(batches, t, n, None)
    for rank in (0, 1):
        np.testing.assert_array_equal(out[rank][2], count)
        np.testing.assert_allclose(out[rank][0], conf, rtol=0, atol=BOUND)
        np.testing.assert_allclose(out[rank][1], var, rtol=0, atol=BOUND)


def test_grouping_with_faiss_on_gpu_agrees_with_cpu():
    import faiss

    from stgmtl.grouping import TaskGrouper

    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() < 1:
        pytest.skip("faiss has no GPU support here: install the stgmtl[gpu] extra (faiss-gpu)")
    rng = np.random.default_rng(0)
    k = 12
    labels = np.repeat(np.arange(k), rng.integers(20, 60, size=k))
    x = rng.normal(size=(k, 300))[labels] + 0.3 * rng.normal(size=(labels.size, 300))
    cpu = TaskGrouper(k, device="cpu", progress=False).fit(x.astype(np.float32))
    gpu = TaskGrouper(k, device="cuda", progress=False).fit(x.astype(np.float32))
    assert adjusted_rand_score(labels, cpu.labels_) == 1.0
    assert adjusted_rand_score(labels, gpu.labels_) == 1.0
    assert adjusted_rand_score(cpu.labels_, gpu.labels_) == 1.0
    np.testing.assert_allclose(gpu.inertia_, cpu.inertia_, rtol=1e-4)
