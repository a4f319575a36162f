"""Micro-batching across tasks: requests for the same task that arrive together share a pass.

Callers submit tokenised rows tagged with their task; one worker thread runs them through the
bank one task at a time, under the bank's lock, so a request never sees a half-applied diff,
and adding or removing a task (same lock) happens between passes.

Which rows a pass takes: the task with the most waiting rows, with every waiting request of that
task (up to ``max_rows``). Requests of other tasks stay waiting and take in the requests that
arrive meanwhile, so passes stay large: with clients spread over several tasks the worker does
not run a few rows per task. No request waits for ever: once the oldest waiting request has
been passed over ``max_skips`` times, its task goes next. (docs/serving.md has what this order
measured against one pass over every task's rows.)

After a pass with other requests still waiting, the worker first waits for the clients it just
answered to send their next requests (``await_returns``; ``max_wait`` after each, ``window`` in
all, at most as many as it answered). On two cores the HTTP work of those answers and requests
would otherwise run beside the next pass, and torch's threads, which meet after every
operation, would wait for whichever of them it delayed: measured, mixed traffic over three
tasks went from 0.88x to 0.93x of one task's throughput on average.

How long the worker waits when nothing is waiting: after each request, ``max_wait`` more for
the next one, and at most ``window`` in all. A lone request waits ``max_wait``; under load, the
requests one pass answered come back over a few milliseconds each, and the next pass waits for
them rather than run a few rows at a time.
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
    passed_over: int = 0  # passes of other rows run while this job waited


class MicroBatcher:
    """Runs queued rows through the bank in passes of one task each, the largest first."""

    def __init__(self, bank: TaskBank, tokenizer, max_rows: int = 64, max_wait: float = 0.005,
                 window: float = 0.05, max_skips: int = 2, await_returns: bool = True):
        self.bank, self.tokenizer, self.max_skips = bank, tokenizer, max_skips
        self.await_returns = await_returns
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
        jobs = [first]
        self._gather(jobs, more=self.max_rows)
        return jobs

    def _gather(self, jobs: list[_Job], more: int) -> None:
        """Append up to ``more`` jobs while they keep coming: ``max_wait`` after each,
        ``window`` in all, until ``jobs`` hold ``max_rows`` rows. A ``close`` met here is put
        back, so the loop stops after the pass these jobs make."""
        rows = sum(len(job.rows) for job in jobs)
        start = time.monotonic()
        deadline = start + self.max_wait
        while more > 0 and rows < self.max_rows:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if job is None:
                self._queue.put(None)
                return
            jobs.append(job)
            rows += len(job.rows)
            more -= 1
            deadline = min(start + self.window, time.monotonic() + self.max_wait)

    def _drain(self, waiting: list[_Job]) -> bool:
        """Append what is queued now, without waiting; False once ``close`` was called."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return True
            if job is None:
                return False
            waiting.append(job)

    def _next_group(self, waiting: list[_Job]) -> list[_Job]:
        """The next pass's jobs, removed from ``waiting`` (oldest first): the task with the most
        waiting rows (on a tie, the one waiting longest), unless the oldest job has been passed
        over ``max_skips`` times; then its task. Every waiting job of that task that fits in
        ``max_rows``, and always at least its oldest."""
        oldest = waiting[0]
        if oldest.passed_over >= self.max_skips:
            task = oldest.task
        else:
            rows_of: dict[str, int] = {}  # in order of each task's oldest job
            for job in waiting:
                rows_of[job.task] = rows_of.get(job.task, 0) + len(job.rows)
            task = max(rows_of, key=rows_of.__getitem__)  # the first of equals
        group, rows, left = [], 0, []
        for job in waiting:
            if job.task == task and (not group or rows + len(job.rows) <= self.max_rows):
                group.append(job)
                rows += len(job.rows)
            else:
                job.passed_over += 1
                left.append(job)
        waiting[:] = left
        return group

    def _loop(self) -> None:
        waiting: list[_Job] = []  # taken from the queue, not yet run
        running = True
        while running or waiting:
            if not waiting:
                jobs = self._take()
                if jobs is None:
                    return
                waiting = jobs
            if running:  # everything queued is waiting: the pass chooses from all of it
                running = self._drain(waiting)
            group = self._next_group(waiting)
            live = [j for j in group if j.future.set_running_or_notify_cancel()]
            with self.bank.lock:  # no task is added or removed while this batch runs
                if live and live[0].task not in self.bank.tasks:  # removed since it was queued
                    for job in live:
                        job.future.set_exception(
                            KeyError(f"no task named {job.task!r} is loaded"))
                    continue
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
            if running and waiting and self.await_returns:
                # the clients just answered come back while the event loop sends their
                # answers, instead of contending with the next pass for the same cores
                self._gather(waiting, more=len(live))

    @torch.no_grad()
    def _run(self, jobs: list[_Job]) -> list[torch.Tensor]:
        rows = [row for job in jobs for row in job.rows]
        tasks = [job.task for job in jobs for _ in job.rows]
        batch = pad(self.tokenizer, rows)
        self.batches += 1
        return self.bank.forward_mixed(tasks, **batch)
