"""keep_freed_memory: a large tensor freed and allocated again reuses mapped memory."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

# In a fresh process (malloc's settings are process-wide): page faults over ten 48 MB tensors
# (an embedding table's size), each filled and freed in turn, as a training step's are.
PROBE = """
import json, resource, sys, torch
from diffprune.training.allocator import keep_freed_memory
taken = keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.zeros(12 << 20)
before = faults()
for _ in range(10):
    torch.zeros(12 << 20)
print(json.dumps({"taken": taken, "faults": faults() - before}))
"""
PAGES = (48 << 20) // 4096  # one tensor's 4 kB pages


def _probe(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_memory_is_reused_unless_turned_off():
    kept = _probe()
    default = _probe(DIFFPRUNE_KEEP_FREED_MEMORY="0")
    assert kept["taken"] and not default["taken"]
    # malloc's default maps every tensor afresh and faults on each of its pages
    assert default["faults"] > 8 * PAGES
    # kept: the freed block is used again (a small allocation between two can split it, so
    # that once in a while the heap grows by one tensor instead)
    assert kept["faults"] < 3 * PAGES
