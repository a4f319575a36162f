"""A fingerprint of base weights: which exact tensors a diff was trained against."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def raw_bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's bytes in memory order (any dtype, bfloat16 included; empty for no elements)."""
    t = tensor.detach().to("cpu").contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def fingerprint(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """BLAKE2b-128 over name, dtype, shape and bytes of each tensor, in name order."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(raw_bytes(tensor))
    return "blake2b:" + digest.hexdigest()
