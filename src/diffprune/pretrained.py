"""``save_pretrained`` / ``from_pretrained`` for a ``DiffPruneModel``: one task file per task.

A saved task is ``<directory>/diff.safetensors`` (see ``task_file.py``): the projected diff's
positions and values, the dense head, the method's config, the task's labels and problem type,
and the fingerprint of the base it was trained on. Loading puts that diff on a base model in the
fixed-mask stage, so it can be evaluated, finetuned further or merged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from diffprune.config import DiffPruneConfig
from diffprune.export import task_from_model
from diffprune.fingerprint import fingerprint
from diffprune.model import DiffPruneModel
from diffprune.run_folder import TASK_FILE
from diffprune.task_file import TaskDiff, TaskFileMismatch, load_task, save_task, task_path


def task_info_from_config(model: torch.nn.Module) -> dict[str, Any]:
    """Labels and problem type as a Transformers model's config states them (or nothing)."""
    config = getattr(model, "config", None)
    if config is None:
        return {}
    info: dict[str, Any] = {}
    id2label = getattr(config, "id2label", None) or {}
    if id2label:
        info["labels"] = [str(id2label[i]) for i in sorted(id2label, key=int)]
        info["num_labels"] = len(info["labels"])
    if getattr(config, "problem_type", None):
        info["problem_type"] = config.problem_type
    elif info.get("num_labels") == 1:
        info["problem_type"] = "regression"
    elif info.get("num_labels"):  # what Transformers infers for integer labels
        info["problem_type"] = "single_label_classification"
    if info.get("problem_type") == "regression":
        info["labels"] = None
    return info


def save_pretrained(model: DiffPruneModel, directory: str | Path, *,
                    labels: list[str] | None = None, problem_type: str | None = None,
                    name: str | None = None, metrics: dict[str, Any] | None = None,
                    base_info: dict[str, Any] | None = None,
                    encoding: str = "compact") -> Path:
    """Write ``directory/diff.safetensors``; returns its path.

    Labels and problem type come from the wrapped model's config (``id2label``,
    ``problem_type``) unless given here; the task's name is the folder's unless given.
    """
    if model.stage != "masked":
        raise RuntimeError(
            f"save_pretrained needs a projected diff, but the model is in stage {model.stage!r}: "
            "call model.project() first (DiffPruneTrainer.train() projects and finetunes with "
            "the mask fixed), or save the merged model with its own save_pretrained")
    task = task_info_from_config(model.base_model)
    if labels is not None:
        task.update(labels=list(labels), num_labels=len(labels))
    if problem_type is not None:
        task["problem_type"] = problem_type
        if problem_type == "regression":
            task.update(labels=None, num_labels=1)
    task["name"] = name or Path(directory).resolve().name  # the folder names the task
    if base_info is None:
        path = getattr(getattr(model.base_model, "config", None), "_name_or_path", None)
        base_info = {"name_or_path": str(path)} if path else {}
    return save_task(task_from_model(model, task, metrics, base_info),
                     Path(directory) / TASK_FILE, encoding)


def from_pretrained(base_model: torch.nn.Module, path: str | Path | TaskDiff,
                    config: DiffPruneConfig | None = None) -> DiffPruneModel:
    """A fixed-mask-stage ``DiffPruneModel`` holding a saved task's diff and head on
    ``base_model``. A base other than the one the task was trained on is refused."""
    task = path if isinstance(path, TaskDiff) else load_task(task_path(path))
    source = "the task" if isinstance(path, TaskDiff) else str(task_path(path))
    config = config or DiffPruneConfig.from_dict(_known_fields(task.config))
    # Every check runs on the plain model first: a refused task leaves the caller's model as
    # it was.
    params = dict(base_model.named_parameters())
    unknown = sorted(set(task.diffs) - set(params))
    if unknown:
        raise TaskFileMismatch(source, f"the base model has no tensor {unknown[0]!r} "
                            f"({len(unknown)} of the task's tensors are not in it)")
    for name, diff in task.diffs.items():
        if tuple(params[name].shape) != tuple(diff.shape):
            raise TaskFileMismatch(source, f"{name} has shape {tuple(diff.shape)}, the base has "
                                f"{tuple(params[name].shape)}")
    actual = fingerprint((name, params[name]) for name in task.diffs)
    expected = task.base.get("fingerprint")
    if expected != actual:
        raise TaskFileMismatch(
            source, f"was trained against base {expected} "
            f"({task.base.get('name_or_path', 'unknown')}), but this base is {actual}: load the "
            "base the task was trained on", joiner=" ")
    for name, tensor in task.head.items():
        if name not in params:
            raise TaskFileMismatch(source, f"the base model has no head tensor {name!r}")
        if tuple(params[name].shape) != tuple(tensor.shape):
            raise TaskFileMismatch(source, f"head tensor {name} has shape {tuple(tensor.shape)}, "
                                f"the model has {tuple(params[name].shape)}")
    model = DiffPruneModel(base_model, config)
    missing = sorted(set(task.diffs) - {site.name for site in model.sites})
    if missing:  # the config gates other tensors than the file holds
        raise TaskFileMismatch(source, f"{missing[0]!r} is not gated under the task's config")
    with torch.no_grad():
        for site in model.sites:
            diff = task.diffs.get(site.name)
            device = model.tensor(site, "base").device
            if diff is None:
                indices = torch.zeros(0, dtype=torch.long, device=device)
                values = torch.zeros(0, dtype=torch.float32, device=device)
            else:
                indices = diff.positions.to(device=device, dtype=torch.long)
                values = diff.values.to(device=device, dtype=torch.float32)
            model.set_sparse(site, indices, values)
        for name, tensor in task.head.items():
            params[name].copy_(tensor.to(params[name].dtype))
    model.stage = "masked"
    return model


def _known_fields(values: dict[str, Any]) -> dict[str, Any]:
    """A saved config without fields this version does not know (a newer file's extras)."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(DiffPruneConfig)}
    return {k: v for k, v in values.items() if k in known}
