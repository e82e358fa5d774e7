"""A tiny randomly initialised BERT and a token data set with planted labels, for the
``transformers`` integration tests (tests/test_transformers.py, tests/hf_ddp_worker.py)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, TrainerCallback

VOCAB, LENGTH = 24, 6


class Tokens(Dataset):
    """Token sequences whose labels depend on which tokens they hold (learnable).

    ``kind="multilabel"``: ``tasks`` 0/1 labels (float), label ``t`` = token ``t`` present;
    ``kind="multiclass"``: one class id in ``[0, tasks)`` (the first token modulo ``tasks``), and
    ``-100`` (ignored) for every seventh sample.
    """

    def __init__(self, n: int, tasks: int, kind: str, *, with_index: bool = True) -> None:
        g = torch.Generator().manual_seed(11)
        self.ids = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
        if kind == "multilabel":
            self.labels = (self.ids[:, :, None] == torch.arange(tasks)).any(1).float()
        else:
            self.labels = self.ids[:, 0] % tasks
            self.labels[::7] = -100
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.ids[i], "labels": self.labels[i]}
        if self.with_index:
            item["idx"] = i
        return item


def tiny_bert(labels: int, kind: str, seed: int = 0) -> BertForSequenceClassification:
    problem = (
        "multi_label_classification" if kind == "multilabel" else "single_label_classification"
    )
    config = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, num_labels=labels,
                        max_position_embeddings=LENGTH, problem_type=problem)  # fmt: skip
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def training_args(out, **overrides):
    from transformers import TrainingArguments

    settings = dict(output_dir=str(out), per_device_train_batch_size=8, num_train_epochs=3,
                    learning_rate=3e-3, lr_scheduler_type="constant", report_to=[],
                    use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True,
                    seed=0, dataloader_num_workers=0)  # fmt: skip
    settings.update(overrides)
    return TrainingArguments(**settings)


class Tap(TrainerCallback):
    """Keeps what each training forward saw (ids, labels, logits) and the epoch ends.

    Its hooks go on the model before the ``Trainer`` (and so before the integration's hooks),
    so it sees the index column before the integration removes it; it never changes anything.
    """

    def __init__(self, model) -> None:
        self.events: list = []
        self._pending = None
        model.register_forward_pre_hook(self._pre, with_kwargs=True)
        model.register_forward_hook(self._post)

    def _pre(self, module, args, kwargs):
        self._pending = (kwargs.get("idx"), kwargs["labels"].clone()) if module.training else None

    def _post(self, module, args, output):
        if self._pending is not None:
            idx, labels = self._pending
            self.events.append(("batch", output.logits.detach().clone(), labels, idx))
        self._pending = None

    def on_epoch_end(self, args, state, control, **kwargs):
        self.events.append(("epoch",))
