"""Own data: CSV, TSV or JSONL files with named text and label columns.

Everything is checked before any training starts: a missing column, an unknown dev label, a score
that is not a number or an empty file stops with the file, the line and the problem.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from diffprune.data.task import Split, TaskData, TaskSpec

PROBLEM_TYPES = ("auto", "classification", "regression")


def read_rows(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) for each example of a .csv, .tsv or .jsonl file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    suffix = path.suffix.lower()
    with open(path, encoding="utf-8-sig", newline="") as f:
        if suffix in (".jsonl", ".json"):
            rows = []
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{line}: not valid JSON ({err.msg})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{path}:{line}: expected a JSON object per line")
                rows.append((line, record))
        elif suffix in (".csv", ".tsv"):
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            rows = [(i + 2, row) for i, row in enumerate(reader) if any(row.values())]
            if reader.fieldnames is None:
                raise ValueError(f"{path}: empty file (no header)")
        else:
            raise ValueError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


def _check_columns(path, rows, columns: list[str]) -> None:
    for line, record in rows:
        for column in columns:
            if record.get(column) is None:
                raise ValueError(f"{path}:{line}: no column {column!r} "
                                 f"(columns: {', '.join(map(str, record))})")


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


def _infer_regression(labels: list, problem_type: str) -> bool:
    if problem_type != "auto":
        return problem_type == "regression"
    # Numbers that are not all whole read as scores; whole numbers and strings read as classes.
    return all(_is_number(v) for v in labels) and any(float(v) != int(float(v)) for v in labels)


def _class_names(labels: list) -> tuple[str, ...]:
    names = {str(v) for v in labels}
    if all(_is_number(v) for v in names):
        return tuple(sorted(names, key=float))
    return tuple(sorted(names))


def load_files(train_file: str | Path, dev_file: str | Path, text_columns: list[str],
               label_column: str, problem_type: str = "auto",
               name: str | None = None) -> TaskData:
    """A task from own files; classes are the training labels, in sorted order."""
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem type must be one of {PROBLEM_TYPES}, got {problem_type!r}")
    if not 1 <= len(text_columns) <= 2:
        raise ValueError(f"--text-columns takes one or two columns, got {text_columns}")
    columns = [*text_columns, label_column]
    train_rows, dev_rows = read_rows(train_file), read_rows(dev_file)
    _check_columns(train_file, train_rows, columns)
    _check_columns(dev_file, dev_rows, columns)
    regression = _infer_regression([r[label_column] for _, r in train_rows], problem_type)
    labels = None if regression else _class_names([r[label_column] for _, r in train_rows])
    if labels is not None and len(labels) < 2:
        raise ValueError(f"{train_file}: one class only ({labels[0]!r}) in {label_column!r}; "
                         "classification needs at least two")

    spec = TaskSpec(name or Path(train_file).stem, labels,
                    "spearman" if regression else "accuracy")
    return TaskData(spec, _split(train_file, train_rows, text_columns, label_column, labels),
                    {"dev": _split(dev_file, dev_rows, text_columns, label_column, labels)})


def _split(path, rows, text_columns: list[str], label_column: str,
           labels: tuple[str, ...] | None) -> Split:
    texts, ys = [], []
    for line, record in rows:
        raw = record[label_column]
        if labels is None:
            if not _is_number(raw):
                raise ValueError(f"{path}:{line}: {label_column} {raw!r} is not a number "
                                 "(regression)")
            ys.append(float(raw))
        else:
            if str(raw) not in labels:
                raise ValueError(f"{path}:{line}: unknown label {raw!r}; the task's labels are "
                                 f"{list(labels)}")
            ys.append(labels.index(str(raw)))
        texts.append(tuple(str(record[c]) for c in text_columns))
    return Split(texts, ys)


def read_labelled(path: str | Path, text_columns: list[str], label_column: str,
                  spec: TaskSpec) -> Split:
    """A labelled file scored against an existing task's labels (``diffprune eval``)."""
    rows = read_rows(path)
    _check_columns(path, rows, [*text_columns, label_column])
    return _split(path, rows, text_columns, label_column, spec.labels)
