"""Own data: CSV, TSV or JSONL files with named text and label columns.

Everything is checked before any training starts: a missing column, an unknown dev label, a score
that is not a number or an empty file stops with the file, the line and the problem.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from diffprune.data.task import Split, TaskData, TaskSpec

DEFAULT_TEXT_COLUMNS = ("text",)  # own data: the column(s) read when none are named
DEFAULT_LABEL_COLUMN = "label"
PROBLEM_TYPES = ("auto", "classification", "regression")


QUOTINGS = ("auto", "standard", "none")


def read_rows(path: str | Path, quoting: str = "auto") -> list[tuple[int, dict]]:
    """(line number, record) for each example of a .csv, .tsv or .jsonl file.

    ``quoting``: "standard" reads quotes as CSV defines them (a quoted field may hold the
    delimiter, a doubled quote or a newline); "none" takes every character literally, as GLUE's
    TSV files and most TSV writers mean it; "auto" is standard for .csv and none for .tsv. A
    record with more or fewer fields than the header is refused with its line: that is how a
    stray quote that would swallow the rows after it shows.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a .csv, .tsv or .jsonl file")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if quoting not in QUOTINGS:
        raise ValueError(f"--quoting must be one of {QUOTINGS}, got {quoting!r}")
    suffix = path.suffix.lower()
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if suffix in (".jsonl", ".json"):
                rows = _json_rows(path, f)
            elif suffix in (".csv", ".tsv"):
                rows = _delimited_rows(path, f, suffix, quoting)
            else:
                raise ValueError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(path)) from None
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


def decode_utf8(data: bytes, name: str) -> str:
    """``data`` as text (a leading BOM dropped); a byte that is not UTF-8 is named with its
    line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        raise ValueError(f"{name}:{line}: not UTF-8 text (byte {data[start]:#04x}); save the "
                         "file as UTF-8") from None


def _not_utf8(path: Path) -> str:
    try:
        decode_utf8(path.read_bytes(), str(path))
    except ValueError as err:
        return str(err)
    return f"{path}: not UTF-8 text"


def _json_rows(path: Path, f) -> list[tuple[int, dict]]:
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
    return rows


def _delimited_rows(path: Path, f, suffix: str, quoting: str) -> list[tuple[int, dict]]:
    if quoting == "auto":
        quoting = "none" if suffix == ".tsv" else "standard"
    reader = csv.reader(f, delimiter="\t" if suffix == ".tsv" else ",",
                        quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL)
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path}: empty file (no header)") from None
    except csv.Error as err:
        raise ValueError(f"{path}:1: {err}") from None
    rows = []
    while True:
        start = reader.line_num + 1  # the record's first physical line (1-based)
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise ValueError(f"{path}:{start}: {err} (--quoting none reads quotes "
                             "literally)") from None
        if not any(fields):
            continue
        if len(fields) != len(header):
            spans = reader.line_num - start + 1
            hint = (f"; the record runs over {spans} lines, so a quote probably opened a field "
                    "that never closed (--quoting none reads quotes literally)"
                    if spans > 1 else "")
            raise ValueError(f"{path}:{start}: {len(fields)} fields where the header has "
                             f"{len(header)}{hint}")
        rows.append((start, dict(zip(header, fields))))
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
               name: str | None = None, quoting: str = "auto") -> TaskData:
    """A task from own files; classes are the training labels, in sorted order."""
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem type must be one of {PROBLEM_TYPES}, got {problem_type!r}")
    if not 1 <= len(text_columns) <= 2:
        raise ValueError(f"--text-columns takes one or two columns, got {text_columns}")
    columns = [*text_columns, label_column]
    train_rows, dev_rows = read_rows(train_file, quoting), read_rows(dev_file, quoting)
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
                  spec: TaskSpec, quoting: str = "auto") -> Split:
    """A labelled file scored against an existing task's labels (``diffprune eval``)."""
    rows = read_rows(path, quoting)
    _check_columns(path, rows, [*text_columns, label_column])
    return _split(path, rows, text_columns, label_column, spec.labels)
