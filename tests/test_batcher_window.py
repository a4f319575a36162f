"""The micro-batcher's window: it waits for requests while they keep coming, up to a bound."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from diffprune.serve.batcher import MicroBatcher


class _Bank:
    """Records each batch's rows; answers one zero per row."""

    def __init__(self):
        self.lock = threading.RLock()
        self.tasks = ["a", "b"]
        self.batches: list[list[str]] = []

    def forward_mixed(self, tasks, **inputs):
        self.batches.append(list(tasks))
        return [torch.zeros(1) for _ in tasks]


class _Tokenizer:
    def pad(self, rows, return_tensors="pt"):
        return {"input_ids": torch.tensor([r["input_ids"] for r in rows])}


@pytest.fixture
def batcher_on():
    """``batcher_on(max_wait=..., window=...)``: a batcher over a recording bank, closed after."""
    made = []

    def make(**timing):
        bank = _Bank()
        made.append(MicroBatcher(bank, _Tokenizer(), max_rows=64, **timing))
        return made[-1], bank

    yield make
    for batcher in made:
        batcher.close()


def _spaced(batcher, gaps, task="a"):
    futures = []
    for gap in gaps:
        time.sleep(gap)
        futures.append(batcher.submit(task, [{"input_ids": [1]}]))
    for f in futures:
        f.result(timeout=5)


def test_requests_that_keep_coming_share_a_batch_up_to_the_window(batcher_on):
    batcher, bank = batcher_on(max_wait=0.04, window=0.5)
    _spaced(batcher, [0.0] + [0.02] * 5)  # each within max_wait of the one before
    assert [len(b) for b in bank.batches] == [6]


def test_a_gap_longer_than_max_wait_starts_a_new_batch_and_the_window_bounds_one(batcher_on):
    batcher, bank = batcher_on(max_wait=0.04, window=0.1)
    _spaced(batcher, [0.0, 0.3])  # the second comes long after the first batch ran
    assert [len(b) for b in bank.batches] == [1, 1]
    bank.batches.clear()
    began = time.monotonic()
    _spaced(batcher, [0.0] + [0.025] * 12)  # 0.3 s of requests, window 0.1 s
    assert len(bank.batches) >= 2 and sum(map(len, bank.batches)) == 13
    assert time.monotonic() - began < 2


def _answered_clients_come_back(batcher, task: str, after: float):
    """A future callback: the answered request's client sends its next request (for ``task``)
    ``after`` seconds later, as a closed-loop client does (the time to send the answer and
    parse the next request)."""

    def resubmit(_future):
        timer = threading.Timer(after, batcher.submit, (task, [{"input_ids": [1]}]))
        timer.daemon = True
        timer.start()

    return resubmit


@pytest.mark.parametrize("await_returns", [True, False])
def test_after_a_pass_the_worker_waits_for_the_clients_it_answered(batcher_on, await_returns):
    batcher, bank = batcher_on(max_wait=0.3, window=2.0, await_returns=await_returns)
    first = [batcher.submit("b", [{"input_ids": [1]}])]
    first += [batcher.submit("a", [{"input_ids": [1]}]) for _ in range(2)]
    for f in first[1:]:  # the two "a" clients come back with "b" requests 20 ms after
        f.add_done_callback(_answered_clients_come_back(batcher, "b", 0.02))
    for f in first:
        f.result(timeout=5)
    deadline = time.monotonic() + 5
    while sum(map(len, bank.batches)) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bank.batches[0] == ["a", "a"]  # the most waiting rows first
    if await_returns:  # the returning requests joined the waiting "b" before the next pass
        assert bank.batches[1:] == [["b", "b", "b"]]
    else:  # the waiting "b" ran at once, alone
        assert bank.batches[1] == ["b"] and sum(map(len, bank.batches)) == 5
