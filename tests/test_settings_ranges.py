"""Every numeric run setting is checked where it is parsed, naming the flag."""

from __future__ import annotations

import argparse
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diffprune.bounds import bounded_fields
from diffprune.cli.main import build_parser, main
from diffprune.cli.settings import EvalSettings, PredictSettings
from diffprune.config import DiffPruneConfig
from diffprune.serve.limits import ServeLimits
from diffprune.training.settings import TrainSettings

SETTINGS = [TrainSettings, DiffPruneConfig, ServeLimits, EvalSettings, PredictSettings]
BOUNDED = [(cls, name, bounds) for cls in SETTINGS for name, bounds in bounded_fields(cls).items()]


def outside(bounds: tuple, distance: float) -> list[float]:
    """Values just past each end of a range (the end itself where it is open)."""
    low, high, open_low, open_high = bounds
    values = []
    if low is not None:
        values += [low - distance] + ([low] if open_low else [])
    if high is not None:
        values += [high + distance] + ([high] if open_high else [])
    return values


def test_every_dataclass_has_ranges():
    for cls in SETTINGS:
        assert bounded_fields(cls), cls.__name__


@given(field=st.sampled_from(BOUNDED), distance=st.floats(1e-3, 1e6))
def test_any_value_outside_its_range_is_refused_naming_the_flag(field, distance):
    cls, name, bounds = field
    for value in outside(bounds, distance):
        with pytest.raises(ValueError, match="--" + name.replace("_", "-")):
            cls(**{name: value})


@pytest.mark.parametrize("field", BOUNDED, ids=lambda f: f"{f[0].__name__}.{f[1]}")
def test_not_a_number_is_refused(field):
    cls, name, _ = field
    for value in (math.nan, math.inf, "3", True):
        with pytest.raises(ValueError, match="finite"):
            cls(**{name: value})


def _flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {o for a in sub.choices[command]._actions for o in a.option_strings}


COMMANDS = {"train": [TrainSettings, DiffPruneConfig], "eval": [EvalSettings],
            "predict": [PredictSettings], "serve": [ServeLimits]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_bounded_flag_is_parsed_against_its_range(command, tmp_path, capsys):
    flags = _flags(command)
    checked = 0
    for cls in COMMANDS[command]:
        for name, bounds in bounded_fields(cls).items():
            flag = "--" + name.replace("_", "-")
            if flag not in flags:
                continue
            for value in outside(bounds, 0.5):
                argv = [command] + ([str(tmp_path)] if command in ("eval", "predict") else [])
                with pytest.raises(SystemExit) as exit_info:
                    main([*argv, flag, repr(value)])
                assert exit_info.value.code == 2
                assert flag in capsys.readouterr().err
                checked += 1
    assert checked >= 2  # the subcommand exposes its ranged settings as flags


@pytest.mark.parametrize("argv, flag", [(["--epochs", "-1"], "--epochs"),
                                        (["--max-train-samples", "-5"], "--max-train-samples"),
                                        (["--max-seq-length", "0"], "--max-seq-length"),
                                        (["--max-seq-length", "-1"], "--max-seq-length")])
def test_the_command_line_exits_2_before_loading_anything(tmp_path, capsys, argv, flag):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:  # refused while the flags are parsed
        main(["train", "--output", str(out), *argv])
    assert exit_info.value.code == 2
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
