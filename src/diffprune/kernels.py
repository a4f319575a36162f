"""Elementwise math compiled by ``torch.compile`` where a compiler is available, eager otherwise.

The gate kernels (``diff.py``) and the low-precision AdamW step (``compact_adamw.py``) are plain
tensor functions: compiled, each becomes one loop over its tensors; eager, the same math runs as
separate operations (slower, with temporaries, the same results up to float rounding).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


class Kernels:
    """Named math functions, each compiled on first use when ``fused``; eager on any failure."""

    def __init__(self, eager: dict[str, Callable]) -> None:
        self.eager = eager
        self.compiled: dict[str, Callable] = {}
        self.broken = False

    def get(self, name: str, fused: bool) -> Callable:
        eager = self.eager[name]
        if not fused or self.broken:
            return eager
        if name not in self.compiled:
            # one graph for every tensor size: the kernels see flat views
            self.compiled[name] = torch.compile(eager, dynamic=True)
        return self.compiled[name]

    def run(self, name: str, fused: bool, *args):
        fn = self.get(name, fused)
        try:
            return fn(*args)
        except Exception as err:  # no C++ compiler, unsupported platform, ...
            if fn is self.eager[name]:
                raise
            self.broken = True
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); diffprune falls "
                          "back to eager kernels (same results, slower)", stacklevel=3)
            return self.get(name, fused=False)(*args)
