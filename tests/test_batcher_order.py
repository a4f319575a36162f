"""The micro-batcher's order: one task per pass, the task with the most waiting rows first
unless the oldest request has been passed over too often, every waiting request of that task
that fits in the row limit, and each answer routed to its request."""

from __future__ import annotations

import threading

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprune.serve.batcher import MicroBatcher


class _GatedBank:
    """Records each pass as [(task, row id)]; the first pass waits until ``release`` is set, so
    that everything submitted meanwhile is waiting together. Answers each row with its id."""

    def __init__(self, tasks):
        self.lock = threading.RLock()
        self.tasks = list(tasks)
        self.passes: list[list[tuple[str, int]]] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def forward_mixed(self, tasks, input_ids, **_):
        self.passes.append([(t, int(row[0])) for t, row in zip(tasks, input_ids)])
        self.entered.set()
        self.release.wait(timeout=10)
        return [row[:1].float() for row in input_ids]


class _Tokenizer:
    def pad(self, rows, return_tensors="pt"):
        return {"input_ids": torch.tensor([r["input_ids"] for r in rows])}


jobs_strategy = st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 3)), min_size=1,
                         max_size=25)


@settings(max_examples=60, deadline=None)
@given(jobs=jobs_strategy, max_rows=st.integers(1, 6), max_skips=st.integers(0, 3))
def test_passes_take_one_task_largest_first_and_answer_every_row(jobs, max_rows, max_skips):
    bank = _GatedBank("abc")
    batcher = MicroBatcher(bank, _Tokenizer(), max_rows=max_rows, max_wait=0.0, window=0.0,
                           max_skips=max_skips)
    try:
        first = batcher.submit("a", [{"input_ids": [0]}])
        assert bank.entered.wait(timeout=10)  # the first pass runs; the rest queue behind it
        submitted, futures, next_id = [], [], 1
        for task, rows in jobs:
            ids = list(range(next_id, next_id + rows))
            next_id += rows
            submitted.append((task, ids))
            futures.append(batcher.submit(task, [{"input_ids": [i]} for i in ids]))
        bank.release.set()
        assert first.result(timeout=10)[0].item() == 0
        for (_, ids), future in zip(submitted, futures):
            assert [int(out.item()) for out in future.result(timeout=10)] == ids
    finally:
        bank.release.set()
        batcher.close()

    owner = {i: n for n, (_, ids) in enumerate(submitted) for i in ids}
    remaining = list(range(len(submitted)))  # jobs not yet run, oldest first
    skipped = [0] * len(submitted)  # passes each job has waited through
    for one_pass in bank.passes[1:]:
        tasks = {task for task, _ in one_pass}
        assert len(tasks) == 1  # one task per pass
        task = tasks.pop()
        rows_of = {}
        for n in remaining:
            rows_of[submitted[n][0]] = rows_of.get(submitted[n][0], 0) + len(submitted[n][1])
        oldest = remaining[0]
        if skipped[oldest] >= max_skips:
            assert task == submitted[oldest][0]  # a request passed over too often goes next
        else:  # the most waiting rows; on a tie, the task waiting longest
            assert rows_of[task] == max(rows_of.values())
            assert task == next(t for t in rows_of if rows_of[t] == rows_of[task])
        # every waiting job of that task, in order, while the rows fit (one job always runs)
        expected, rows = [], 0
        for n in remaining:
            if submitted[n][0] == task and (not expected or rows + len(submitted[n][1])
                                           <= max_rows):
                expected.append(n)
                rows += len(submitted[n][1])
        assert list(dict.fromkeys(owner[i] for _, i in one_pass)) == expected
        remaining = [n for n in remaining if n not in expected]
        for n in remaining:
            skipped[n] += 1
    assert remaining == []  # every job ran exactly once


def test_a_removed_task_fails_its_waiting_requests_and_the_rest_still_run():
    bank = _GatedBank("ab")
    batcher = MicroBatcher(bank, _Tokenizer(), max_rows=8, max_wait=0.0, window=0.0)
    try:
        batcher.submit("a", [{"input_ids": [0]}])
        assert bank.entered.wait(timeout=10)
        gone = batcher.submit("b", [{"input_ids": [1]}])
        kept = batcher.submit("a", [{"input_ids": [2]}])
        bank.tasks.remove("b")  # removed while its request waited
        bank.release.set()
        assert kept.result(timeout=10)[0].item() == 2
        try:
            gone.result(timeout=10)
            raise AssertionError("a request for a removed task was answered")
        except KeyError as err:
            assert "'b'" in str(err)
    finally:
        bank.release.set()
        batcher.close()
