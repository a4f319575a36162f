"""Stage 1's elementwise math: C++ kernels, else ``torch.compile``, else eager.

The gate kernels (``diff.py``) and the low-precision AdamW step (``compact_adamw.py``) are plain
tensor functions. With ``fused`` (the default) a call runs, in order of preference:

1. the C++ version (``diffprune.native``), where it takes these inputs (float32 on the CPU, the
   gate at temperature 1) and a C++ compiler built it: one loop, no compiler stack in memory;
2. the function compiled by ``torch.compile`` (one loop over its tensors; a GPU gets Triton);
3. the function itself, eagerly, where no compiler works (separate operations, with
   temporaries, slower).

All three compute the same math. The C++ AdamW steps give the compiled kernel's bits (eagerly,
torch's vectorized sqrt is not always correctly rounded: a last bit here and there); the gates
agree within float rounding (tests/test_native_kernels.py). ``DIFFPRUNE_KERNELS=compile`` (or
``use_backend("compile")``) skips the C++ kernels, to compare or to sidestep them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator

import torch

from diffprune import native

BACKENDS = ("native", "compile")
_backend = os.environ.get("DIFFPRUNE_KERNELS", "native")
if _backend not in BACKENDS:
    raise ValueError(f"DIFFPRUNE_KERNELS must be one of {BACKENDS}, got {_backend!r}")


def backend() -> str:
    """The first choice for fused kernels: "native" (C++, where it applies) or "compile"."""
    return _backend


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run fused kernels with ``name`` as first choice inside the block (this process)."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    before, _backend = _backend, name
    try:
        yield
    finally:
        _backend = before


class Kernels:
    """Named math functions: the C++ version where it applies, else compiled on first use when
    ``fused`` (eager on any compiler failure)."""

    def __init__(self, eager: dict[str, Callable],
                 native_versions: dict[str, Callable] | None = None) -> None:
        self.eager = eager
        self.native = native_versions or {}
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
        if fused and _backend == "native" and name in self.native:
            try:
                return self.native[name](*args)
            except native.Unsupported:
                pass
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
