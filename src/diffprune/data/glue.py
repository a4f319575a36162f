"""The nine GLUE tasks: from the classic ``<TASK>/{train,dev}.tsv`` layout or from the hub.

TSV quirks handled: quotes are literal (``csv.QUOTE_NONE``),
MRPC starts with a UTF-8 BOM, CoLA has no header, SST-2 sentences keep a trailing space, and QQP's
train file has a few rows with missing fields, which GLUE's own reader skips (so does this one).
MNLI has two dev splits; the matched one comes first and selects the model.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from diffprune.data.task import Split, TaskData, TaskSpec

csv.field_size_limit(2**24)

HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask(TaskSpec):
    """Where a GLUE task's fields are, in the TSV files and on the hub."""

    folder: str = ""
    text_columns: tuple[str | int, ...] = ()  # header names, or positions for header-less files
    label_column: str | int = "label"
    hub_columns: tuple[str, ...] = ()
    dev_splits: tuple[str, ...] = ("dev",)
    has_header: bool = True
    skip_short_rows: bool = False


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("cola", _BINARY, "mcc", "CoLA", (3,), 1, ("sentence",), has_header=False),
    GlueTask("sst2", _BINARY, "accuracy", "SST-2", ("sentence",), "label", ("sentence",)),
    GlueTask("mrpc", _BINARY, "f1", "MRPC", ("#1 String", "#2 String"), "Quality",
             ("sentence1", "sentence2")),
    GlueTask("stsb", None, "spearman", "STS-B", ("sentence1", "sentence2"), "score",
             ("sentence1", "sentence2")),
    GlueTask("qqp", _BINARY, "f1", "QQP", ("question1", "question2"), "is_duplicate",
             ("question1", "question2"), skip_short_rows=True),
    GlueTask("mnli", ("entailment", "neutral", "contradiction"), "accuracy", "MNLI",
             ("sentence1", "sentence2"), "gold_label", ("premise", "hypothesis"),
             dev_splits=("dev_matched", "dev_mismatched")),
    GlueTask("qnli", _NLI2, "accuracy", "QNLI", ("question", "sentence"), "label",
             ("question", "sentence")),
    GlueTask("rte", _NLI2, "accuracy", "RTE", ("sentence1", "sentence2"), "label",
             ("sentence1", "sentence2")),
    GlueTask("wnli", _BINARY, "accuracy", "WNLI", ("sentence1", "sentence2"), "label",
             ("sentence1", "sentence2")),
]}


def get_task(name: str) -> GlueTask:
    key = name.lower().replace("-", "")
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; the GLUE tasks are {', '.join(TASKS)} "
                         "(for your own data pass --train-file and --dev-file)")
    return TASKS[key]


def _label(task: GlueTask, raw: str, where: str) -> int | float:
    if task.labels is None:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{where}: score {raw!r} is not a number") from None
    if raw not in task.labels:
        raise ValueError(f"{where}: unknown label {raw!r}; expected one of {task.labels}")
    return task.labels.index(raw)


def read_split(data_dir: str | Path, task: GlueTask, split: str) -> Split:
    """One split of a task from ``data_dir/<TASK>/<split>.tsv``."""
    path = Path(data_dir) / task.folder / f"{split}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --data-dir must hold {task.folder}/{split}.tsv")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header: list[str] = rows.pop(0) if task.has_header and rows else []

    def position(column: str | int) -> int:
        if isinstance(column, int):
            return column
        if column not in header:
            raise ValueError(f"{path}: no column {column!r} (header: {header})")
        return header.index(column)

    text_pos = [position(c) for c in task.text_columns]
    label_pos = position(task.label_column)
    needed = max(*text_pos, label_pos) + 1
    texts, labels = [], []
    for line, row in enumerate(rows, start=2 if task.has_header else 1):
        if not row:
            continue
        if len(row) < needed:
            if task.skip_short_rows:
                continue
            raise ValueError(f"{path}:{line}: expected {needed} columns, got {len(row)}")
        texts.append(tuple(row[p] for p in text_pos))
        labels.append(_label(task, row[label_pos], f"{path}:{line}"))
    if not texts:
        raise ValueError(f"{path}: no examples")
    return Split(texts, labels)


def from_records(task: GlueTask, records, source: str) -> Split:
    """A split from hub records (dicts with the hub's column names and an integer label)."""
    texts, labels = [], []
    for i, record in enumerate(records):
        missing = [c for c in (*task.hub_columns, "label") if c not in record]
        if missing:
            raise ValueError(f"{source}[{i}]: no field {missing[0]!r} (fields: {sorted(record)})")
        label = record["label"]
        if task.labels is not None and not 0 <= int(label) < len(task.labels):
            # the hub marks unlabelled (test) examples with -1
            raise ValueError(f"{source}[{i}]: label {label} is not a class of {task.name}")
        texts.append(tuple(str(record[c]) for c in task.hub_columns))
        labels.append(float(label) if task.labels is None else int(label))
    if not texts:
        raise ValueError(f"{source}: no examples")
    return Split(texts, labels)


def _hub_split(split: str) -> str:
    return split.replace("dev", "validation")


def load_from_hub(task: GlueTask) -> TaskData:
    """Train and dev splits from ``nyu-mll/glue`` through Hugging Face ``datasets``."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"{task.name}: no --data-dir given and Hugging Face `datasets` is not "
                         "installed; pass --data-dir with the GLUE TSV layout or "
                         "`pip install datasets`") from None
    splits = {}
    for split in ("train", *task.dev_splits):
        source = f"{HUB_DATASET}/{task.name}:{_hub_split(split)}"
        try:
            records = datasets.load_dataset(HUB_DATASET, task.name, split=_hub_split(split))
        except Exception as err:  # offline, no such config, ...: every loader error is fatal
            raise ValueError(f"could not load {source} ({type(err).__name__}: {err}); offline? "
                             "pass --data-dir with the GLUE TSV layout") from err
        splits[split] = from_records(task, records, source)
    return TaskData(task, splits.pop("train"), splits)


def load_glue(task: GlueTask, data_dir: str | Path | None) -> TaskData:
    """A GLUE task from ``data_dir`` when given, else from the hub."""
    if data_dir is None:
        return load_from_hub(task)
    return TaskData(task, read_split(data_dir, task, "train"),
                    {s: read_split(data_dir, task, s) for s in task.dev_splits})
