"""Tokenised loaders with dynamic padding (a batch is padded to its own longest example)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase


def make_loader(tokenizer: PreTrainedTokenizerBase, texts: list[tuple[str, ...]],
                labels: list, batch_size: int, max_length: int, shuffle: bool,
                seed: int = 0) -> DataLoader:
    columns = list(zip(*texts))
    encoded = tokenizer(*columns, truncation=True, max_length=max_length)
    regression = isinstance(labels[0], float)
    features = [
        {**{k: v[i] for k, v in encoded.items()},
         "labels": float(labels[i]) if regression else int(labels[i])}
        for i in range(len(labels))
    ]
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(features, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=DataCollatorWithPadding(tokenizer))
