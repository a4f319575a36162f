"""Settings of a training run (the method's own settings live in ``DiffPruneConfig``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from diffprune.bounds import check_bounds
from diffprune.bounds import setting as _field
from diffprune.data.files import DEFAULT_LABEL_COLUMN, DEFAULT_TEXT_COLUMNS
from diffprune.data.tokenize import DEFAULT_EVAL_BATCH_SIZE, DEFAULT_MAX_SEQ_LENGTH
from diffprune.loading import local_model_path

Method = Literal["diff-structured", "diff", "nonadaptive", "full"]


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
    text_columns: list[str] = _field(
        list(DEFAULT_TEXT_COLUMNS), "Own data: one or two text columns.")
    label_column: str = _field(DEFAULT_LABEL_COLUMN, "Own data: the label (or score) column.")
    problem_type: Literal["auto", "classification", "regression"] = _field(
        "auto", "Own data: auto treats non-integer numbers as regression scores.")
    task_name: str | None = _field(None, "Own data: task name (default: the train file's name).")
    quoting: Literal["auto", "standard", "none"] = _field(
        "auto", "Own data: 'standard' reads CSV quoting, 'none' takes quotes literally (GLUE's "
        "TSV files); 'auto' is standard for .csv and none for .tsv.")
    encoding: Literal["compact", "lossless"] = _field(
        "compact", "Task file: 'compact' stores float16 values and packed positions (about 3 "
        "bytes per nonzero); 'lossless' stores float32 values and int32 positions.")
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
    epochs: float = _field(
        2.0, "Epochs of L0 training (and of finetuning for full/nonadaptive).",
        low=0, open_low=True)
    mask_epochs: float = _field(2.0, "Epochs of fixed-mask finetuning.", low=0)
    mask_lr: float = _field(
        3e-3, "Fixed-mask stage: learning rate of the kept values and the head (linear decay; "
        "the paper: 5e-5).", low=0, open_low=True)
    mask_head_lr: float | None = _field(
        None, "Fixed-mask stage: learning rate of the task head (default: --mask-lr).",
        low=0, open_low=True)
    retry_unlearned: bool = _field(
        True, "When the last stage (fixed-mask, or full finetuning for --method full) ends its "
        "last epoch no better than a constant answer on the training set, train it once more "
        "from its start at a third of its rates, keeping the best dev state of both tries; "
        "--no-retry-unlearned only warns (the paper has no such rule).")
    full_lr: float = _field(
        1.5e-4, "Full finetuning (full and nonadaptive): learning rate.", low=0, open_low=True)
    full_max_grad_norm: float = _field(
        1.0, "Full finetuning: gradient-norm clip; 0 = none.", low=0)
    full_weight_decay: float = _field(0.0, "Full finetuning: AdamW weight decay.", low=0)
    nonadaptive_from: Literal["best", "last"] = _field(
        "best", "Non-adaptive: prune the difference of full finetuning's best dev state ('best', "
        "as full finetuning keeps it; dev then picks twice, here and in the fixed-mask stage) or "
        "of its last state ('last': dev picks only in the fixed-mask stage, as for diff pruning).")
    batch_size: int = _field(16, "Training batch size (per process).", low=1)
    eval_batch_size: int = _field(DEFAULT_EVAL_BATCH_SIZE, "Evaluation batch size.", low=1)
    max_seq_length: int = _field(
        DEFAULT_MAX_SEQ_LENGTH, "Tokens per example (pairs are truncated longest-first).", low=8)
    group_by_length: bool = _field(
        True, "Batch training examples of similar length together (shuffled within windows of "
        "50 batches, then batch order shuffled), so that batches carry little padding; "
        "--no-group-by-length batches at random (the paper's setting).")
    max_steps: int = _field(
        0, "Stop each stage after this many optimizer steps (0 = no limit).", low=0)
    max_train_samples: int = _field(0, "Use only the first N training examples (0 = all).", low=0)
    max_eval_samples: int = _field(0, "Evaluate on the first N dev examples (0 = all).", low=0)
    checkpoint_steps: int = _field(
        0, "Also checkpoint every N steps (0 = at the end of each epoch only).", low=0)
    seed: int = _field(0, "Random seed.", low=0)

    def __post_init__(self) -> None:
        check_bounds(self)  # every number against the range in its field's metadata
        if self.model:
            local_model_path(self.model)  # a local path that does not exist fails here
        if self.output is None:
            name = self.task_name or (Path(self.train_file).stem if self.train_file else self.task)
            self.output = f"runs/{name}"
