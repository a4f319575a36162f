"""Settings of a training run (the method's own settings live in ``DiffPruneConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _field(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainSettings:
    """One task's run: data, schedule and outputs. Defaults follow SPEC §4–§5."""

    task: str = _field("rte", "GLUE task name (cola, sst2, mrpc, stsb, rte, wnli).")
    data_dir: str | None = _field(None, "Folder in the classic GLUE TSV layout.")
    model: str | None = _field(
        None, "Base model: local path or hub name (default: the bundled MiniLM).")
    output: str = _field("runs/rte", "Output directory.")
    epochs: float = _field(3.0, "Epochs of L0 (stage-1) training.")
    mask_epochs: float = _field(3.0, "Epochs of fixed-mask (stage-2) finetuning.")
    mask_lr: float = _field(5e-5, "Learning rate of fixed-mask finetuning (linear decay).")
    batch_size: int = _field(8, "Training batch size.")
    eval_batch_size: int = _field(64, "Evaluation batch size.")
    max_seq_length: int = _field(128, "Tokens per example (pairs are truncated longest-first).")
    max_steps: int = _field(0, "Stop each stage after this many optimizer steps (0 = no limit).")
    max_train_samples: int = _field(0, "Use only the first N training examples (0 = all).")
    max_eval_samples: int = _field(0, "Evaluate on the first N dev examples (0 = all).")
    seed: int = _field(0, "Random seed.")
