"""From a trained model to a ``TaskDiff``: what a task file stores."""

from __future__ import annotations

from typing import Any

from diffprune.fingerprint import fingerprint
from diffprune.model import DiffPruneModel
from diffprune.task_file import SparseDiff, TaskDiff


def task_from_model(model: DiffPruneModel, task: dict[str, Any] | None = None,
                    metrics: dict[str, Any] | None = None,
                    base: dict[str, Any] | None = None) -> TaskDiff:
    """The fixed-mask diff, the dense head, and the fingerprint of the base it was trained on.

    Args:
        task: name, labels, num_labels, problem_type.
        base: the base model's identity (name_or_path, revision); the fingerprint is added.
    """
    if model.stage != "masked":
        raise RuntimeError("a task file holds a projected diff: call project() first")
    diffs = {
        site.name: SparseDiff(tuple(site.param.shape),
                              model.tensor(site, "indices").detach().cpu(),
                              model.tensor(site, "values").detach().cpu().float())
        for site in model.sites
    }
    params = dict(model.base_model.named_parameters())
    head = {name: params[name].detach().cpu().float() for name in model.head_names}
    base_fp = fingerprint((site.name, model.tensor(site, "base")) for site in model.sites)
    return TaskDiff(diffs, head, task=dict(task or {}), config=model.diffprune_config.to_dict(),
                    metrics=dict(metrics or {}), base={**(base or {}), "fingerprint": base_fp})
