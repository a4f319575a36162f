"""Bounds on what one request may ask for (no web framework needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request may ask for."""

    max_body_bytes: int = 1 << 20  # a predict request
    max_upload_bytes: int = 64 << 20  # a task file sent to POST /v1/tasks
    max_batch: int = 64  # inputs per request
    max_text_chars: int = 10_000  # per text, before tokenisation
    max_seq_length: int = 128  # tokens per input, pairs truncated longest-first
    batch_rows: int = 64  # rows per shared forward pass
    batch_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    # POST /v1/tasks may name a file on the server's disk only inside this folder; None (the
    # default) takes uploads only.
    task_root: str | None = None
