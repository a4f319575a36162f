"""Bad inputs beyond the first sweep: each exits 2 with its cause named, writing nothing."""

from __future__ import annotations

import pytest
from conftest import GLUE_DIR
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprune.cli.main import main
from diffprune.task_file import TaskFileError, from_bytes


@pytest.fixture
def place(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "one.tsv").write_text("text\tlabel\nhello\t1\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "nested.json").write_text('{"train": 3}')
    return tmp_path


CASES = [
    (["train", "--config", "{list.json}"], "a config file is a JSON object"),
    (["train", "--config", "{nested.json}"], "a config file is a JSON object"),
    (["train", "--train-file", "{folder}", "--dev-file", "{one.tsv}"], "is a folder"),
    (["train", "--train-file", "{one.tsv}", "--dev-file", "{one.tsv}", "--text-columns", "a",
      "b", "c"], "one or two columns"),
    (["train", "--task", "nosuch", "--data-dir", str(GLUE_DIR)], "unknown GLUE task 'nosuch'"),
    (["train", "--recipe", "nosuch"], "--recipe 'nosuch'"),
    (["train", "--resume", "{folder}"], "is not a diffprune run folder"),
    (["predict", "{one.tsv}"], "does not start with a safetensors header"),
    (["predict", "{folder}"], "diff.safetensors: no such file"),
    (["inspect", "{one.tsv}"], "does not start with a safetensors header"),
    (["merge", "{one.tsv}", "--output", "{merged}"], "does not start with a safetensors header"),
]


@pytest.mark.parametrize("argv, cause", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_each_is_refused_with_its_cause(place, capsys, argv, cause):
    names = {f"{{{p.name}}}": str(p) for p in place.iterdir()}
    names["{merged}"] = str(place / "m")
    argv = [names.get(a, a) for a in argv]
    if argv[0] == "train":
        argv += ["--output", str(place / "out")]
    before = sorted(p.name for p in place.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert cause in err and "Traceback" not in err
    assert sorted(p.name for p in place.iterdir()) == before  # nothing written


def test_predict_input_that_is_a_folder_is_named(place, capsys):
    from taskfiles import make_task

    from diffprune.task_file import save_task

    task = save_task(make_task()[2], place / "run" / "diff.safetensors")
    assert main(["predict", str(task), "--input", str(place / "folder")]) == 2
    assert f"--input {place / 'folder'}: a folder, not a file" in capsys.readouterr().err


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_no_message_about_a_non_task_file_quotes_its_bytes_as_a_number(data):
    """Whatever a file holds, refusing it says what is wrong, never its leading bytes read as
    a header length (which is how a file's content leaked into messages)."""
    if data[8:9] == b"{":
        return
    with pytest.raises(TaskFileError) as info:
        from_bytes(data, "f")
    message = str(info.value)
    if len(data) >= 8:
        assert str(int.from_bytes(data[:8], "little")) not in message or \
            int.from_bytes(data[:8], "little") < 10
