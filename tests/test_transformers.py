"""The Hugging Face ``Trainer`` integration, with a tiny randomly initialised BERT on CPU.

References that could disagree: a recorder fed in a plain loop with the logits, labels and ids
that a separate tap saw in the same run; the same training without the callback (parameters
compared bitwise); an uninterrupted run against a checkpointed and resumed one; Cartography's
reading rules (tests/test_cartography_export.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip(
    "transformers", reason="needs the transformers extra: pip install 'stgmtl[transformers]'"
)
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")

from hf_tiny import Tap, Tokens, tiny_bert, training_args  # noqa: E402
from test_cartography_export import cartography_metrics, read_cartography  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from stgmtl import DataMapRecorder  # noqa: E402
from stgmtl.integrations.transformers import (  # noqa: E402
    CHECKPOINT_FILE,
    DataMapCallback,
    record_datamaps,
)

N, T, C, EPOCHS = 30, 5, 3, 3


def _replay(events, recorder, multiclass=False):
    """A plain loop: feed ``recorder`` what the tap saw, batch by batch, epoch by epoch."""
    for event in events:
        if event[0] == "epoch":
            recorder.end_epoch()
            continue
        _, logits, labels, idx = event
        mask = None
        if multiclass:
            logits, labels = logits[:, None, :], labels[:, None]
            if (labels == -100).any():
                mask = labels != -100
                labels = torch.where(mask, labels, 0)
        recorder.update(logits, labels, torch.as_tensor(idx), mask=mask)
    return recorder.compute()


def _assert_same_maps(a, b):
    fa, fb = a.fields(), b.fields()
    assert sorted(fa) == sorted(fb)
    for key, value in fa.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, fb[key], err_msg=key)
        else:
            assert value == fb[key], key


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _recorder(kind="multilabel"):
    if kind == "multilabel":
        return DataMapRecorder(T, N, snapshot_epochs=[1, 2, 3], snapshot_kind="epoch")
    return DataMapRecorder(1, N, task_type="multiclass", snapshot_epochs=[1, 2, 3])


def test_multilabel_maps_equal_a_plain_loop_and_training_is_unchanged(tmp_path, single_thread):
    model = tiny_bert(T, "multilabel")
    tap = Tap(model)
    callback = DataMapCallback(_recorder(), save_path=tmp_path / "maps")
    args = training_args(tmp_path / "a", gradient_accumulation_steps=2, eval_strategy="epoch",
                         remove_unused_columns=False)  # fmt: skip
    data = Tokens(N, T, "multilabel")
    # evaluating on the training samples: a recorded evaluation would raise the counts
    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                      callbacks=[tap, callback])  # fmt: skip
    trainer.train()
    maps = callback.datamaps
    _assert_same_maps(maps, _replay(tap.events, _recorder()))
    assert (maps.count == EPOCHS).all()  # every micro-batch once, no evaluation batch
    assert np.abs(np.diff(maps.snapshot_confidence, axis=0)).max() > 1e-2  # it trained
    assert trainer.evaluate()["eval_loss"] > 0  # the ids never reach forward after training

    # the same training without the callback (and without the index column): bitwise equal
    plain = tiny_bert(T, "multilabel")
    args = training_args(tmp_path / "b", gradient_accumulation_steps=2, eval_strategy="epoch")
    Trainer(model=plain, args=args, train_dataset=Tokens(N, T, "multilabel", with_index=False),
            eval_dataset=Tokens(N, T, "multilabel", with_index=False)).train()  # fmt: skip
    mine, theirs = _params(model), _params(plain)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)

    # saved by rank 0, and readable by Cartography's own reader
    from stgmtl import DataMaps

    _assert_same_maps(DataMaps.load(tmp_path / "maps"), maps)
    root = maps.to_cartography(tmp_path / "carto")
    for t, name in enumerate(maps.task_names):
        metrics = cartography_metrics(read_cartography(root / name))
        conf = np.array([metrics[i][0] for i in range(N)])
        np.testing.assert_allclose(conf, maps.confidence[t], rtol=0, atol=1e-12)


def test_multiclass_maps_equal_a_plain_loop_with_unused_columns_removed(tmp_path, single_thread):
    model = tiny_bert(C, "multiclass")
    tap = Tap(model)
    args = training_args(tmp_path, per_device_train_batch_size=7)  # remove_unused_columns=True
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(N, C, "multiclass"),
                      callbacks=[tap])  # fmt: skip
    callback = record_datamaps(trainer, _recorder("multiclass"))
    trainer.train()
    maps = callback.datamaps
    _assert_same_maps(maps, _replay(tap.events, _recorder("multiclass"), multiclass=True))
    ignored = np.arange(N) % 7 == 0  # labels -100: recorded as missing
    assert (maps.count[0, ignored] == 0).all() and (maps.count[0, ~ignored] == EPOCHS).all()
    assert maps.num_classes == C


def test_missing_index_column_says_how_to_add_one(tmp_path, single_thread):
    model = tiny_bert(T, "multilabel")
    trainer = Trainer(model=model, args=training_args(tmp_path, num_train_epochs=1),
                      train_dataset=Tokens(N, T, "multilabel", with_index=False))  # fmt: skip
    record_datamaps(trainer, _recorder())
    with pytest.raises(ValueError, match=r"no sample ids under 'idx'.*with_indices=True"):
        trainer.train()
    # the column is there but the Trainer drops it: the message names the two ways to keep it
    trainer = Trainer(model=tiny_bert(T, "multilabel"),
                      args=training_args(tmp_path, num_train_epochs=1),
                      train_dataset=Tokens(N, T, "multilabel"),
                      callbacks=[DataMapCallback(_recorder())])  # fmt: skip
    with pytest.raises(ValueError, match=r"record_datamaps\(trainer, recorder\).*remove_unused"):
        trainer.train()


class Stop(TrainerCallback):
    """Ends training after ``step`` optimizer steps, like a killed job."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


@pytest.mark.parametrize("stop", [4, 6])  # at an epoch's last step (4 per epoch), mid-epoch
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path, single_thread, stop):
    n, data = 32, Tokens(32, T, "multilabel")

    def recorder():
        return DataMapRecorder(T, n, snapshot_epochs=[1, 2, 3], snapshot_kind="epoch")

    whole = tiny_bert(T, "multilabel")
    trainer = Trainer(model=whole, args=training_args(tmp_path / "whole"), train_dataset=data)
    reference = record_datamaps(trainer, recorder())
    trainer.train()

    out = tmp_path / "parts"
    args = training_args(out, save_strategy="steps", save_steps=stop)
    first = Trainer(model=tiny_bert(T, "multilabel"), args=args, train_dataset=data,
                    callbacks=[Stop(stop)])  # fmt: skip
    record_datamaps(first, recorder())
    first.train()
    assert (out / f"checkpoint-{stop}" / CHECKPOINT_FILE).is_file()
    resumed = tiny_bert(T, "multilabel", seed=5)  # weights come from the checkpoint
    second = Trainer(model=resumed, args=args, train_dataset=data)
    callback = record_datamaps(second, recorder())
    second.train(resume_from_checkpoint=True)
    _assert_same_maps(callback.datamaps, reference.datamaps)
    assert (callback.datamaps.count == EPOCHS).all()
    mine, theirs = _params(resumed), _params(whole)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_resume_without_the_recorder_state_is_refused(tmp_path, single_thread):
    data, out = Tokens(N, T, "multilabel"), tmp_path / "run"
    args = training_args(out, save_strategy="steps", save_steps=2)
    # a checkpoint written without the callback
    Trainer(model=tiny_bert(T, "multilabel"), args=args, train_dataset=data,
            callbacks=[Stop(2)]).train()  # fmt: skip
    trainer = Trainer(model=tiny_bert(T, "multilabel"), args=args, train_dataset=data)
    record_datamaps(trainer, _recorder())
    with pytest.raises(FileNotFoundError, match="resume_from="):
        trainer.train(resume_from_checkpoint=True)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="recorder: expected a DataMapRecorder"):
        DataMapCallback(object())
    with pytest.raises(TypeError, match="index_column: expected a non-empty str"):
        DataMapCallback(_recorder(), index_column="")


def _one_process(events_per_rank, n):
    """One recorder fed every process's forwards in the global batch order, each sample once
    per epoch (the later occurrences are the repeats that even out the processes' batches)."""
    recorder = DataMapRecorder(T, n, snapshot_epochs=[1, 2], snapshot_kind="epoch")
    epochs = [_split_epochs(events) for events in events_per_rank]
    for e in range(len(epochs[0])):
        seen: set[int] = set()
        for k in range(len(epochs[0][e])):
            for rank_epochs in epochs:  # global batch k * world + rank
                _, logits, labels, idx = rank_epochs[e][k]
                valid = torch.tensor([int(i) not in seen for i in idx])
                seen.update(int(i) for i in idx)
                recorder.update(logits, labels, torch.as_tensor(idx), valid=valid)
        recorder.end_epoch()
    return recorder.compute()


def _split_epochs(events):
    epochs, current = [], []
    for event in events:
        if event[0] == "epoch":
            epochs.append(current)
            current = []
        else:
            current.append(event)
    return epochs


def _torchrun(*args) -> str:
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(tests.parent), str(tests), env.get("PYTHONPATH")) if p
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={port}", str(tests / "hf_ddp_worker.py"),
           *map(str, args)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_and_resume(tmp_path):
    from stgmtl import DataMaps

    assert "rank 1 of 2 done" in _torchrun(tmp_path)

    events = [torch.load(tmp_path / f"events{r}.pt", weights_only=False) for r in range(2)]
    ref = _one_process(events, 30)
    maps = DataMaps.load(tmp_path / "maps_run")
    assert (maps.count == 2).all()  # the repeated samples are not counted twice
    for r in range(2):  # every process ends with the merged maps
        np.testing.assert_array_equal(
            torch.load(tmp_path / f"maps{r}.pt", weights_only=False)["count"], maps.count
        )
    for key, value in ref.fields().items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":  # merge order: rounding
            np.testing.assert_allclose(getattr(maps, key), value, rtol=0, atol=1e-12)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(maps, key), value, err_msg=key)
    # resumed on two processes mid-epoch (step 3 of 4): rank 0 takes over the merged state
    checkpoint = tmp_path / "run" / "checkpoint-3"
    assert (checkpoint / CHECKPOINT_FILE).is_file()
    assert "rank 1 resumed" in _torchrun(tmp_path, checkpoint)
    resumed = DataMaps.load(tmp_path / "maps_resumed")
    for key, value in maps.fields().items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            np.testing.assert_allclose(getattr(resumed, key), value, rtol=0, atol=1e-12)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(resumed, key), value, err_msg=key)
