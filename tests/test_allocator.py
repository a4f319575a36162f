"""keep_freed_memory: a large tensor freed and allocated again reuses mapped memory."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

# In a fresh process (malloc's settings are process-wide): the page faults of the second of two
# 64 MB allocations, each filled and freed.
PROBE = """
import json, resource, sys, torch
from diffprune.training.allocator import keep_freed_memory
taken = keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.zeros(16 << 20)
before = faults()
torch.zeros(16 << 20)
print(json.dumps({"taken": taken, "faults": faults() - before}))
"""


def _probe(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_memory_is_reused_unless_turned_off():
    kept = _probe()
    default = _probe(DIFFPRUNE_KEEP_FREED_MEMORY="0")
    assert kept["taken"] and not default["taken"]
    # 64 MB is 16,384 pages of 4 kB: malloc's default maps them afresh, faulting on each
    assert default["faults"] > 8000
    assert kept["faults"] < 500
