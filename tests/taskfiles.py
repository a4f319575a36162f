"""Helpers shared by the task-file and bank tests: a small trained-looking task on a tiny BERT."""

from __future__ import annotations

import copy

import torch
from conftest import tiny_bert

from diffprune import DiffPruneConfig, get_diffprune_model
from diffprune.export import task_from_model

TASK = {"name": "toy", "labels": ["no", "yes"], "num_labels": 2,
        "problem_type": "single_label_classification"}


def make_task(base: torch.nn.Module | None = None, seed: int = 0, density: float = 0.05):
    """(pristine base, wrapped model in stage 2, TaskDiff) with a random sparse diff and head."""
    base = base if base is not None else tiny_bert()
    pristine = copy.deepcopy(base)
    wrapped = get_diffprune_model(copy.deepcopy(base), DiffPruneConfig(fused=False))
    g = torch.Generator().manual_seed(seed)
    diffs = [torch.randn(s.param.shape, generator=g) * 0.05 for s in wrapped.sites]
    wrapped.set_diff(diffs, density)
    with torch.no_grad():
        wrapped.base_model.classifier.weight.normal_(0, 0.5, generator=g)
    task = task_from_model(wrapped, TASK, {"accuracy": 0.5}, {"name_or_path": "tiny-bert"})
    return pristine, wrapped.eval(), task
