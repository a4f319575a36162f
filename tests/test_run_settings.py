"""The runners reuse a run only when its recorded settings equal a planned run's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import GLUE_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from run_settings import changes, planned_settings, recorded_settings  # noqa: E402

from diffprune.cli.main import main  # noqa: E402

pytestmark = pytest.mark.skipif(not (GLUE_DIR / "RTE").is_dir(), reason="needs the GLUE data")


def test_a_planned_command_matches_what_its_run_records(tmp_path, tiny_base_dir):
    argv = ["train", "--method", "diff", "--model", str(tiny_base_dir), "--data-dir",
            str(GLUE_DIR), "--task", "rte", "--max-train-samples", "16", "--max-eval-samples",
            "8", "--batch-size", "8", "--max-seq-length", "32", "--max-steps", "1",
            "--density", "0.05"]
    out = tmp_path / "run"
    assert main([*argv, "--output", str(out)]) == 0
    recorded = recorded_settings(out)
    # Where it wrote is not what it trained: another output folder plans the same run.
    assert planned_settings(["python", "-m", "x", *argv, "--output", "elsewhere"]) == recorded
    # Spelling a default out changes nothing; changing a setting is seen, by name.
    assert planned_settings([*argv, "--seed", "0"]) == recorded
    other = planned_settings([*argv, "--diff-lr", "1e-3"])
    assert changes(other, recorded) == {"diffprune.diff_lr": (1e-3, recorded["diffprune"][
        "diff_lr"])}
    assert recorded["diffprune"]["structured"] is False  # --method diff, as train records it
