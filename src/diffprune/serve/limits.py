"""Bounds on what one request may ask for (no web framework needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass

from diffprune.bounds import check_bounds, setting
from diffprune.data.tokenize import DEFAULT_MAX_SEQ_LENGTH


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request may ask for, and how requests share a forward pass."""

    max_body_bytes: int = setting(1 << 20, "Bytes of one predict request.", low=1)
    max_upload_bytes: int = setting(64 << 20, "Bytes of a task file sent to POST /v1/tasks.",
                                    low=1)
    max_batch: int = setting(64, "Inputs per request.", low=1)
    max_text_chars: int = setting(10_000, "Characters per text, before tokenisation.", low=1)
    max_seq_length: int = setting(
        DEFAULT_MAX_SEQ_LENGTH, "Tokens per input (pairs are truncated longest-first).", low=8)
    batch_rows: int = setting(64, "Rows per shared forward pass.", low=1)
    batch_wait_ms: float = setting(
        5.0, "How long a batch waits for the next request to share it (ms).", low=0, high=10_000)
    batch_window_ms: float = setting(
        50.0, "The longest a batch waits for requests in all (ms): under load it fills up to "
        "this while requests keep coming.", low=0, high=10_000)
    batch_await_returns: bool = setting(
        True, "After a pass, wait (batch-wait-ms after each, batch-window-ms in all) for the "
        "clients just answered to send their next requests before the next pass, so that the "
        "HTTP work and the model do not contend for the same cores.")
    # POST /v1/tasks may name a file on the server's disk only inside this folder; None (the
    # default) takes uploads only.
    task_root: str | None = setting(None, "The folder path loading is limited to.")

    def __post_init__(self) -> None:
        check_bounds(self)
