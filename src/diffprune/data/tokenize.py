"""One way from text to model inputs, shared by train, eval, predict and the server."""

from __future__ import annotations

import torch

DEFAULT_MAX_SEQ_LENGTH = 128  # tokens per example, pairs truncated longest-first
DEFAULT_EVAL_BATCH_SIZE = 64


def sequence_limit(model: torch.nn.Module, tokenizer, requested: int) -> int:
    """``requested`` tokens, cut to what the model's position table and tokenizer allow."""
    limits = [requested, getattr(tokenizer, "model_max_length", requested)]
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if positions:
        limits.append(positions)
    return int(min(limits))


def encode(tokenizer, texts: list[tuple[str, ...]], max_length: int) -> list[dict]:
    """Token ids per example (a text, or a pair truncated longest-first), unpadded."""
    if not texts:
        return []
    if len({len(t) for t in texts}) > 1:  # zip would silently drop the second texts
        raise ValueError("a batch mixes single texts and pairs; encode each kind apart")
    columns = list(zip(*texts))
    encoded = tokenizer(*columns, truncation=True, max_length=max_length)
    return [{k: v[i] for k, v in encoded.items()} for i in range(len(texts))]


def pad(tokenizer, rows: list[dict]) -> dict[str, torch.Tensor]:
    """A batch padded to its longest row (dynamic padding)."""
    return dict(tokenizer.pad(rows, return_tensors="pt"))
