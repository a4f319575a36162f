"""Micro-batching across tasks: requests that arrive together share forward passes.

Callers submit tokenised rows tagged with their task; one worker thread takes whatever is queued
(up to ``max_rows``), pads it into one batch and runs the bank's mixed-task forward, which
applies each task's diff in turn under the bank's lock. A request therefore never sees a
half-applied diff, and adding or removing a task (same lock) happens between batches.

How long a batch waits: after each request, ``max_wait`` more for the next one, and at most
``window`` in all. A lone request waits ``max_wait``; under load, the requests one batch answered
come back over a few milliseconds each, and the next batch waits for them rather than run a few
rows at a time. That matters most when tasks mix, since each task in a batch costs its own pass
over its rows (``benchmarks/serve_load.py`` measures it).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from diffprune.bank import TaskBank
from diffprune.data.tokenize import pad


@dataclass
class _Job:
    task: str
    rows: list[dict]  # tokenised inputs, one per example
    future: Future


class MicroBatcher:
    """Runs queued rows of any tasks through ``bank.forward_mixed`` in shared batches."""

    def __init__(self, bank: TaskBank, tokenizer, max_rows: int = 64, max_wait: float = 0.005,
                 window: float = 0.05):
        self.bank, self.tokenizer = bank, tokenizer
        self.max_rows, self.max_wait, self.window = max_rows, max_wait, max(window, max_wait)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="diffprune-batcher", daemon=True)
        self.batches = 0  # forward passes run, for the load report
        self._thread.start()

    def submit(self, task: str, rows: list[dict]) -> Future:
        """A future of one output tensor per row (logits, or the regression value)."""
        job = _Job(task, rows, Future())
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _take(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs, rows = [first], len(first.rows)
        start = time.monotonic()
        deadline = start + self.max_wait
        while rows < self.max_rows:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this batch
                break
            jobs.append(job)
            rows += len(job.rows)
            deadline = min(start + self.window, time.monotonic() + self.max_wait)
        return jobs

    def _loop(self) -> None:
        while (jobs := self._take()) is not None:
            live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            with self.bank.lock:  # no task is added or removed while this batch runs
                known = set(self.bank.tasks)
                for job in live:  # removed since it was queued
                    if job.task not in known:
                        job.future.set_exception(
                            KeyError(f"no task named {job.task!r} is loaded"))
                live = [j for j in live if j.task in known]
                if not live:
                    continue
                try:
                    outputs = self._run(live)
                except Exception as err:  # a failed batch fails its requests, not the server
                    for job in live:
                        job.future.set_exception(err)
                    continue
            start = 0
            for job in live:
                job.future.set_result(outputs[start:start + len(job.rows)])
                start += len(job.rows)

    @torch.no_grad()
    def _run(self, jobs: list[_Job]) -> list[torch.Tensor]:
        rows = [row for job in jobs for row in job.rows]
        tasks = [job.task for job in jobs for _ in job.rows]
        batch = pad(self.tokenizer, rows)
        self.batches += 1
        return self.bank.forward_mixed(tasks, **batch)
