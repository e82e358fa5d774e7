"""Cost of the ``transformers`` integration per ``Trainer`` training step, at 100 labels.

A BERT built from a config (random weights) with a 100-label multi-label head trains with
``transformers.Trainer`` on random token sequences, N = 10,000 samples, one optimizer step per
batch. Short runs with and without :func:`stgmtl.integrations.transformers.record_datamaps`
alternate (rotating which comes first in each round); a timing callback measures every step
(``on_step_begin`` to ``on_step_end``: forward, backward, optimizer), the first steps of each
run are dropped as warm-up. Estimates of "step with the callback / step without":

``ratio_of_medians``
    median step with / median step without, over all rounds.
``paired_ratio``
    one more run per round with the callback, recording on every other step only: the median
    over pairs of neighbouring steps of (step recorded / step not recorded). Neighbouring steps
    see the same load of a shared machine, so slow drifts cancel.
``ratio_from_hook_time``
    1 + median time inside the callback's two model hooks per step (ids taken out, labels
    noted, logits recorded) / median step without: steadier, blind to indirect costs (the
    index column's collation). ``median_recorder_update_ms`` is the part of the hook time spent
    in ``DataMapRecorder.update``.

Models: ``small`` (hidden 128, 2 layers, sequences of 64, batch 32) and ``tiny`` (hidden 32,
1 layer, sequences of 16, batch 32: the model does almost nothing, the worst case for the
ratio). Run (under the shared lock on a shared machine)::

    PYTHONPATH=. python benchmarks/transformers_callback.py
    PYTHONPATH=. python benchmarks/transformers_callback.py --models small --rounds 5

Writes benchmarks/results/transformers_callback.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers import __version__ as transformers_version

from stgmtl import DataMapRecorder
from stgmtl.integrations.transformers import record_datamaps

MODELS = {  # hidden, layers, heads, sequence length
    "small": (128, 2, 2, 64),
    "tiny": (32, 1, 2, 16),
}
VOCAB, BATCH = 1000, 32


class Tokens(Dataset):
    def __init__(self, n: int, labels: int, length: int, with_index: bool) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, VOCAB, (n, length), generator=g)
        self.labels = (torch.rand(n, labels, generator=g) < 0.2).float()
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.ids[i], "labels": self.labels[i]}
        if self.with_index:
            item["idx"] = i
        return item


class StepTimer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


class Alternate(TrainerCallback):
    """Records on even steps only (benchmark use of the callback's private switch)."""

    def __init__(self, callback) -> None:
        self.callback = callback
        self.recorded: list[bool] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.callback._training = state.global_step % 2 == 0
        self.recorded.append(self.callback._training)


def _paired(times: list[float], recorded: list[bool], warmup: int) -> list[float]:
    """step recorded / the next step (not recorded), for each pair after the warm-up."""
    ratios = []
    for i in range(warmup + warmup % 2, len(times) - 1, 2):
        assert recorded[i] and not recorded[i + 1]
        ratios.append(times[i] / times[i + 1])
    return ratios


def _timed(fn, total: list[float]):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            total.append(time.perf_counter() - start)

    return wrapper


def one_run(model_name: str, labels: int, n: int, steps: int, record: bool | str, out: Path):
    """Step times of one short run, the time inside the callback's hooks per step and, for
    ``record="alternate"``, which steps were recorded."""
    hidden, layers, heads, length = MODELS[model_name]
    config = BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden,
                        max_position_embeddings=length, num_labels=labels,
                        problem_type="multi_label_classification")  # fmt: skip
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=BATCH,
                             max_steps=steps, report_to=[], use_cpu=True, save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, seed=0)  # fmt: skip
    timer = StepTimer()
    trainer = Trainer(model=model, args=args, callbacks=[timer],
                      train_dataset=Tokens(n, labels, length, with_index=bool(record)))  # fmt: skip
    hook_times: list[float] = []
    update_times: list[float] = []
    alternate = None
    if record:
        recorder = DataMapRecorder(labels, n)
        callback = record_datamaps(trainer, recorder)
        callback.detach()  # re-attach with timed hooks
        callback._before_forward = _timed(callback._before_forward, hook_times)  # type: ignore[method-assign]
        callback._after_forward = _timed(callback._after_forward, hook_times)  # type: ignore[method-assign]
        recorder.update = _timed(recorder.update, update_times)  # type: ignore[method-assign]
        callback.attach(trainer.model)
        if record == "alternate":
            alternate = Alternate(callback)
            trainer.add_callback(alternate)
    trainer.train()
    per_step = [a + b for a, b in zip(hook_times[::2], hook_times[1::2], strict=True)]
    recorded = None if alternate is None else alternate.recorded
    return timer.times, per_step, update_times, recorded


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["small", "tiny"], choices=sorted(MODELS))
    p.add_argument("--labels", type=int, default=100)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--out", default="benchmarks/results/transformers_callback.json")
    a = p.parse_args()
    rows = []
    work = Path(a.out).parent / "transformers_callback_runs"
    for name in a.models:
        steps: dict[bool, list[float]] = {False: [], True: []}
        hooks: list[float] = []
        updates: list[float] = []
        pairs: list[float] = []
        for r in range(a.rounds):
            for record in (r % 2 == 0, r % 2 == 1):
                t, h, u, _ = one_run(name, a.labels, a.samples, a.steps, record, work)
                steps[record] += t[a.warmup :]
                hooks += h[a.warmup :]
                updates += u[a.warmup :]
            t, _, _, recorded = one_run(name, a.labels, a.samples, 2 * a.steps, "alternate", work)
            pairs += _paired(t, recorded, a.warmup)
        without, with_ = statistics.median(steps[False]), statistics.median(steps[True])
        hook = statistics.median(hooks)
        rows.append({
            "model": name, "labels": a.labels, "samples": a.samples, "batch": BATCH,
            "steps_measured": len(steps[True]), "median_step_without_ms": 1e3 * without,
            "median_step_with_ms": 1e3 * with_, "median_hook_ms": 1e3 * hook,
            "median_recorder_update_ms": 1e3 * statistics.median(updates),
            "ratio_of_medians": with_ / without, "paired_ratio": statistics.median(pairs),
            "pairs": len(pairs), "ratio_from_hook_time": 1 + hook / without,
        })  # fmt: skip
        row = rows[-1]
        print(f"{name:6s} T={a.labels}  step without {row['median_step_without_ms']:.2f} ms, "
              f"with {row['median_step_with_ms']:.2f} ms, hooks {row['median_hook_ms']:.3f} ms"
              f"  ratio {row['ratio_of_medians']:.4f} (medians), {row['paired_ratio']:.4f} "
              f"(paired), {row['ratio_from_hook_time']:.4f} (hook time)", flush=True)  # fmt: skip
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers_version, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "machine": platform.machine()}  # fmt: skip
    Path(a.out).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
