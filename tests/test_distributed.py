"""DDP through torchrun: 2 CPU processes (gloo) train one task and end with identical diffs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import GLUE_DIR
from safetensors.torch import load_file

pytestmark = pytest.mark.skipif(not (GLUE_DIR / "RTE").is_dir(), reason="needs the GLUE data")


def test_two_processes_end_with_identical_diffs(tmp_path, tiny_base_dir):
    out = tmp_path / "run"
    worker = Path(__file__).with_name("ddp_train.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(worker.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", "29533", str(worker), "--model", str(tiny_base_dir),
         "--data-dir", str(GLUE_DIR), "--output", str(out), "--max-train-samples", "64",
         "--max-eval-samples", "16", "--batch-size", "8", "--max-seq-length", "32",
         "--epochs", "1", "--mask-epochs", "1", "--density", "0.05"],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["l0_steps"] == 4  # 64 examples, 8 per process and step, 2 processes
    first, second = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    assert first.keys() == second.keys() and any("_indices" in k for k in first)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    # Density control closes whole tensors here: the case where DDP must not wait for a
    # gradient of a tensor whose diff kept no entry.
    assert any(first[k].numel() == 0 for k in first if k.endswith("_indices"))
    # Only the main process writes the run's files: one report, printed once.
    assert result.stdout.count("dev accuracy:") == 1
