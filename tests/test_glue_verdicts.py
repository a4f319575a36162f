"""The benchmark report's verdicts (``benchmarks/glue_results.py``), on small fixture results.

Each goal is checked met and missed; the renderer only formats what these functions return.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from glue_render import last_state_verdicts, verdict_lines  # noqa: E402
from glue_results import (  # noqa: E402
    claim_verdicts,
    control_rows,
    control_verdicts,
    density_points,
    point_means,
    summarise,
    whole_data_order,
)


def _run(method, task, seed, final, *, metric="spearman", bytes_=300_000, **extra):
    return {"method": method, "task": task, "seed": seed, "metric": metric,
            "dev": {metric: final / 100}, "bytes_per_task": bytes_, "train_seconds": 1.0,
            "peak_memory_mb": 1.0, **extra}


def _row(**tasks):
    return {**tasks, "tasks": list(tasks), "bytes_per_task": tasks.pop("bytes", 300_000)}


def _by_goal(verdicts):
    return {v.goal: v for v in verdicts}


def test_the_claim_against_full_finetuning_is_met_only_at_or_above_it():
    for structured, met in ((70.0, True), (69.99, False), (72.0, True)):
        summary = summarise({"full": [_run("full", "stsb", 0, 70.0)],
                             "diff-structured": [_run("diff-structured", "stsb", 0, structured)]})
        (verdict,) = claim_verdicts(summary, {})
        assert verdict.met is met
        assert verdict.value == pytest.approx(structured - 70.0)


def test_the_gap_is_over_the_tasks_both_rows_ran():
    summary = summarise({
        "full": [_run("full", "stsb", 0, 70.0), _run("full", "rte", 0, 50.0)],
        "diff-structured": [_run("diff-structured", "stsb", s, v) for s, v in ((0, 71), (1, 73))]})
    (verdict,) = claim_verdicts(summary, {})
    assert verdict.value == pytest.approx(2.0)  # the mean of two seeds, on STS-B only
    assert "over STS-B" in verdict.measured and "RTE" not in verdict.measured


@pytest.mark.parametrize("structured_bytes, score, met", [
    (300_000, 75.0, True), (300_001, 75.0, False), (300_000, 74.0, False), (100_000, 73.0, False)])
def test_a_peer_is_beaten_only_with_more_points_and_no_more_bytes(structured_bytes, score, met):
    summary = {"diff-structured": _row(stsb=score, bytes=structured_bytes),
               "houlsby": _row(stsb=74.0, bytes=300_000)}
    verdict = _by_goal(claim_verdicts(summary, {}))["diff-structured beats houlsby at no more "
                                                    "bytes"]
    assert verdict.met is met
    assert f"{structured_bytes / 300_000:.2f}x its bytes" in verdict.measured


def test_the_better_lora_row_is_chosen_on_the_tasks_both_ran():
    summary = {"diff-structured": _row(stsb=72.0), "lora": _row(stsb=60.0, rte=99.0),
               "lora-pooler": _row(stsb=74.0)}
    verdicts = _by_goal(claim_verdicts(summary, {}))
    better = verdicts["diff-structured beats the better LoRA row (lora + pooler)"]
    assert better.met is False and better.value == pytest.approx(-2.0)
    summary["lora-pooler"] = _row(stsb=71.0)
    better = _by_goal(claim_verdicts(summary, {}))[
        "diff-structured beats the better LoRA row (lora + pooler)"]
    assert better.met is True and better.value == pytest.approx(1.0)


@pytest.mark.parametrize("family, rows", [("LoRA", ("lora", "lora-pooler")),
                                          ("Houlsby", ("houlsby", "houlsby-pooler"))])
def test_each_peer_family_is_held_to_its_better_row(family, rows):
    """With and without the pooler trained, the claim is held against the better of the two;
    a family with one row has that row as its better one."""
    plain, pooler = rows
    summary = {"diff-structured": _row(stsb=72.0), plain: _row(stsb=73.0),
               pooler: _row(stsb=60.0)}
    verdict = _by_goal(claim_verdicts(summary, {}))[
        f"diff-structured beats the better {family} row ({plain})"]
    assert verdict.met is False and verdict.value == pytest.approx(-1.0)
    del summary[plain]
    label = "lora + pooler" if family == "LoRA" else "houlsby + pooler"
    verdict = _by_goal(claim_verdicts(summary, {}))[
        f"diff-structured beats the better {family} row ({label})"]
    assert verdict.met is True and verdict.value == pytest.approx(12.0)


def _density(method, task, density, final):
    return _run(method, task, 0, final, density=density)


def test_the_order_of_the_pruned_methods_is_judged_on_the_means_at_every_budget():
    density = {
        "diff-structured": [_density("diff-structured", "stsb", 0.001, 70),
                            _density("diff-structured", "stsb", 0.01, 60)],
        "diff": [_density("diff", "stsb", 0.001, 65), _density("diff", "stsb", 0.01, 65)],
        "nonadaptive": [_density("nonadaptive", "stsb", 0.001, 60),
                        _density("nonadaptive", "stsb", 0.01, 62)]}
    points = point_means(density_points(density, {}))
    verdicts = _by_goal(claim_verdicts({}, points))
    order = verdicts["diff-structured ≥ diff ≥ non-adaptive on the mean over the swept tasks"]
    assert (order.value, order.met) == (1, False)  # holds at 0.1%, not at 1%
    assert "1 of 2 budgets" in order.measured
    assert "(breaks: 1%: diff-structured under diff by 5.0)" in order.measured  # diff ≥ non
    trend = next(v for g, v in verdicts.items() if g.startswith("diff-structured minus"))
    assert trend.met is None and "0.1%: +10.0" in trend.measured and "1%: -2.0" in trend.measured
    density["nonadaptive"][1] = _density("nonadaptive", "stsb", 0.01, 50)
    density["diff"][1] = _density("diff", "stsb", 0.01, 55)
    order = _by_goal(claim_verdicts({}, point_means(density_points(density, {}))))[
        "diff-structured ≥ diff ≥ non-adaptive on the mean over the swept tasks"]
    assert order.met is True and "breaks" not in order.measured


def test_a_task_out_of_order_counts_only_through_the_mean():
    """The goal is the order of the means over the swept tasks; the task-by-task count is
    reported beside it and judges nothing. A budget some method lacks a task at is left out."""
    runs = {"diff-structured": [("stsb", 70), ("rte", 50)], "diff": [("stsb", 60), ("rte", 55)],
            "nonadaptive": [("stsb", 55), ("rte", 52)]}
    density = {m: [_density(m, t, 0.001, v) for t, v in rs] for m, rs in runs.items()}
    density["diff"].append(_density("diff", "stsb", 0.01, 99))  # 1%: one method, one task
    verdicts = _by_goal(claim_verdicts({}, point_means(density_points(density, {}))))
    order = verdicts["diff-structured ≥ diff ≥ non-adaptive on the mean over the swept tasks"]
    assert order.met is True and "1 of 1 budgets" in order.measured  # 60 ≥ 57.5 ≥ 53.5
    assert "RTE, STS-B" in order.measured
    by_task = verdicts["diff-structured ≥ diff ≥ non-adaptive, task by task"]
    assert by_task.met is None and "1 of 2 (density, task) points" in by_task.measured
    density["diff-structured"][0] = _density("diff-structured", "stsb", 0.001, 64)
    order = _by_goal(claim_verdicts({}, point_means(density_points(density, {}))))[
        "diff-structured ≥ diff ≥ non-adaptive on the mean over the swept tasks"]
    assert order.met is False  # 57 < 57.5
    assert "(breaks: 0.1%: diff-structured under diff by 0.5)" in order.measured


def test_the_last_state_baseline_is_read_beside_the_goal_and_judges_nothing():
    """Non-adaptive pruning from full finetuning's last state gets the same order lines, each
    marked a diagnostic and none met or missed; the goal's lines read the row as it ran."""
    scores = {"diff-structured": 70, "diff": 65, "nonadaptive": 68, "nonadaptive-last": 60}
    density = {m: [_density(m, "stsb", d, v) for d in (0.001, 0.01)]
               for m, v in scores.items()}
    points = point_means(density_points(density, {}))
    goal = _by_goal(claim_verdicts({}, points))[
        "diff-structured ≥ diff ≥ non-adaptive on the mean over the swept tasks"]
    assert goal.met is False  # diff (65) under nonadaptive (68)
    diagnostic = _by_goal(last_state_verdicts(points))
    order = diagnostic["diff-structured ≥ diff ≥ nonadaptive from the last state on the mean "
                       "over the swept tasks (diagnostic)"]
    assert order.met is None and order.value == 2 and "2 of 2 budgets" in order.measured
    assert all(v.met is None and v.goal.endswith("(diagnostic)") for v in diagnostic.values())
    assert " — " not in verdict_lines(list(diagnostic.values()))
    assert last_state_verdicts(point_means(density_points(
        {m: rs for m, rs in density.items() if m != "nonadaptive-last"}, {}))) == []


def test_the_order_gaps_pair_runs_by_task_and_seed_and_judge_nothing():
    """Each gap of the order is the mean ± standard error of score differences of Table 1's
    runs with the same task and seed, over the swept tasks only; a run without its pair is left
    out, and the line itself where either gap has fewer than two pairs."""
    matrix = {
        "diff-structured": [_run("diff-structured", "stsb", s, v)
                            for s, v in enumerate((74, 76, 75))]
        + [_run("diff-structured", "sst2", 0, 90, metric="accuracy")],
        "diff": [_run("diff", "stsb", s, v) for s, v in enumerate((72, 75, 75))],
        "nonadaptive": [_run("nonadaptive", "stsb", s, v) for s, v in enumerate((73, 77))]
        + [_run("nonadaptive", "sst2", 0, 10, metric="accuracy")],
    }
    points = {"diff": {0.005: {"stsb": 74.0}}}  # the swept tasks: STS-B only
    (line,) = [v for v in claim_verdicts({}, points, matrix=matrix)
               if v.goal.endswith("paired by seed (Table 1's runs)")]
    assert line.met is None
    # structured minus diff: 2, 1, 0 -> +1.00 ± 0.58 (sd 1 over 3 pairs); diff minus
    # non-adaptive: -1, -2 (seed 2 has no pair) -> -1.50 ± 0.50; SST-2 was not swept
    assert "diff-structured minus diff +1.00 ± 0.58 (3 pairs)" in line.measured
    assert "diff minus non-adaptive -1.50 ± 0.50 (2 pairs)" in line.measured
    assert "of STS-B," in line.measured and " — " not in verdict_lines([line])
    matrix["nonadaptive"] = matrix["nonadaptive"][:1]  # one pair: no spread to report
    assert not [v for v in claim_verdicts({}, points, matrix=matrix) if "paired" in v.goal]
    assert not [v for v in claim_verdicts({}, points) if "paired" in v.goal]


def test_the_whole_data_order_reads_the_tasks_all_three_ran_and_judges_nothing():
    """On whole training sets the order is read over the tasks every pruned method ran, on
    the means and task by task, with no verdict of its own; a task one method lacks is left
    out, and with no common task there is no line."""
    scores = {"diff-structured": {"stsb": 87, "rte": 55, "mrpc": 86},
              "diff": {"stsb": 86, "rte": 56},
              "nonadaptive": {"stsb": 85, "rte": 50, "mrpc": 99}}
    matrix = {m: [_run(m, t, 0, v) for t, v in by.items()] for m, by in scores.items()}
    (line,) = whole_data_order(matrix)
    assert line.met is None and " — " not in verdict_lines([line])
    # RTE and STS-B (MRPC lacks diff): 71.00 / 71.00 / 67.50 holds; STS-B only, task by task
    assert "means over RTE, STS-B 71.00 / 71.00 / 67.50, so the order holds" in line.measured
    assert "holds on 1 of 2 (STS-B); one seed each" in line.measured
    matrix["nonadaptive"].append(_run("nonadaptive", "rte", 1, 70))  # RTE's mean: 60
    (line,) = whole_data_order(matrix)
    assert "71.00 / 71.00 / 72.50, so the order does not hold" in line.measured
    assert "up to 2 seeds each" in line.measured
    assert whole_data_order({"diff": matrix["diff"]}) == []


def test_where_runs_trained_names_each_by_its_row_not_its_file():
    """A fixed-λ run's file names the method it trained ("diff-structured"); the line that says
    where runs trained names the row it stands in, so it is not read as the default's."""
    from glue_render import devices_line

    gpu = {"device": "NVIDIA H200"}
    matrix = {"diff-structured": [_run("diff-structured", "rte", 0, 54, device="cpu")],
              "diff-structured-fixed": [_run("diff-structured", "rte", 0, 53, **gpu),
                                        _run("diff-structured", "mrpc", 0, 84, **gpu)]}
    assert devices_line(matrix) == (
        "2 on NVIDIA H200 (diff-structured, paper's fixed λ on RTE, diff-structured, paper's "
        "fixed λ on MRPC); 1 on this CPU (diff-structured on RTE)")


def _l0(method, seed, density, target, after_l0, after_projection, final):
    def scores(v):
        return {"dev": {"spearman": v / 100}}

    return _run(method, "stsb", seed, final, density_before_projection=density,
                density_target=target, dev_after_l0=scores(after_l0),
                dev_after_projection=scores(after_projection), selection_split="dev")


def test_density_control_goals_count_the_default_rows_only():
    matrix = {"diff-structured": [_l0("diff-structured", 0, 0.0102, 0.01, 50.0, 51.0, 72.0),
                                  _l0("diff-structured", 1, 0.0070, 0.01, 50.0, 47.0, 70.0)],
              "diff-structured-fixed": [_l0("diff-structured-fixed", 0, 0.96, None, 54.0, 11.0,
                                            71.0)]}
    rows = control_rows(matrix)
    assert [r["method"] for r in rows] == ["diff-structured"] * 2 + ["diff-structured-fixed"]
    assert rows[1]["off_target"] == pytest.approx(-0.3) and rows[1]["drop"] == pytest.approx(3.0)
    on_target, projection = control_verdicts(rows)
    assert (on_target.value, on_target.met) == (1, False)
    assert "furthest: -30%" in on_target.measured
    assert (projection.value, projection.met) == (1, False)
    assert "largest fall: 3.0 points" in projection.measured
    assert all(v.met for v in control_verdicts(rows[:1]))
    assert control_verdicts(rows[2:]) == []  # no default row: no verdict


def test_a_verdict_line_says_met_missed_or_nothing():
    summary = {"full": _row(stsb=70.0), "diff-structured": _row(stsb=69.0)}
    assert verdict_lines(claim_verdicts(summary, {})).endswith("— missed.")
    summary["diff-structured"] = _row(stsb=71.0)
    assert verdict_lines(claim_verdicts(summary, {})).endswith("— met.")


def test_whole_data_rows_of_the_held_w_rate_stand_beside_the_default_not_for_it(tmp_path):
    """Runs trained before stage 1's w rate followed the density are rows of their own, and the
    goals' verdicts read the default's rows only."""
    import json

    from glue_render import fulldata_section

    def put(folder, method, final):
        path = tmp_path / folder / method / "stsb-seed0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_run(method, "stsb", 0, final)))

    put("glue-fulldata", "full", 86.0)
    put("glue-fulldata", "diff-structured", 85.0)
    put("glue-fulldata-w-rate-held", "diff-structured", 87.0)
    text = fulldata_section(tmp_path, tmp_path)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith("| ")}
    assert "| 85.0 |" in rows["diff-structured"]
    assert "| 87.0 |" in rows["diff-structured, stage 1's w rate held"]
    assert "-1.00 points" in text and "+1.00 points" not in text


def _put(root, folder, method, name, run):
    import json

    path = root / folder / method / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))


def test_held_runs_keep_their_own_sweep_beside_the_default(tmp_path):
    """Table 1's held rows take their 0.5% sweep point from their own runs, never from the
    default's; a default row without a sweep gets no point."""
    from glue_render import with_held

    _put(tmp_path, "glue", "diff", "stsb-seed0", _run("diff", "stsb", 0, 80.0))
    _put(tmp_path, "glue-w-rate-held", "diff", "stsb-seed0", _run("diff", "stsb", 0, 70.0))
    _put(tmp_path, "glue-density-w-rate-held", "diff", "stsb-d0.001-seed0",
         _density("diff", "stsb", 0.001, 60.0))
    matrix = with_held(tmp_path, "glue")
    assert list(matrix) == ["diff", "diff-w-rate-held"]
    points = point_means(density_points(with_held(tmp_path, "glue-density"), matrix))
    assert points == {"diff-w-rate-held": {0.001: {"stsb": 60.0}, 0.005: {"stsb": 70.0}}}


def test_a_diagnostic_of_an_l0_method_sits_beside_the_fixed_lambda_run_it_changed(tmp_path):
    """The diagnostics ran when the L0 methods trained under the paper's fixed λ: their Table 1
    run is today's "-fixed" row, not the default's."""
    from glue_render import diagnostics_table

    base = "train --method diff --task stsb --seed 0 --mask-epochs 2"
    _put(tmp_path, "glue", "diff", "stsb-seed0", _run("diff", "stsb", 0, 77.0, command=base))
    _put(tmp_path, "glue", "diff-fixed", "stsb-seed0",
         _run("diff-fixed", "stsb", 0, 71.0, command=base))
    _put(tmp_path, "diagnostics", ".", "stsb-mask-epochs-6",
         _run("diff", "stsb", 0, 76.0, command=base.replace("epochs 2", "epochs 6")))
    row = diagnostics_table(tmp_path / "diagnostics", tmp_path / "glue", tmp_path / "longer",
                            tmp_path / "density").splitlines()[-1]
    assert "--mask-epochs 6 (was 2)" in row and "| 76.0 | 71.0 |" in row
