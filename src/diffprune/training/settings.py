"""Settings of a training run (the method's own settings live in ``DiffPruneConfig``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from diffprune.loading import local_model_path

Method = Literal["diff-structured", "diff", "nonadaptive", "full"]
METHODS: tuple[str, ...] = ("diff-structured", "diff", "nonadaptive", "full")


# Numeric settings and their lower bound (True: the bound itself is refused too), checked where
# the settings are built, so a bad flag fails before any data or model is loaded.
_RANGES: dict[str, tuple[float, bool]] = {
    "epochs": (0, True), "mask_epochs": (0, False), "mask_lr": (0, True), "full_lr": (0, True),
    "full_max_grad_norm": (0, False), "full_weight_decay": (0, False), "batch_size": (1, False),
    "eval_batch_size": (1, False), "max_seq_length": (8, False), "max_steps": (0, False),
    "max_train_samples": (0, False), "max_eval_samples": (0, False),
    "checkpoint_steps": (0, False), "seed": (0, False),
}


def _field(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainSettings:
    """One task's run: data, schedule and outputs. Defaults: ``recipes/default.json``."""

    method: Method = _field(
        "diff-structured", "diff-structured, diff (unstructured), nonadaptive (finetune, then "
        "prune the difference) or full (plain finetuning, the reference).")
    task: str = _field("rte", "GLUE task: cola sst2 mrpc stsb qqp mnli qnli rte wnli.")
    data_dir: str | None = _field(
        None, "Folder in the classic GLUE TSV layout; without it, Hugging Face datasets.")
    train_file: str | None = _field(None, "Own training data: .csv, .tsv or .jsonl.")
    dev_file: str | None = _field(None, "Own dev data, same columns as --train-file.")
    text_columns: list[str] = _field(["text"], "Own data: one or two text columns.")
    label_column: str = _field("label", "Own data: the label (or score) column.")
    problem_type: Literal["auto", "classification", "regression"] = _field(
        "auto", "Own data: auto treats non-integer numbers as regression scores.")
    task_name: str | None = _field(None, "Own data: task name (default: the train file's name).")
    quoting: Literal["auto", "standard", "none"] = _field(
        "auto", "Own data: 'standard' reads CSV quoting, 'none' takes quotes literally (GLUE's "
        "TSV files); 'auto' is standard for .csv and none for .tsv.")
    model: str | None = _field(
        None, "Base model: local path or hub name (default: the bundled MiniLM).")
    output: str | None = _field(None, "Output directory (default: runs/<task>).")
    overwrite: bool = _field(
        False, "Train into an output folder that holds a finished run, replacing it (without "
        "this flag such a folder is refused).")
    resume: str | None = _field(
        None, "Continue the killed run in this folder from its last checkpoint, with the "
        "settings it was started with (other flags are ignored).")
    recipe: str | None = _field(
        None, "A preset: 'default', 'paper' (the paper's exact setting) or a JSON file of the "
        "same shape; --config and flags override it.")
    epochs: float = _field(2.0, "Epochs of L0 training (and of finetuning for full/nonadaptive).")
    mask_epochs: float = _field(2.0, "Epochs of fixed-mask finetuning.")
    mask_lr: float = _field(
        3e-3, "Fixed-mask stage: learning rate of the kept values and the head (linear decay; "
        "the paper: 5e-5).")
    full_lr: float = _field(1.5e-4, "Full finetuning (full and nonadaptive): learning rate.")
    full_max_grad_norm: float = _field(
        1.0, "Full finetuning: gradient-norm clip; 0 = none.")
    full_weight_decay: float = _field(0.0, "Full finetuning: AdamW weight decay.")
    batch_size: int = _field(16, "Training batch size (per process).")
    eval_batch_size: int = _field(64, "Evaluation batch size.")
    max_seq_length: int = _field(128, "Tokens per example (pairs are truncated longest-first).")
    max_steps: int = _field(0, "Stop each stage after this many optimizer steps (0 = no limit).")
    max_train_samples: int = _field(0, "Use only the first N training examples (0 = all).")
    max_eval_samples: int = _field(0, "Evaluate on the first N dev examples (0 = all).")
    checkpoint_steps: int = _field(
        0, "Also checkpoint every N steps (0 = at the end of each epoch only).")
    seed: int = _field(0, "Random seed.")

    def __post_init__(self) -> None:
        for name, (low, strict) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not math.isfinite(value) or value < low or (strict and value == low):
                flag = "--" + name.replace("_", "-")
                bound = f"> {low}" if strict else f">= {low}"
                raise ValueError(f"{flag} must be a finite number {bound}, got {value!r}")
        if self.model:
            local_model_path(self.model)  # a local path that does not exist fails here
        if self.output is None:
            name = self.task_name or (Path(self.train_file).stem if self.train_file else self.task)
            self.output = f"runs/{name}"
