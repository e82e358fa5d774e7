"""Write the saved-format fixtures of tests/test_formats.py (run once per format release).

The files under ``tests/data/formats_v0.2/`` were written by this script with stgmtl 0.2.0
(recorder state version 2, float64 layout; DataMaps format version 2), at commit d867627, before
the compact state layout existed: ``python tests/data/make_format_fixtures.py``. They are kept
as they are so that every later release is tested on files the earlier one saved.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stgmtl import __version__  # noqa: E402
from stgmtl.record import DataMapRecorder, IndexedDataset, fit_datamaps  # noqa: E402

OUT = Path(__file__).with_name(f"formats_v{__version__.rsplit('.', 1)[0]}")
T, N = 4, 10


def _stats(dm):
    return {
        k: getattr(dm, k)
        for k in (
            "confidence",
            "variability",
            "correctness",
            "count",
            "targets",
            "snapshot_confidence",
            "snapshot_variability",
            "snapshot_correctness",
        )
    }


def _binary() -> DataMapRecorder:
    g = torch.Generator().manual_seed(0)
    rec = DataMapRecorder(T, N, snapshot_epochs=[1, 3], snapshot_kind="epoch", ddof=1)
    for epoch in range(3):
        for _b in range(3):
            idx = torch.randperm(N, generator=g)[:6]
            z = torch.randn(6, T, generator=g) * 4
            z[0, 0] = 40.0  # p at 0 / 1
            y = (torch.arange(6 * T).view(6, T) + idx.view(-1, 1)) % 2
            m = torch.rand(6, T, generator=g) > 0.2
            rec.update(z, y.float(), idx, mask=m)
        if epoch < 2:
            rec.end_epoch()  # the third epoch stays open: a carried "epoch" snapshot
    return rec


def _multiclass() -> DataMapRecorder:
    g = torch.Generator().manual_seed(1)
    rec = DataMapRecorder(3, N, task_type="multiclass", snapshot_epochs=[1],
                          probe_indices=[1, 4, 5, 8])  # fmt: skip
    for _ in range(2):
        idx = torch.randperm(N, generator=g)
        rec.update(torch.randn(N, 3, 5, generator=g), torch.randint(0, 5, (N, 3), generator=g),
                   idx)  # fmt: skip
        rec.end_epoch()
    return rec


class _Stop:
    def __init__(self, loader, after):
        self.loader, self.after, self.epoch, self.dataset = loader, after, 0, loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.epoch += 1
        if self.epoch > self.after:
            raise KeyboardInterrupt
        return iter(self.loader)


def _fit_pieces():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g)
    y = (x @ torch.randn(6, 3, generator=g) > 0).float()
    ds = IndexedDataset(TensorDataset(x, y))
    torch.manual_seed(123)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    return ds, model


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for name, rec in (("binary", _binary()), ("multiclass", _multiclass())):
        torch.save(rec.state_dict(), OUT / f"recorder_{name}.pt")
        np.savez(OUT / f"recorder_{name}_expected.npz", **_stats(rec.compute()))
        callback_state = {"recorder": rec.state_dict(), "open_epoch": None, "merged_over": 1}
        torch.save(callback_state, OUT / f"callback_{name}.pt")
    _binary().compute().save(OUT / "datamaps_binary")
    # fit_datamaps: a run stopped after epoch 2 of 3 (its checkpoint), and the straight result
    kw = dict(lr=1e-2, snapshot_epochs=[2, 3], progress=False)
    ds, model = _fit_pieces()
    loader = DataLoader(ds, batch_size=16, shuffle=True)
    straight = fit_datamaps(loader, model, epochs=3, **kw)
    np.savez(OUT / "fit_expected.npz", **_stats(straight))
    ds, model = _fit_pieces()
    try:
        fit_datamaps(_Stop(DataLoader(ds, batch_size=16, shuffle=True), 2), model, epochs=3,
                     checkpoint_path=OUT / "fit_checkpoint.pt", **kw)  # fmt: skip
    except KeyboardInterrupt:
        pass
    print(f"wrote {sorted(p.name for p in OUT.iterdir())}")


if __name__ == "__main__":
    main()
