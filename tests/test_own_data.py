"""Own data files: CSV, TSV and JSONL; classification and regression; bad files refused early."""

from __future__ import annotations

import json

import pytest

from diffprune.cli.main import main
from diffprune.data.files import load_files


def _write(path, rows, kind):
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "," if kind == "csv" else "\t"
        header = list(rows[0])
        lines = [sep.join(header)] + [sep.join(str(r[c]) for c in header) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    return path


CLASSES = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"},
           {"text": "fine film", "label": "pos"}]
SCORES = [{"a": "x", "b": "y", "score": 0.5}, {"a": "p", "b": "q", "score": 4.25}]


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl"])
def test_classification(tmp_path, kind):
    train = _write(tmp_path / f"train.{kind}", CLASSES, kind)
    dev = _write(tmp_path / f"dev.{kind}", CLASSES[:2], kind)
    data = load_files(train, dev, ["text"], "label")
    assert data.spec.labels == ("neg", "pos") and data.spec.metric == "accuracy"
    assert data.spec.name == "train"
    assert data.train.labels == [1, 0, 1] and data.dev["dev"].texts == [("good film",),
                                                                        ("bad film",)]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_regression_with_a_pair(tmp_path, kind):
    train = _write(tmp_path / f"train.{kind}", SCORES, kind)
    data = load_files(train, train, ["a", "b"], "score", name="sim")
    assert data.spec.labels is None and data.spec.metric == "spearman"
    assert data.spec.name == "sim"
    assert data.train.labels == [0.5, 4.25] and data.train.texts[1] == ("p", "q")


def test_whole_numbers_are_classes_unless_told(tmp_path):
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 10}, {"text": "c", "label": 2}]
    train = _write(tmp_path / "t.jsonl", rows, "jsonl")
    assert load_files(train, train, ["text"], "label").spec.labels == ("1", "2", "10")
    reg = load_files(train, train, ["text"], "label", problem_type="regression")
    assert reg.spec.labels is None and reg.train.labels == [1.0, 10.0, 2.0]


BAD = {
    "missing column": (lambda t, d: (t, d, ["sentence"], "label"), r"train.csv:2: no column "
                       r"'sentence' \(columns: text, label\)"),
    "unknown dev label": (lambda t, d: (t, _write(d, [{"text": "x", "label": "meh"}], "csv"),
                                        ["text"], "label"), r"dev.csv:2: unknown label 'meh'"),
    "empty file": (lambda t, d: (t, _empty(d), ["text"], "label"), "empty file|no examples"),
    "header only": (lambda t, d: (t, _header_only(d), ["text"], "label"), "no examples"),
    "one class": (lambda t, d: (_write(t, CLASSES[:1], "csv"), d, ["text"], "label"),
                  "one class only"),
    "three text columns": (lambda t, d: (t, d, ["text", "text", "label"], "label"),
                           "one or two columns"),
    "bad json": (lambda t, d: (_bad_json(t), d, ["text"], "label"), r"train.jsonl:2: not valid "
                 "JSON"),
    "unknown suffix": (lambda t, d: (t.rename(t.with_suffix(".xlsx")), d, ["text"], "label"),
                       "unknown file type"),
    "missing file": (lambda t, d: (t.parent / "nope.csv", d, ["text"], "label"), "not found"),
}


def _empty(path):
    path.write_text("")
    return path


def _header_only(path):
    path.write_text("text,label\n")
    return path


def _bad_json(path):
    path = path.with_suffix(".jsonl")
    path.write_text('{"text": "a", "label": "pos"}\n{"text": oops}\n')
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_are_named(tmp_path, case):
    train = _write(tmp_path / "train.csv", CLASSES, "csv")
    dev = _write(tmp_path / "dev.csv", CLASSES, "csv")
    make, pattern = BAD[case]
    args = make(train, dev)
    with pytest.raises((ValueError, FileNotFoundError), match=pattern):
        load_files(*args)


def test_regression_score_that_is_not_a_number(tmp_path):
    train = _write(tmp_path / "train.csv", SCORES, "csv")
    dev = _write(tmp_path / "dev.csv", [{"a": "x", "b": "y", "score": "high"}], "csv")
    with pytest.raises(ValueError, match=r"dev.csv:2: score 'high' is not a number"):
        load_files(train, dev, ["a", "b"], "score", problem_type="regression")


def test_cli_refuses_a_bad_file_before_training(tmp_path, tiny_base_dir, capsys):
    train = _write(tmp_path / "train.csv", CLASSES, "csv")
    dev = _write(tmp_path / "dev.csv", [{"text": "x", "label": "meh"}], "csv")
    out = tmp_path / "run"
    code = main(["train", "--model", str(tiny_base_dir), "--train-file", str(train),
                 "--dev-file", str(dev), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown label 'meh'" in err and "Traceback" not in err
    assert not out.exists()  # nothing trained, nothing written
