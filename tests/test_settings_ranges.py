"""Every numeric run setting is checked where it is parsed, naming the flag."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diffprune.cli.main import main
from diffprune.training.settings import _RANGES, TrainSettings


@given(name=st.sampled_from(sorted(_RANGES)), below=st.floats(1e-6, 1e6))
def test_any_value_below_its_bound_is_refused_naming_the_flag(name, below):
    low, strict = _RANGES[name]
    with pytest.raises(ValueError, match="--" + name.replace("_", "-")):
        TrainSettings(**{name: low - below})
    if strict:
        with pytest.raises(ValueError, match="--" + name.replace("_", "-")):
            TrainSettings(**{name: low})


@pytest.mark.parametrize("name", sorted(_RANGES))
def test_not_a_number_is_refused(name):
    with pytest.raises(ValueError, match="finite"):
        TrainSettings(**{name: math.nan})


@pytest.mark.parametrize("argv, flag", [(["--epochs", "-1"], "--epochs"),
                                        (["--max-train-samples", "-5"], "--max-train-samples"),
                                        (["--max-seq-length", "0"], "--max-seq-length"),
                                        (["--max-seq-length", "-1"], "--max-seq-length")])
def test_the_command_line_exits_2_before_loading_anything(tmp_path, capsys, argv, flag):
    out = tmp_path / "run"
    assert main(["train", "--output", str(out), *argv]) == 2
    assert flag in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", [["train"], ["eval", "RUN"],
                                     ["predict", "RUN", "--input", "TEXTS"]])
def test_a_model_path_that_does_not_exist_is_named_as_such(tmp_path, capsys, command):
    from taskfiles import make_task

    from diffprune.task_file import save_task

    run = tmp_path / "run"
    save_task(make_task()[2], run / "diff.safetensors")
    (tmp_path / "texts.txt").write_text("a fine film\n")
    places = {"RUN": str(run), "TEXTS": str(tmp_path / "texts.txt")}
    argv = [places.get(a, a) for a in command]
    missing = str(tmp_path / "no" / "such" / "model")
    extra = ["--output", str(tmp_path / "out")] if command == ["train"] else []
    assert main([*argv, "--model", missing, *extra]) == 2
    assert f"--model {missing}: no such folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["predict", "RUN", "--batch-size", "0"], "--batch-size"),
    (["eval", "RUN", "--batch-size", "-3"], "--batch-size"),
    (["eval", "RUN", "--max-seq-length", "0"], "--max-seq-length"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--batch-wait-ms", "nan"], "--batch-wait-ms"),
])
def test_other_subcommands_refuse_out_of_range_numbers_by_flag(tmp_path, capsys, argv, flag):
    argv = [str(tmp_path) if a == "RUN" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


def test_merge_refuses_an_output_that_exists(tmp_path, capsys):
    from taskfiles import make_task

    from diffprune.task_file import save_task

    task = save_task(make_task()[2], tmp_path / "run" / "diff.safetensors")
    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"keep me")
    assert main(["merge", str(task), "--output", str(existing)]) == 2
    assert "exists" in capsys.readouterr().err and existing.read_bytes() == b"keep me"
