"""A trained task, ready to score text: from a task file (on its base) or a full-finetuning run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from diffprune.bank import TaskBank
from diffprune.data.task import TaskSpec
from diffprune.loading import DEFAULT_MODEL_PACKAGE, base_path, load_classifier, load_tokenizer
from diffprune.run_folder import FULL_MODEL, TASK_INFO
from diffprune.task_file import load_task, task_path


@dataclass
class TaskModel:
    """A model that answers one task, its tokenizer and the task's labels."""

    model: torch.nn.Module
    tokenizer: object
    spec: TaskSpec
    source: str


def load_task_model(path: str | Path, model: str | None = None) -> TaskModel:
    """From a task file or run folder; ``model`` overrides the base recorded in the file."""
    path = Path(path)
    full = path / FULL_MODEL
    if (full / TASK_INFO).is_file():  # a run of --method full
        spec = TaskSpec.from_dict(json.loads((full / TASK_INFO).read_text()))
        net = load_classifier(full)[0].eval()
        return TaskModel(net, load_tokenizer(full), spec, str(full))
    file = task_path(path)
    task = load_task(file)
    spec = TaskSpec.from_dict(task.task)
    base = base_path(model) if model else _recorded_base(task.base.get("name_or_path"), file)
    bank = TaskBank.from_pretrained(base, num_labels=spec.num_labels,
                                    problem_type=spec.problem_type)
    if bank.tokenizer is None:
        raise ValueError(f"{base}: no tokenizer beside the base model")
    # The bank checks the base's fingerprint against the file's, so a wrong base is refused.
    bank.add(spec.name, task)
    bank.activate(spec.name)
    return TaskModel(bank.model, bank.tokenizer, spec, str(file))


def _recorded_base(recorded: str | None, file: Path) -> str:
    """The base a task file names: a local folder, a hub name, or the bundled model."""
    if not recorded or Path(recorded).exists():
        return base_path(recorded)
    if Path(recorded).is_absolute():
        if DEFAULT_MODEL_PACKAGE in recorded:  # the bundled model, installed elsewhere
            return base_path(None)
        raise FileNotFoundError(f"{file} was trained on {recorded}, which is not on this "
                                "machine; pass --model with that base")
    return recorded  # a hub name


def describe_outputs(outputs: torch.Tensor, spec: TaskSpec) -> list[dict]:
    """One JSON-ready answer per example: the label and class probabilities, or the value."""
    if spec.labels is None:
        return [{"value": float(v)} for v in outputs]
    probs = outputs.softmax(-1)
    return [{"label": spec.labels[int(p.argmax())],
             "scores": {name: round(float(q), 6) for name, q in zip(spec.labels, p)}}
            for p in probs]
