"""Length-grouped batches: every example once an epoch, little padding, replayable order."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprune.data.length_groups import LengthGroupedBatches, by_length
from diffprune.data.task import Split
from diffprune.training.data import make_loader

lengths_st = st.lists(st.integers(1, 128), min_size=1, max_size=400)


def _epoch(lengths, batch_size, window, seed):
    generator = torch.Generator().manual_seed(seed)
    return list(LengthGroupedBatches(lengths, batch_size, generator, window))


@settings(max_examples=150, deadline=None)
@given(lengths=lengths_st, batch_size=st.integers(1, 40), window=st.integers(1, 8),
       seed=st.integers(0, 2**31 - 1))
def test_an_epoch_takes_every_example_once_in_plain_batchings_shape(lengths, batch_size,
                                                                     window, seed):
    batches = _epoch(lengths, batch_size, window, seed)
    assert len(batches) == len(LengthGroupedBatches(lengths, batch_size)) \
        == -(-len(lengths) // batch_size)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    # every batch full but the last, as with DataLoader(batch_size=..., drop_last=False)
    assert all(len(b) == batch_size for b in batches[:-1])
    assert len(batches[-1]) == len(lengths) - batch_size * (len(batches) - 1)


@settings(max_examples=150, deadline=None)
@given(lengths=lengths_st, batch_size=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_batches_of_one_window_hold_disjoint_length_ranges(lengths, batch_size, seed):
    """Within a sorted window no batch's lengths interleave with another's: the partition that
    pads least among those of the window into batches of this size."""
    window = -(-len(lengths) // batch_size)  # the whole epoch is one window
    ranges = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b))
                    for b in _epoch(lengths, batch_size, window, seed))
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(ranges, ranges[1:]))


@settings(max_examples=50, deadline=None)
@given(lengths=lengths_st, batch_size=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_reseeding_replays_an_epoch(lengths, batch_size, seed):
    assert _epoch(lengths, batch_size, 4, seed) == _epoch(lengths, batch_size, 4, seed)


def test_epochs_differ_and_grouping_pads_less_than_random_batches():
    lengths = torch.randint(5, 129, (2000,), generator=torch.Generator().manual_seed(0)).tolist()
    generator = torch.Generator().manual_seed(1)
    sampler = LengthGroupedBatches(lengths, 16, generator)
    first, second = list(sampler), list(sampler)
    assert first != second  # the generator moves on: each epoch its own order

    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    random_order = torch.randperm(2000, generator=generator).tolist()
    random_batches = [random_order[j:j + 16] for j in range(0, 2000, 16)]
    # uniform lengths: random batches pad to about 1.6x the real tokens, grouped ones to ~1.03x
    assert padded(first) < 1.1 * sum(lengths) < 1.4 * sum(lengths) < padded(random_batches)


@settings(max_examples=100, deadline=None)
@given(lengths=lengths_st, batch_size=st.integers(1, 70))
def test_evaluation_batches_are_in_descending_length_order(lengths, batch_size):
    batches = by_length(lengths, batch_size)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert all(len(b) == batch_size for b in batches[:-1])


class _WordTokenizer:
    """One id per word: enough for make_loader's encode and pad."""

    model_max_length = 512

    def __call__(self, texts, truncation=True, max_length=512):
        ids = [[1 + len(w) for w in t.split()][:max_length] for t in texts]
        return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}

    def pad(self, rows, return_tensors="pt"):
        width = max(len(r["input_ids"]) for r in rows)
        out = {k: torch.tensor([r[k] + [0] * (width - len(r[k])) for r in rows])
               for k in ("input_ids", "attention_mask")}
        out["labels"] = torch.tensor([r["labels"] for r in rows])
        return out


def test_loaders_keep_each_example_with_its_label():
    texts = [("w " * (1 + (7 * i) % 23),) for i in range(90)]
    split = Split(texts=texts, labels=[i % 3 for i in range(90)])
    for shuffle, grouped in [(True, True), (True, False), (False, True)]:
        loader = make_loader(_WordTokenizer(), split, 8, 64, shuffle=shuffle,
                             generator=torch.Generator().manual_seed(0), group_by_length=grouped)
        seen = []
        for batch in loader:
            words = batch["attention_mask"].sum(1)
            seen += list(zip(words.tolist(), batch["labels"].tolist()))
        expected = [(1 + (7 * i) % 23, i % 3) for i in range(90)]
        assert sorted(seen) == sorted(expected)
        assert len(loader) == 12


def test_iterating_a_training_loader_draws_nothing_from_the_global_generator():
    """Resume restores the global RNG mid-epoch: a loader that drew its base seed from it at
    iteration start would shift every later draw of the resumed run."""
    texts = [("w " * (1 + i % 9),) for i in range(40)]
    split = Split(texts=texts, labels=[i % 2 for i in range(40)])
    for grouped in (True, False):
        loader = make_loader(_WordTokenizer(), split, 8, 64, shuffle=True,
                             generator=torch.Generator().manual_seed(0), group_by_length=grouped)
        torch.manual_seed(5)
        before = torch.get_rng_state()
        list(loader)
        assert torch.equal(before, torch.get_rng_state())
