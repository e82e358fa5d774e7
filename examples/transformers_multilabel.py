"""Data maps from a Hugging Face ``Trainer`` run: a multi-label text classifier, then task groups.

A small BERT built from a config (randomly initialised: nothing is downloaded) learns 12 labels
of a synthetic text set: sentences of filler words with a few words of three topics (sport,
cooking, space). Each topic gives four labels, noisy copies of "the sentence is about the
topic" (the topic's word count plus noise above a threshold), so the labels of one topic find
the same sentences hard. ``record_datamaps`` adds the recording to the ``Trainer`` in one line
and the grouping recovers the three topics::

    python examples/transformers_multilabel.py --out transformers_output

With a real model and data set, replace ``make_texts`` / ``tokenize`` / ``make_model`` with your
tokenizer and ``AutoModelForSequenceClassification.from_pretrained(name,
problem_type="multi_label_classification", num_labels=...)``; see docs/guide/transformers.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from stgmtl import DataMapRecorder, group
from stgmtl.integrations.transformers import record_datamaps

TOPICS = {
    "sport": "goal match team score coach league ball season".split(),
    "cooking": "bread soup spice oven recipe cheese sauce dinner".split(),
    "space": "orbit rocket planet comet launch star lunar probe".split(),
}
FILLER = "the a of and to in is on that with was for it as at by this from".split()
LABELS_PER_TOPIC, WORDS = 4, 10
VOCAB = ["[PAD]", "[CLS]", *FILLER, *(w for words in TOPICS.values() for w in words)]


def make_texts(n: int, seed: int = 0) -> tuple[list[str], torch.Tensor, list[str]]:
    """``n`` sentences and their ``(n, 12)`` 0/1 labels, with the label names."""
    g = torch.Generator().manual_seed(seed)
    texts, counts = [], torch.zeros(n, len(TOPICS))
    for i in range(n):
        words = [FILLER[j] for j in torch.randint(0, len(FILLER), (WORDS,), generator=g)]
        slots = torch.randperm(WORDS, generator=g).tolist()
        for t, topic in enumerate(TOPICS.values()):
            k = int(torch.randint(0, 4, (1,), generator=g))  # 0..3 words of this topic
            for _ in range(k):
                words[slots.pop()] = topic[int(torch.randint(0, len(topic), (1,), generator=g))]
            counts[i, t] = k
        texts.append(" ".join(words))
    labels, names = [], []
    for t, topic in enumerate(TOPICS):
        for j in range(LABELS_PER_TOPIC):
            labels.append(counts[:, t] + 0.5 * torch.randn(n, generator=g) > 1.5)
            names.append(f"{topic}_{j}")
    return texts, torch.stack(labels, dim=1).float(), names


def tokenize(texts: list[str]) -> torch.Tensor:
    """A word-level tokenizer over the known vocabulary: ``[CLS]`` then one id per word."""
    ids = {w: i for i, w in enumerate(VOCAB)}
    return torch.tensor([[1, *(ids[w] for w in text.split())] for text in texts])


class TextSet(Dataset):
    """Tokenised examples as the ``Trainer`` wants them, each with its position ``idx``."""

    def __init__(self, input_ids: torch.Tensor, labels: torch.Tensor) -> None:
        self.input_ids, self.labels = input_ids, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i], "idx": i}


def make_model(num_labels: int, seed: int = 0) -> BertForSequenceClassification:
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0,
                        max_position_embeddings=WORDS + 1, num_labels=num_labels,
                        problem_type="multi_label_classification")  # fmt: skip
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("transformers_output"))
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args()

    texts, labels, names = make_texts(args.samples)
    train_set = TextSet(tokenize(texts), labels)
    model = make_model(len(names))
    training = TrainingArguments(
        output_dir=str(args.out / "trainer"), num_train_epochs=args.epochs,
        per_device_train_batch_size=32, learning_rate=3e-3, warmup_steps=50, save_strategy="no",
        logging_strategy="epoch", report_to=[], use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = Trainer(model=model, args=training, train_dataset=train_set)

    # the one line: a recorder sized for the labels and samples, attached to the trainer
    recorder = DataMapRecorder(len(names), len(train_set), task_names=names,
                               snapshot_epochs=range(1, args.epochs + 1))  # fmt: skip
    callback = record_datamaps(trainer, recorder, save_path=args.out / "datamaps")
    trainer.train()

    groups = group(callback.datamaps, k=len(TOPICS), random_state=0)
    for j, members in enumerate(groups.groups):
        print(f"group {j}: {', '.join(members)}")
    groups.save(args.out / "groups")
    print(f"data maps and groups are in {args.out}/")


if __name__ == "__main__":
    main()
