"""GLUE tasks in the classic ``<TASK>/{train,dev}.tsv`` layout (download_glue_data.py output).

Quirks handled (see shared/data/glue/SOURCES.md): quotes are literal (``csv.QUOTE_NONE``), MRPC
starts with a UTF-8 BOM, CoLA has no header, SST-2 sentences keep a trailing space.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

csv.field_size_limit(2**24)


@dataclass(frozen=True)
class GlueTask:
    """Where a task's fields are and how it is scored."""

    name: str
    folder: str
    text_columns: tuple[str | int, ...]  # header names, or positions for header-less files
    label_column: str | int
    labels: tuple[str, ...] | None  # None = regression
    metric: str  # the GLUE headline metric
    has_header: bool = True

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)


TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("cola", "CoLA", (3,), 1, ("0", "1"), "mcc", has_header=False),
    GlueTask("sst2", "SST-2", ("sentence",), "label", ("0", "1"), "accuracy"),
    GlueTask("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), "f1"),
    GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, "spearman"),
    GlueTask("rte", "RTE", ("sentence1", "sentence2"), "label",
             ("entailment", "not_entailment"), "accuracy"),
    GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), "label", ("0", "1"), "accuracy"),
]}


def get_task(name: str) -> GlueTask:
    key = name.lower().replace("-", "")
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; known here: {', '.join(TASKS)}")
    return TASKS[key]


def read_split(data_dir: str | Path, task: GlueTask, split: str,
               ) -> tuple[list[tuple[str, ...]], list[float | int]]:
    """Texts (one tuple per example) and labels (class ids, or floats for regression)."""
    path = Path(data_dir) / task.folder / f"{split}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --data-dir must hold {task.folder}/{split}.tsv")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header: list[str] = rows.pop(0) if task.has_header else []

    def position(column: str | int) -> int:
        if isinstance(column, int):
            return column
        if column not in header:
            raise ValueError(f"{path}: no column {column!r} (header: {header})")
        return header.index(column)

    text_pos = [position(c) for c in task.text_columns]
    label_pos = position(task.label_column)
    texts, labels = [], []
    for line, row in enumerate(rows, start=2 if task.has_header else 1):
        if not row:
            continue
        if len(row) <= max(*text_pos, label_pos):
            raise ValueError(f"{path}:{line}: expected {max(*text_pos, label_pos) + 1} columns, "
                             f"got {len(row)}")
        texts.append(tuple(row[p] for p in text_pos))
        raw = row[label_pos]
        if task.labels is None:
            labels.append(float(raw))
        elif raw in task.labels:
            labels.append(task.labels.index(raw))
        else:
            raise ValueError(f"{path}:{line}: unknown label {raw!r}; expected one of {task.labels}")
    if not texts:
        raise ValueError(f"{path}: no examples")
    return texts, labels
