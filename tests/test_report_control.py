"""The benchmark report's density-control verdicts, on small fixture runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import glue_report  # noqa: E402


def _run(task, seed, density, target, after_l0, after_projection, final):
    def scores(v):
        return {"dev": {"spearman": v / 100}}

    return {"task": task, "seed": seed, "metric": "spearman", "selection_split": "dev",
            "density_before_projection": density, "density_target": target,
            "dev_after_l0": scores(after_l0), "dev_after_projection": scores(after_projection),
            "dev": {"spearman": final / 100}}


def test_control_verdicts_count_runs_on_target_and_projection_losses():
    matrix = {"diff-structured": [_run("stsb", 0, 0.0102, 0.01, 50.0, 51.0, 72.0),
                                  _run("stsb", 1, 0.0070, 0.01, 50.0, 47.0, 70.0)],
              "diff-structured-fixed": [_run("stsb", 0, 0.96, None, 54.0, 11.0, 71.0)]}
    rows = glue_report.control_rows(matrix)
    assert [r["method"] for r in rows] == ["diff-structured", "diff-structured",
                                          "diff-structured-fixed"]
    assert rows[1]["off_target"] == pytest.approx(-0.3)
    assert rows[1]["drop"] == pytest.approx(3.0)
    text = glue_report.control_verdicts(rows)
    assert "1 of 2 runs — missed (furthest: -30%" in text  # the fixed-λ row is not counted
    assert "Dev falls by at most 2 points at projection**: 1 of 2 runs — missed" in text
    rows = rows[:1]
    assert glue_report.control_verdicts(rows).count("— met") == 2


def test_no_controlled_run_says_so():
    assert "No run with density control yet" in glue_report.control_verdicts([])


def test_verdicts_use_the_better_lora_row():
    def row(avg, **tasks):
        return {**tasks, "avg": avg, "tasks": list(tasks), "bytes_per_task": 300_000}

    summary = {"full": row(70.0, stsb=70.0), "diff-structured": row(72.0, stsb=72.0),
               "lora": row(60.0, stsb=60.0), "lora-pooler": row(74.0, stsb=74.0)}
    text = glue_report.verdicts(summary, {})
    assert "diff-structured at 0.5% vs full finetuning" in text and "+2.00 points — met" in text
    assert "the better LoRA row (lora + pooler)** over STS-B: -2.00 points — missed" in text
    # Chosen on the tasks both LoRA rows ran, not on averages over different task sets.
    summary["lora"] = row(90.0, stsb=60.0, rte=99.0)
    text = glue_report.verdicts(summary, {})
    assert "the better LoRA row (lora + pooler)** over STS-B" in text
