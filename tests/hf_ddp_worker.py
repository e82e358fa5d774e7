"""One process of the 2-process ``torchrun`` test of the transformers integration.

Trains the tiny BERT of hf_tiny.py with a ``Trainer`` (gloo, CPU), records data maps with the
integration (checkpoints mid-run, so the merged state is written under DDP) and saves, per
process, what each training forward saw, for tests/test_transformers.py to replay.
Usage: ``torchrun --nproc_per_node=2 tests/hf_ddp_worker.py OUT [CHECKPOINT]``; with a
checkpoint folder of an earlier run, it resumes from there into ``OUT/resumed`` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from hf_tiny import Tap, Tokens, tiny_bert, training_args
from transformers import Trainer

from stgmtl import DataMapRecorder
from stgmtl.integrations.transformers import record_datamaps

N, T, EPOCHS, BATCH = 30, 5, 2, 4  # 30 = 3 rounds of 2 x 4 + 6: accelerate repeats 2 samples


def main(out: Path, checkpoint: Path | None) -> None:
    torch.set_num_threads(1)
    model = tiny_bert(T, "multilabel", seed=0 if checkpoint is None else 5)
    tap = Tap(model)
    run = "run" if checkpoint is None else "resumed"
    args = training_args(out / run, per_device_train_batch_size=BATCH,
                         num_train_epochs=EPOCHS, save_strategy="steps", save_steps=3)  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(N, T, "multilabel"),
                      callbacks=[tap])  # fmt: skip
    recorder = DataMapRecorder(T, N, snapshot_epochs=[1, 2], snapshot_kind="epoch")
    callback = record_datamaps(trainer, recorder, save_path=out / f"maps_{run}",
                               resume_from=checkpoint)  # fmt: skip
    trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    rank = dist.get_rank()
    if checkpoint is not None:
        print(f"rank {rank} resumed", flush=True)
        return
    torch.save(tap.events, out / f"events{rank}.pt")
    torch.save(callback.datamaps.fields(), out / f"maps{rank}.pt")
    print(f"rank {rank} of {dist.get_world_size()} done", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
