"""Batches of examples of similar length, so that dynamic padding pads little.

With random batches every row is padded to the longest of its batch: on RTE at 128 tokens a
random batch of 16 holds 1.9 tokens for every real one, and a step's cost follows the padded
size. Grouping by length (the idea of Hugging Face's ``group_by_length``) brings that to 1.02
while keeping the epoch random:

1. shuffle the examples;
2. cut the shuffled order into windows of ``window`` batches and sort each window by length;
3. cut each window into batches, and shuffle the order of the full batches.

Every example is taken once per epoch, the batch count equals plain batching's, and the one
short batch (if any) comes last, as it does there. The order is drawn from ``generator`` when
iteration starts, so reseeding it before an epoch replays that epoch exactly (resume relies on
this).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

DEFAULT_WINDOW = 50  # batches per sorted window: wide enough to pad little, small enough to mix


class LengthGroupedBatches(Sampler[list[int]]):
    """Index batches for ``DataLoader(batch_sampler=...)``; see the module docstring."""

    def __init__(self, lengths: Sequence[int], batch_size: int,
                 generator: torch.Generator | None = None, window: int = DEFAULT_WINDOW):
        if batch_size < 1 or window < 1:
            raise ValueError(f"batch_size and window must be >= 1, got {batch_size}, {window}")
        self.lengths = list(lengths)
        self.batch_size, self.window, self.generator = batch_size, window, generator
        self.drop_last = False  # read by Accelerate when it shards batches across processes

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        span = self.batch_size * self.window
        full, short = [], []
        for start in range(0, len(order), span):
            # sorted() is stable, so ties keep the shuffled order
            chunk = sorted(order[start:start + span], key=lambda i: -self.lengths[i])
            for j in range(0, len(chunk), self.batch_size):
                batch = chunk[j:j + self.batch_size]
                (full if len(batch) == self.batch_size else short).append(batch)
        # Only the last window can leave a short batch: earlier windows hold whole batches.
        mixed = torch.randperm(len(full), generator=self.generator).tolist()
        yield from (full[i] for i in mixed)
        yield from short


def by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Fixed batches in descending length order: for evaluation, whose metrics do not depend on
    the order of the examples."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[j:j + batch_size] for j in range(0, len(order), batch_size)]
