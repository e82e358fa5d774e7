"""Affinity probes against slow plain references; no side effects; state, resume, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stgmtl.loop import Hook, task_losses, train_loop
from stgmtl.record import (
    GradCosineProbe,
    GradTAGCollector,
    IndexedDataset,
    RepCosineProbe,
    TAGProbe,
    preview_step,
)
from stgmtl.record.gradtag import (
    fit_logistic,
    grad_tag_affinity,
    projected_gradients,
    projection_direction,
    subset_affinity,
    subset_losses,
)
from stgmtl.record.probe import probe_seed
from stgmtl.record.ptg import PTGProbe, ptg_tasks
from stgmtl.record.tag import source_schedule

T = 4


class Net(nn.Module):
    """A trunk with BatchNorm and dropout, and a linear head (one logit per task)."""

    def __init__(self, t: int = T, width: int = 8, head: nn.Module | None = None) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(6, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(width, width), nn.Tanh(),
        )  # fmt: skip
        self.head = head if head is not None else nn.Linear(width, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def _data(n=48, t=T, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    y = torch.stack([x[:, 0] > 0, x[:, 0] <= 0, x[:, 1] > 0.3, torch.rand(n, generator=g) > 0.5], 1)
    return x, y[:, :t].double()


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return Net(**kw).double()


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd-momentum-wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgd-nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
    "sgd-dampening": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.5, dampening=0.3),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=1e-2),
    "adam-amsgrad": lambda ps: torch.optim.Adam(ps, lr=0.01, amsgrad=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
}


def _train_step(model, opt, x, y, probes=()):
    logits = model(x)
    loss = task_losses(logits, y).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for p in probes:
        p.update(model, opt, x, y)
    opt.step()


# ------------------------------------------------------------------------------------ TAG
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_preview_step_equals_a_deep_copied_optimizer_step(name):
    model = _model()
    opt = OPTIMIZERS[name](model.parameters())
    x, y = _data()
    for _ in range(2):  # build optimizer state
        _train_step(model, opt, x, y)
    params = list(model.trunk.parameters())
    grads = [torch.randn_like(p) for p in params]
    got = preview_step(opt, params, grads)
    m2, o2 = copy.deepcopy((model, opt))
    o2.zero_grad(set_to_none=True)
    for p, g in zip(m2.trunk.parameters(), grads, strict=True):
        p.grad = g.clone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    o2.step()
    for a, b in zip(got, m2.trunk.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-12)
    for k, v in model.state_dict().items():  # nothing written
        assert torch.equal(v, before[k])


def test_preview_step_rejects_other_optimizers():
    model = _model()
    with pytest.raises(TypeError, match="SGD, Adam or AdamW"):
        preview_step(torch.optim.RMSprop(model.parameters()), [], [])


def _reference_tag(model, opt, x, y, seed):
    """Deep copies of model and optimizer: step on task i's loss alone (heads frozen)."""
    lr = opt.param_groups[0]["lr"]
    torch.manual_seed(seed)
    base = task_losses(copy.deepcopy(model)(x), y).detach()
    out = np.zeros((T, T))
    for i in range(T):
        m, o = copy.deepcopy((model, opt))
        torch.manual_seed(seed)
        losses = task_losses(m(x), y)
        o.zero_grad(set_to_none=True)
        losses[i].backward()
        for p in m.head.parameters():
            p.grad = None
        o.step()
        torch.manual_seed(seed)
        with torch.no_grad():
            after = task_losses(m(x), y)
        out[i] = ((1 - after / base) / lr).numpy()
    return out


@pytest.mark.parametrize("name", ["sgd-momentum-wd", "adam", "adamw"])
def test_tag_probe_matches_deep_copy_reference(name):
    model = _model()
    opt = OPTIMIZERS[name](model.parameters())
    x, y = _data()
    probe = TAGProbe(every=1, max_sources=None, random_state=3)
    refs = []
    for step in range(3):
        refs.append(_reference_tag(model, opt, x, y, probe_seed(3, step)))
        _train_step(model, opt, x, y, [probe])
    got = probe.compute()
    np.testing.assert_allclose(got.values, np.mean(refs, axis=0), rtol=1e-9, atol=1e-9)
    assert (got.counts == 3).all()
    assert got.signal == "tag" and got.orientation == "source->recipient"
    assert got.meta["divide_by_lr"] is True


def test_tag_rotating_sources_cover_every_task_once_per_cycle():
    for t, s in [(10, 3), (100, 8), (5, 5), (7, None)]:
        chunks = 1 if s is None or s >= t else -(-t // s)
        for cycle in range(2):
            seen = np.concatenate([source_schedule(t, s, cycle * chunks + k, 0)
                                   for k in range(chunks)])  # fmt: skip
            assert sorted(seen.tolist()) == list(range(t))
            assert max(len(source_schedule(t, s, k, 0)) for k in range(chunks)) <= (s or t)


def test_tag_probe_rows_follow_the_schedule():
    model = _model()
    opt = OPTIMIZERS["sgd-momentum-wd"](model.parameters())
    x, y = _data()
    probe = TAGProbe(every=2, max_sources=2, random_state=1)
    for _ in range(4):  # steps 0 and 2 are probed
        _train_step(model, opt, x, y, [probe])
    counts = probe.compute().counts
    probed = set(source_schedule(T, 2, 0, 1).tolist()) | set(source_schedule(T, 2, 1, 1).tolist())
    assert probe.steps_probed == 2 and probe.steps_seen == 4
    assert {i for i in range(T) if counts[i].sum() > 0} == probed


def _reference_ptg(model, opt, x, y, seed):
    """Deep copies of model and optimizer, real steps on L_i + L_j (heads frozen)."""

    def after(combo):
        m, o = copy.deepcopy((model, opt))
        torch.manual_seed(seed)
        losses = task_losses(m(x), y)
        o.zero_grad(set_to_none=True)
        sum(losses[k] for k in combo).backward()
        for p in m.head.parameters():
            p.grad = None
        o.step()
        torch.manual_seed(seed)
        with torch.no_grad():
            return task_losses(m(x), y).numpy()

    own = [after([j])[j] for j in range(T)]
    out = np.zeros((T, T))
    for i in range(T):
        for j in range(T):
            out[i, j] = 1 - after([i, j])[j] / own[j]
    return out


@pytest.mark.parametrize("name", ["sgd-momentum-wd", "adam"])
def test_ptg_probe_matches_deep_copy_reference(name):
    model = _model()
    opt = OPTIMIZERS[name](model.parameters())
    x, y = _data()
    probe = PTGProbe(every=1, max_tasks=None, random_state=3)
    refs = []
    for step in range(2):
        refs.append(_reference_ptg(model, opt, x, y, probe_seed(3, step)))
        _train_step(model, opt, x, y, [probe])
    got = probe.compute()
    np.testing.assert_allclose(got.values, np.mean(refs, axis=0), rtol=1e-9, atol=1e-9)
    assert (got.counts == 2).all() and got.signal == "ptg"


def test_ptg_samples_bounded_task_sets_covering_every_pair():
    t, m = 12, 4
    pairs = set()
    for k in range(400):
        s = ptg_tasks(t, m, k, 5)
        assert len(s) == m and len(set(s.tolist())) == m
        pairs |= {(int(a), int(b)) for a in s for b in s}
    assert len(pairs) == t * t  # every ordered pair, diagonal included, gets observed
    assert ptg_tasks(3, 4, 0, 5).tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------ cosines
def _cos(rows):
    g = np.stack([r.detach().reshape(-1).numpy() for r in rows])
    n = np.linalg.norm(g, axis=1)
    return (g @ g.T) / np.outer(n, n)


@pytest.mark.parametrize("linear_head", [True, False])
def test_rep_cosine_matches_per_task_autograd_on_the_representation(linear_head):
    head = None if linear_head else nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, T))
    model = _model(head=head)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    probe = RepCosineProbe(heads=model.head, model=model)
    refs = []
    for step in range(3):
        torch.manual_seed(100 + step)
        z = model.trunk(x).detach().requires_grad_(True)  # the training forward's z
        losses = task_losses(model.head(z), y)
        refs.append(_cos([torch.autograd.grad(losses[t], z, retain_graph=True)[0]
                          for t in range(T)]))  # fmt: skip
        torch.manual_seed(100 + step)
        _train_step(model, opt, x, y, [probe])
    got = probe.compute()
    np.testing.assert_allclose(got.values, np.mean(refs, axis=0), atol=1e-10)
    assert got.orientation == "symmetric"
    probe.detach()


def test_rep_cosine_without_a_captured_forward_runs_its_own():
    model = _model()
    model.eval()  # no capture in eval mode: the probe must run a forward itself
    x, y = _data()
    probe = RepCosineProbe(task_names=list("abcd"))
    probe.update(model, None, x, y)
    z = model.trunk(x).detach().requires_grad_(True)
    losses = task_losses(model.head(z), y)
    want = _cos([torch.autograd.grad(losses[t], z, retain_graph=True)[0] for t in range(T)])
    np.testing.assert_allclose(probe.compute().values, want, atol=1e-10)
    probe.detach()


def _reference_grad_cosine(model, x, y, seed, weights_only=True):
    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    losses = task_losses(m(x), y)
    shared = [p for p in m.trunk.parameters() if p.ndim > 1 or not weights_only]
    rows = []
    for t in range(T):
        g = torch.autograd.grad(losses[t], shared, retain_graph=True)
        rows.append(torch.cat([v.reshape(-1) for v in g]))
    return _cos(rows)


@pytest.mark.parametrize("weights_only", [True, False])
def test_grad_cosine_exact_matches_per_task_autograd(weights_only):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    probe = GradCosineProbe(every=1, sketch_dim=None, weights_only=weights_only, random_state=5)
    refs = []
    for step in range(2):
        refs.append(_reference_grad_cosine(model, x, y, probe_seed(5, step), weights_only))
        _train_step(model, opt, x, y, [probe])
    np.testing.assert_allclose(probe.compute().values, np.mean(refs, axis=0), atol=1e-10)


def test_grad_cosine_sketch_approximates_the_exact_cosine():
    model = _model(width=96)  # 6*96 + 96*96 = 9,792 shared weights
    x, y = _data()
    exact = GradCosineProbe(every=1, sketch_dim=None)
    sketched = GradCosineProbe(every=1, sketch_dim=2048)
    wide = GradCosineProbe(every=1, sketch_dim=10**6)  # wider than the weights: exact
    for p in (exact, sketched, wide):
        p.update(model, None, x, y)
    e, s, w = (p.compute().values for p in (exact, sketched, wide))
    np.testing.assert_allclose(w, e, atol=1e-6)
    off = ~np.eye(T, dtype=bool)
    assert np.abs(s - e)[off].max() < 0.12  # about 1/sqrt(2048) = 0.022 per entry
    assert not np.allclose(s, e, atol=1e-6)  # it did sketch


# ------------------------------------------------------------------------------ Grad-TAG
def test_projected_gradients_equal_explicit_per_sample_gradients_times_p():
    model = _model()
    x, y = _data(n=10)
    d = 6
    logits, feats, targets, observed = projected_gradients(model, [(x, y)], projection_dim=d,
                                                           chunk=4, random_state=7)  # fmt: skip
    model.eval()
    params = [
        p
        for n, p in model.named_parameters()
        if n.startswith("trunk") and not n.startswith("trunk.1.")
    ]  # no head, no BN
    cols = [projection_direction([p.detach() for p in params], 7, k, d) for k in range(d)]
    pmat = torch.stack([torch.cat([c.reshape(-1) for c in col]) for col in cols], 1)
    for n in range(len(x)):
        out = model(x[n : n + 1])[0]
        for t in range(T):
            g = torch.autograd.grad(out[t], params, retain_graph=True)
            want = torch.cat([v.reshape(-1) for v in g]) @ pmat
            np.testing.assert_allclose(feats[n, t], want.numpy(), atol=1e-10)
            assert logits[n, t] == pytest.approx(float(out[t]), abs=1e-12)
    assert model.training is False  # we set it; the function restores the mode it found
    np.testing.assert_array_equal(targets, y.numpy())
    assert observed.all()


def test_fit_logistic_matches_scipy():
    g = torch.Generator().manual_seed(0)
    p, r, d = 3, 40, 5
    x = torch.randn(p, r, d, generator=g, dtype=torch.float64)
    off = torch.randn(p, r, generator=g, dtype=torch.float64)
    y = (torch.rand(p, r, generator=g) > 0.5).double()
    w = (torch.rand(p, r, generator=g) > 0.2).double()
    got = fit_logistic(x, off, y, w, 0.05)
    for k in range(p):
        xs, os_, ys, ws = (a[k].numpy() for a in (x, off, y, w))
        lam = 0.05 * (ws[:, None] * xs * xs).sum() / (ws.sum() * d)

        def f(b, xs=xs, os_=os_, ys=ys, ws=ws, lam=lam):
            z = os_ + xs @ b
            return (ws * (np.logaddexp(0, z) - ys * z)).sum() / ws.sum() + 0.5 * lam * b @ b

        ref = scipy.optimize.minimize(f, np.zeros(d), method="BFGS", options={"gtol": 1e-12}).x
        np.testing.assert_allclose(got[k].numpy(), ref, atol=1e-5)


def test_subset_losses_and_affinity_match_a_loop():
    rng = np.random.default_rng(1)
    n, t, d = 30, 3, 4
    feats = torch.from_numpy(rng.normal(size=(n, t, d)))
    logits = torch.from_numpy(rng.normal(size=(n, t)))
    y = torch.from_numpy((rng.random((n, t)) > 0.5).astype(float))
    m = torch.ones((n, t), dtype=torch.bool)
    m[0, 1] = False
    fit = (feats[:20], logits[:20], y[:20], m[:20])
    held = (feats[20:], logits[20:], y[20:], m[20:])
    subsets = [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
    losses = subset_losses(subsets, fit, held, 0.1)
    for r, s in enumerate(subsets):
        rows = [(k, j) for j in s for k in range(20) if m[k, j]]
        x = torch.stack([feats[k, j] for k, j in rows])[None]
        o = torch.stack([logits[k, j] for k, j in rows])[None]
        yy = torch.stack([y[k, j] for k, j in rows])[None]
        w = fit_logistic(x, o, yy, torch.ones_like(o), 0.1)[0].numpy()
        for j in s:
            z = logits[20:, j].numpy() + feats[20:, j].numpy() @ w
            want = np.mean(np.logaddexp(0, z) - y[20:, j].numpy() * z)
            assert losses[r, j] == pytest.approx(want, abs=1e-8)
    values, counts = subset_affinity(subsets, losses)
    assert values[0, 1] == pytest.approx(1 - losses[3, 1] / losses[1, 1])
    assert values[2, 0] == pytest.approx(1 - losses[4, 0] / losses[0, 0])
    assert np.isnan(np.diag(values)).all() and counts[0, 1] == 1
    # sampled subsets: with / without averages
    sub2 = [(0, 1, 2), (0, 1), (1, 2), (0, 2), (1,)]
    l2 = rng.random((5, t))
    v2, c2 = subset_affinity(sub2, np.where([[k in s for k in range(t)] for s in sub2], l2, np.nan))
    with_ = np.mean([l2[r, 1] for r, s in enumerate(sub2) if 0 in s and 1 in s])
    without = np.mean([l2[r, 1] for r, s in enumerate(sub2) if 1 in s and 0 not in s])
    assert v2[0, 1] == pytest.approx(1 - with_ / without)
    assert c2[0, 1] == 2


def test_grad_tag_affinity_end_to_end_is_seeded_and_leaves_the_model_alone():
    model = _model()
    x, y = _data(n=40)
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    a = grad_tag_affinity(model, [(x, y)], projection_dim=8, random_state=2)
    b = grad_tag_affinity(model, [(x[:20], y[:20]), (x[20:], y[20:])], projection_dim=8,
                          random_state=2)  # fmt: skip
    np.testing.assert_allclose(a.values, b.values, atol=1e-10)  # batching does not matter
    assert a.signal == "grad-tag" and np.isnan(np.diag(a.values)).all()
    assert np.isfinite(a.values[~np.eye(T, dtype=bool)]).all()
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# ------------------------------------------------------------------------ side effects
def _run(hooks_factory, opt_name, epochs=2):
    torch.manual_seed(0)
    model = Net(width=8).double()
    opt = OPTIMIZERS[opt_name](model.parameters())
    x, y = _data(n=40)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=8, shuffle=True)
    hooks = hooks_factory(model)
    train_loop(model, loader, epochs=epochs, optimizer=opt, hooks=hooks, progress=False)
    for h in hooks:
        if isinstance(h, RepCosineProbe):
            h.detach()
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    return model.state_dict(), opt.state_dict(), grads, torch.get_rng_state(), hooks


PROBES = {
    "tag": lambda m: [TAGProbe(every=1, max_sources=2)],
    "grad-cosine": lambda m: [GradCosineProbe(every=1, sketch_dim=64)],
    "rep-cosine": lambda m: [RepCosineProbe(heads=m.head, model=m)],
    "grad-tag-collector": lambda m: [GradTAGCollector(12)],
    "ptg": lambda m: [PTGProbe(every=2, max_tasks=3)],
    "all": lambda m: [TAGProbe(every=2), GradCosineProbe(every=3), RepCosineProbe(heads=m.head,
                      model=m), GradTAGCollector(12)],
}  # fmt: skip


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("opt_name", ["sgd-momentum-wd", "adamw"])
@pytest.mark.parametrize("probe", sorted(PROBES))
def test_a_probe_never_changes_training(probe, opt_name):
    plain = _run(lambda m: [], opt_name)
    probed = _run(PROBES[probe], opt_name)
    for k in range(4):  # weights and buffers, optimizer state, .grad, global RNG
        assert _same(plain[k], probed[k]), ["state_dict", "optimizer", "grad", "rng"][k]
    for h in probed[4]:
        if hasattr(h, "compute"):
            assert h.steps_probed > 0 and np.isfinite(h.compute().values).any()


# ---------------------------------------------------------------- state and bad input
def _state_copy(probe):
    return copy.deepcopy(probe.state_dict())


def test_bad_input_leaves_the_state_unchanged():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _data()
    probe = TAGProbe(every=1, task_names=list("abcd"))
    _train_step(model, opt, x, y, [probe])
    before = _state_copy(probe)
    bad = [
        lambda: probe.update(model, opt, x, y[:, :3]),  # wrong number of tasks
        lambda: probe.update(model, opt, x, y, mask=torch.ones_like(y)),  # mask not bool
        lambda: probe.update(model, torch.optim.RMSprop(model.parameters()), x, y),
        lambda: probe.update(model, opt, x, y, loss_fn=lambda z, t: z.sum()),  # not per task
        lambda: probe.update(model, opt, x, y.numpy()),
        lambda: probe.update("model", opt, x, y),
    ]
    for call in bad:
        with pytest.raises((TypeError, ValueError)):
            call()
        assert _same(probe.state_dict(), before)
    with pytest.raises(ValueError, match="heads"):
        TAGProbe(heads="no.such.module").update(model, opt, x, y)
    with pytest.raises(ValueError, match="heads"):
        RepCosineProbe().update(nn.Sequential(nn.Linear(6, 3)), None, x, y)


def test_state_dict_round_trip_resumes_exactly():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = _data()
    a = GradCosineProbe(every=1, sketch_dim=None, task_names=list("abcd"))
    for _ in range(2):
        _train_step(model, opt, x, y, [a])
    a.end_epoch()
    b = GradCosineProbe(every=1, sketch_dim=None, task_names=list("abcd"))
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for p in (a, b):
        p.update(model, opt, x, y)
        p.end_epoch()
    ra, rb = a.compute(), b.compute()
    np.testing.assert_array_equal(ra.values, rb.values)
    np.testing.assert_array_equal(ra.snapshots, rb.snapshots)
    assert ra.snapshot_epochs == [1, 2] and ra.meta == rb.meta
    other = GradCosineProbe(every=2, sketch_dim=None, task_names=list("abcd"))
    with pytest.raises(ValueError, match="every"):
        other.load_state_dict(a.state_dict())
    assert other.steps_seen == 0


class _Crash(Hook):
    """Raises at the first step of the second epoch while armed (a killed run)."""

    def __init__(self, armed: bool) -> None:
        self.armed = armed

    def after_step(self, step):
        if self.armed and step.epoch == 1:
            raise RuntimeError("killed")


def test_record_affinity_resumes_from_a_checkpoint(tmp_path):
    from stgmtl import record_affinity

    def run(path, armed=False):
        torch.manual_seed(0)
        model = Net().double()
        x, y = _data(n=32)
        loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=8, shuffle=True)
        return record_affinity(
            loader, model, signals=["tag", "rep-cosine", "grad-cosine", "datamap", "colearning"],
            epochs=2, progress=False, task_names=list("abcd"), checkpoint_path=path,
            settings={"tag": {"every": 3}, "grad-cosine": {"every": 2}}, hooks=[_Crash(armed)],
        )  # fmt: skip

    straight = run(None)
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "ck.pt", armed=True)
    resumed = run(tmp_path / "ck.pt")
    for name, aff in straight.items():
        np.testing.assert_array_equal(resumed[name].values, aff.values)
        np.testing.assert_array_equal(resumed[name].snapshots, aff.snapshots)
        assert resumed[name].snapshot_epochs == aff.snapshot_epochs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_probes_on_cuda_change_neither_training_nor_the_cuda_rng():
    def run(with_probes):
        torch.manual_seed(0)
        model = Net(width=8).double().cuda()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        x, y = _data(n=40)
        loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=8, shuffle=True)
        hooks = PROBES["all"](model) if with_probes else []
        train_loop(model, loader, epochs=2, optimizer=opt, hooks=hooks, progress=False)
        for h in hooks:
            if isinstance(h, RepCosineProbe):
                h.detach()
        return model.state_dict(), opt.state_dict(), torch.cuda.get_rng_state(), hooks

    plain, probed = run(False), run(True)
    for k in range(3):
        assert _same(plain[k], probed[k])
    assert np.isfinite(probed[3][0].compute().values).any()
