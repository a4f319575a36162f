"""DDP through torchrun: 2 CPU processes (gloo) train one task and end with identical diffs, and
DiffPruneTrainer's end-of-run check agrees on every process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import GLUE_DIR
from safetensors.torch import load_file

needs_glue = pytest.mark.skipif(not (GLUE_DIR / "RTE").is_dir(), reason="needs the GLUE data")


@needs_glue
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
    # The tiny model learns nothing, so the fixed-mask stage is retried: both processes decide
    # on the loss averaged over them, retry together, and still end alike (below).
    assert metrics["retry"]["stage"] == "mask"
    rate = {"first try": 3e-3, "retry": 1e-3}[metrics["retry"]["kept"]]  # the kept try's rate
    assert metrics["stages"]["mask"]["lr"] == rate
    first, second = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    assert first.keys() == second.keys() and any("_indices" in k for k in first)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    # Density control closes whole tensors here: the case where DDP must not wait for a
    # gradient of a tensor whose diff kept no entry.
    assert any(first[k].numel() == 0 for k in first if k.endswith("_indices"))
    # Only the main process writes the run's files: one report, printed once.
    assert result.stdout.count("dev accuracy:") == 1


def _trainer_on_two_processes(out: Path, labels: list[int], rate: float, port: int):
    """DiffPruneTrainer under torchrun with two processes; what each rank wrote."""
    worker = Path(__file__).with_name("ddp_trainer.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(worker.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(port), str(worker), str(out), json.dumps(labels), str(rate)],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [(json.loads((out / f"rank{r}.json").read_text()),
             load_file(out / f"rank{r}.safetensors")) for r in (0, 1)]


def test_the_trainer_checks_the_loss_over_every_process(tmp_path):
    """Two processes each see half the batches; the warning, made from the losses and label
    tallies of both, is the same on both and names the whole training set's constant loss.
    At a rate of 1e-9 nothing moves, so both retry the fixed-mask stage, together."""
    labels = [0] * 24 + [1] * 8  # shares 3:1, so the constant answer's loss is not log 2
    (first, _), (second, _) = _trainer_on_two_processes(tmp_path, labels, 1e-9, 29534)
    assert first["processes"] == 2
    # Each process saw its own share of the labels over the 2 fixed-mask epochs, in other
    # proportions than the whole set's, so agreeing on the whole set's loss takes the sum.
    assert [a + b for a, b in zip(first["own_tally"], second["own_tally"])] == [48, 16, 0]
    assert first["own_tally"][0] * 16 != first["own_tally"][1] * 48
    assert first["warnings"] == second["warnings"] and len(first["warnings"]) == 1
    assert first["retry"] == second["retry"] and first["retry"]["first_lr"] == 1e-9
    assert "mask_learning_rate=1.1e-10" in first["warnings"][0]  # the retry's rate
    constant = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert f"({constant:.4f})" in first["warnings"][0]


def test_the_trainer_ends_alike_on_every_process(tmp_path):
    """At a rate that moves the model, both processes end with the same diff and head: each
    stage's gradients are averaged over them (the fixed-mask stage's too, whose parameters
    are not stage 1's)."""
    labels = [0, 1] * 16
    (_, first), (_, second) = _trainer_on_two_processes(tmp_path, labels, 1e-2, 29535)
    assert first.keys() == second.keys() and any("_values" in k for k in first)
    for key in first:
        assert torch.equal(first[key], second[key]), key
