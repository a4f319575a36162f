"""Real training on real data: the bundled MiniLM on a few hundred RTE examples."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import GLUE_DIR

from diffprune import DiffPruneConfig, DiffPruneModel, build_optimizer
from diffprune.cli.main import main
from diffprune.data.glue import get_task, read_split
from diffprune.loading import load_base
from diffprune.training.data import make_loader

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (GLUE_DIR / "RTE").is_dir(), reason="needs ../shared/data/glue"),
]


@torch.no_grad()
def _mean_loss(model, loader) -> float:
    model.eval()
    torch.manual_seed(123)  # the same gate draws for both measurements
    losses = [float(model(**batch).loss) for batch in loader]
    model.train()
    return sum(losses) / len(losses)


def test_short_rte_run_lowers_loss_and_expected_l0():
    task = get_task("rte")
    split = read_split(GLUE_DIR, task, "train").head(256)
    tokenizer, base, missing = load_base(None, task)
    loader = make_loader(tokenizer, split, batch_size=16, max_length=96, shuffle=True)
    fixed = make_loader(tokenizer, split, batch_size=64, max_length=96, shuffle=False)
    # Fast settings: higher learning rates than the paper's so that 48 steps show learning.
    config = DiffPruneConfig(diff_lr=2e-4, head_lr=2e-3)
    model = DiffPruneModel(base, config, missing_keys=missing).train()
    loss_before, l0_before = _mean_loss(model, fixed), model.expected_l0()
    optimizer, scheduler = build_optimizer(model, num_training_steps=48)
    for _epoch in range(3):  # 16 batches an epoch: 48 steps
        for batch in loader:
            (model(**batch).loss + model.penalty()).backward()
            model.clip_grad_norms()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    loss_after, l0_after = _mean_loss(model, fixed), model.expected_l0()
    assert loss_after < loss_before - 0.02, (loss_before, loss_after)
    assert l0_after < l0_before, (l0_before, l0_after)
    k = model.project(0.005)
    assert k == round(0.005 * model.num_gated) == model.nonzero_count()


def test_cli_train_writes_task_file_and_metrics(tmp_path, capsys):
    out = tmp_path / "rte"
    code = main(["train", "--task", "rte", "--data-dir", str(GLUE_DIR), "--output", str(out),
                 "--max-train-samples", "48", "--max-eval-samples", "32", "--max-steps", "3",
                 "--batch-size", "16", "--max-seq-length", "64"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nonzeros"] == round(0.005 * 22_713_216)
    assert metrics["density_after_projection"] == pytest.approx(0.005, rel=1e-4)
    assert 0.0 <= metrics["dev"]["accuracy"] <= 1.0 and metrics["dev_examples"] == {"dev": 32}
    # Loaded back from the compact file (float16 values) onto a fresh base: the same score.
    assert abs(metrics["dev_from_file"]["accuracy"] - metrics["dev"]["accuracy"]) <= 0.001
    # The whole file, header and dense head included, costs under 3 bytes per stored nonzero.
    assert (out / "diff.safetensors").stat().st_size / metrics["nonzeros"] <= 3.0
    printed = capsys.readouterr().out
    assert "task file:" in printed and "dev accuracy:" in printed
    # ... and `diffprune eval` scores the file the same way.
    assert main(["eval", str(out), "--data-dir", str(GLUE_DIR), "--max-eval-samples", "32",
                 "--max-seq-length", "64"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["scores"]["dev"]["accuracy"] == metrics["dev_from_file"]["accuracy"]
