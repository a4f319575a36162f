"""BENCHMARKS.md is generated: rendering the committed results reproduces it byte for byte."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import GLUE_DIR

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import glue_matrix  # noqa: E402
import glue_render  # noqa: E402

pytestmark = pytest.mark.skipif(not (GLUE_DIR / "RTE").is_dir(), reason="needs the GLUE data")


def test_rendering_the_committed_results_reproduces_benchmarks_md():
    results = ROOT / "benchmarks" / "results"
    out = glue_render.render(results, glue_matrix.chosen_rates(results / "glue-sweep"), GLUE_DIR)
    assert out["benchmarks"] == (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8"), (
        "BENCHMARKS.md is out of date: run `python benchmarks/glue_matrix.py render`")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{glue_render.README_START}\n{out['readme']}\n{glue_render.README_END}" in readme


def test_the_fixed_text_types_no_number():
    """Every number in BENCHMARKS.md comes from a results file or a named constant: the
    template's own prose holds none (file names, figure names and section titles aside)."""
    names = (r"`[^`]*`|\([^)]*\.(png|md|json)\)|\{[a-z0-9_]+\}|Table [13]|Figure [12]|"
             r"all-MiniLM-L6-v2|MiniLM-L6|L0|F1|float16|fp32|[Ss]tage 1|SST-2")
    prose = re.sub(names, "", glue_render.TEMPLATE)
    assert not re.findall(r"\d", prose), re.findall(r".{20}\d.{20}", prose)


def test_the_readme_first_command_block_is_its_record():
    import json

    import readme_first_command as first

    record = json.loads(first.RECORD.read_text())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{first.START}\n{first.block(record)}\n{first.END}" in readme
    assert record["command"] in readme  # the command the README tells a user to run


def test_the_first_commands_record_keeps_its_warnings_and_last_lines():
    import readme_first_command as first

    retry = ("fixed-mask: the last epoch's training loss, 0.6930, is no better than a constant "
             "answer's (0.6931); training the stage again from its start at a third of its rates")
    stdout = "\n".join(["L0 training: step 25", retry, "fixed-mask (retry): step 156",
                        "warning: stuck", "fixed-mask: step 312",
                        "task file: x", "L0 training ended at 1%", "dev accuracy: 50"])
    assert first.summary_lines(stdout) == [retry, "warning: stuck", "task file: x",
                                           "L0 training ended at 1%", "dev accuracy: 50"]
    assert first.summary_lines("a\nb\nc") == ["a", "b", "c"]
