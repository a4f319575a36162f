"""The settings of ``diffprune eval`` and ``diffprune predict``: their flags, defaults and ranges.

The defaults are the ones training uses (``TrainSettings``), taken from the same constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffprune.bounds import check_bounds, setting
from diffprune.data.files import DEFAULT_LABEL_COLUMN, DEFAULT_TEXT_COLUMNS
from diffprune.data.tokenize import DEFAULT_EVAL_BATCH_SIZE, DEFAULT_MAX_SEQ_LENGTH


@dataclass
class ScoringSettings:
    """What eval and predict share: the base and how text becomes batches."""

    model: str | None = setting(None, "Base model (default: the one the task file names).")
    batch_size: int = setting(DEFAULT_EVAL_BATCH_SIZE, "Examples per forward pass.", low=1)
    max_seq_length: int = setting(
        DEFAULT_MAX_SEQ_LENGTH, "Tokens per example (pairs are truncated longest-first).", low=8)

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass
class EvalSettings(ScoringSettings):
    task: str | None = setting(
        None, "GLUE task (default: the task the file was trained on).")
    data_dir: str | None = setting(None, "GLUE TSV folder; else Hugging Face datasets.")
    dev_file: str | None = setting(None, "Own labelled data (.csv, .tsv or .jsonl).")
    text_columns: list[str] = setting(list(DEFAULT_TEXT_COLUMNS),
                                      "Own data: one or two text columns.")
    label_column: str = setting(DEFAULT_LABEL_COLUMN, "Own data: the label (or score) column.")
    max_eval_samples: int = setting(0, "Score the first N dev examples (0 = all).", low=0)
    output: str | None = setting(
        None, "Where to write the metrics JSON (default: eval.json in the run folder, when a "
        "folder is given).")


@dataclass
class PredictSettings(ScoringSettings):
    input: str = setting("-", "Input file, one example per line (default: stdin).")
