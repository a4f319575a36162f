"""Own data yields exactly its rows, whatever their quotes: written by a standard writer, read
back the same (property test); GLUE's own TSV read as own data equals the --data-dir reader."""

from __future__ import annotations

import csv
import io

import pytest
from conftest import GLUE_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffprune.data.files import load_files, read_rows
from diffprune.data.glue import get_task, load_glue

# Text with the characters that break naive readers: quotes, delimiters, CR/LF, non-ASCII.
text = st.text(st.sampled_from(list('ab "\'\t,\r\nxé€😀')), min_size=1, max_size=12).filter(
    lambda t: t.strip())
rows = st.lists(st.tuples(text, st.sampled_from(["yes", "no"])), min_size=2, max_size=12)


def _write(path, header, records, *, delimiter, quoting, bom):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(records)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=rows, bom=st.booleans())
def test_csv_written_with_standard_quoting_reads_back_the_same(tmp_path, records, bom):
    path = tmp_path / "data.csv"
    _write(path, ["text", "label"], records, delimiter=",", quoting=csv.QUOTE_MINIMAL, bom=bom)
    got = [(r["text"], r["label"]) for _, r in read_rows(path)]
    assert got == records


tsv_text = text.filter(lambda t: not any(c in t for c in "\t\r\n"))  # TSV cannot hold these


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.tuples(tsv_text, st.sampled_from(["yes", "no"])), min_size=2,
                        max_size=12), bom=st.booleans())
def test_tsv_quotes_are_literal_so_no_row_vanishes(tmp_path, records, bom):
    path = tmp_path / "data.tsv"
    body = "text\tlabel\r\n" + "".join(f"{a}\t{b}\r\n" for a, b in records)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))
    got = [(r["text"], r["label"]) for _, r in read_rows(path)]
    assert got == records


def test_a_quote_that_never_closes_is_refused_with_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('text,label\nfine,yes\n"opens and never closes,no\nthird,yes\nfourth,no\n')
    with pytest.raises(ValueError, match=r"bad.csv:3: .*(never closed|EOF)"):
        read_rows(path)


def test_a_row_with_a_missing_field_names_its_line(tmp_path):
    path = tmp_path / "short.tsv"
    path.write_text("text\tlabel\na\tyes\nb\nc\tno\n")
    with pytest.raises(ValueError, match=r"short.tsv:3: 1 fields where the header has 2"):
        read_rows(path)


def test_a_byte_that_is_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin.tsv"
    path.write_bytes("text\tlabel\nok\tyes\ncaf\xe9\tno\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.tsv:3: not UTF-8 text \(byte 0xe9\)"):
        read_rows(path)


@pytest.mark.skipif(not (GLUE_DIR / "RTE").is_dir(), reason="needs the GLUE data")
def test_glue_rte_read_as_own_data_gives_the_same_examples():
    rte = GLUE_DIR / "RTE"
    own = load_files(rte / "train.tsv", rte / "dev.tsv", ["sentence1", "sentence2"], "label")
    glue = load_glue(get_task("rte"), str(GLUE_DIR))
    assert own.train.texts == glue.train.texts
    assert [own.spec.labels[y] for y in own.train.labels] == \
        [glue.spec.labels[y] for y in glue.train.labels]
    assert len(own.dev["dev"]) == len(glue.dev["dev"])


def test_predict_input_that_is_not_utf8_names_its_line(tmp_path, capsys):
    from taskfiles import make_task

    from diffprune.cli.main import main
    from diffprune.task_file import save_task

    task = save_task(make_task()[2], tmp_path / "run" / "diff.safetensors")
    texts = tmp_path / "in.txt"
    texts.write_bytes(b"fine\nalso fine\ncaf\xe9\n")
    assert main(["predict", str(task), "--input", str(texts)]) == 2
    assert f"{texts}:3: not UTF-8 text (byte 0xe9)" in capsys.readouterr().err
