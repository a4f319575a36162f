"""A run's data: the task's examples (GLUE or own files) and tokenised loaders."""

from __future__ import annotations

from functools import partial

import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from diffprune.data.files import load_files
from diffprune.data.glue import get_task, load_glue
from diffprune.data.length_groups import LengthGroupedBatches, by_length
from diffprune.data.task import Split, TaskData
from diffprune.data.tokenize import encode, pad
from diffprune.training.settings import TrainSettings


def load_task_data(settings: TrainSettings) -> TaskData:
    """The run's task: own files when given, else the GLUE task; cut to the sample limits."""
    if settings.train_file or settings.dev_file:
        if not (settings.train_file and settings.dev_file):
            raise ValueError("own data needs both --train-file and --dev-file")
        data = load_files(settings.train_file, settings.dev_file, settings.text_columns,
                          settings.label_column, settings.problem_type, settings.task_name,
                          settings.quoting)
    else:
        data = load_glue(get_task(settings.task), settings.data_dir)
    data.train = data.train.head(settings.max_train_samples)
    data.dev = {k: v.head(settings.max_eval_samples) for k, v in data.dev.items()}
    return data


def make_loader(tokenizer: PreTrainedTokenizerBase, split: Split, batch_size: int,
                max_length: int, shuffle: bool, generator: torch.Generator | None = None,
                group_by_length: bool = True) -> DataLoader:
    """Batches padded to their own longest example (dynamic padding).

    A shuffled loader groups examples of similar length unless ``group_by_length`` is off
    (``data/length_groups.py``); an unshuffled one (evaluation) batches in length order, which
    no metric depends on.
    """
    regression = isinstance(split.labels[0], float)
    features = [
        {**f, "labels": float(y) if regression else int(y)}
        for f, y in zip(encode(tokenizer, split.texts, max_length), split.labels)
    ]
    collate = partial(pad, tokenizer)
    lengths = [len(f["input_ids"]) for f in features]
    if not shuffle:
        return DataLoader(features, batch_sampler=by_length(lengths, batch_size),
                          collate_fn=collate)
    if group_by_length:
        # The loader gets the generator too: it draws its workers' base seed from it, which
        # would otherwise come from the global RNG and break resume's replay of the run.
        return DataLoader(features, collate_fn=collate, generator=generator,
                          batch_sampler=LengthGroupedBatches(lengths, batch_size, generator))
    return DataLoader(features, batch_size=batch_size, shuffle=True, generator=generator,
                      collate_fn=collate)
