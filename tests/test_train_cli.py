"""``diffprune train / eval / predict`` end to end on a tiny model: methods, resume, NaN."""

from __future__ import annotations

import io
import json

import pytest
import torch
from conftest import GLUE_DIR
from safetensors.torch import load_file

from diffprune.cli.main import main
from diffprune.model import DiffPruneModel
from diffprune.task_file import load_task
from diffprune.training import stage as stage_module
from diffprune.training.health import open_gates_warning

pytestmark = pytest.mark.skipif(not (GLUE_DIR / "RTE").is_dir(), reason="needs the GLUE data")


def _train(tiny_base_dir, out, *extra):
    return main(["train", "--model", str(tiny_base_dir), "--data-dir", str(GLUE_DIR),
                 "--task", "rte", "--output", str(out), "--max-train-samples", "48",
                 "--max-eval-samples", "24", "--batch-size", "8", "--max-seq-length", "32",
                 "--epochs", "2", "--mask-epochs", "2", "--density", "0.05",
                 "--checkpoint-steps", "4", *extra])


def _same_task(a, b):
    first, second = load_task(a / "diff.safetensors"), load_task(b / "diff.safetensors")
    assert first.diffs.keys() == second.diffs.keys()
    assert first.config == second.config  # the rates each stage used, resumed or not
    for name in first.diffs:
        assert torch.equal(first.diffs[name].positions, second.diffs[name].positions), name
        assert torch.equal(first.diffs[name].values, second.diffs[name].values), name
    for name in first.head:
        assert torch.equal(first.head[name], second.head[name]), name


@pytest.mark.parametrize("method", ["diff-structured", "diff", "nonadaptive"])
def test_methods_write_task_file_metrics_and_log(tmp_path, tiny_base_dir, method, capsys):
    out = tmp_path / method
    assert _train(tiny_base_dir, out, "--method", method, "--mask-lr", "1e-3",
                  "--mask-head-lr", "2e-3") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    mask_stage = metrics["stages"]["mask"]
    # The rates the kept result ran at: a third of them where a retry of an unlearned stage
    # gave the best dev state.
    divisor = 3 if metrics.get("retry", {}).get("kept") == "retry" else 1
    assert (mask_stage["lr"], mask_stage["head_lr"]) == (1e-3 / divisor, 2e-3 / divisor)
    task = load_task(out / "diff.safetensors")
    assert metrics["method"] == method and task.nonzeros == metrics["nonzeros"]
    assert metrics["density_after_projection"] == pytest.approx(0.05, rel=1e-3)
    assert task.config["structured"] == (method != "diff")
    assert metrics["dev"] == metrics["dev_splits"]["dev"]
    assert abs(metrics["dev_from_file"]["accuracy"] - metrics["dev"]["accuracy"]) <= 1 / 24
    assert metrics["train_seconds"] > 0 and metrics["peak_memory_mb"] > 0
    stages = ["full finetuning"] if method == "nonadaptive" else ["L0 training"]
    log = (out / "train.log").read_text()
    assert all(s in log for s in [*stages, "fixed-mask", "task file:"])
    if method != "nonadaptive":
        # Density control steers 12 L0 steps towards 2x the 5% budget: no open-gates warning.
        assert metrics["density_target"] == pytest.approx(0.1)
        assert 0 < metrics["density_before_projection"] < 0.5
        assert "still expected nonzero" not in log
        assert not any("still expected nonzero" in w for w in metrics.get("warnings", []))
        trace = metrics["density_trace"]
        assert [t["step"] for t in trace] == [1, 5, 10]  # every 5 steps, and the first
        assert (out / "density.png").is_file()
    else:
        assert "dev_after_finetuning" in metrics
    assert not (out / "checkpoint").exists()  # a finished run keeps no training state
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["method"] == method and saved["diffprune"]["density"] == 0.05
    assert "task file:" in capsys.readouterr().out


def test_fixed_lambda_leaves_the_gates_open_and_says_so(tmp_path, tiny_base_dir):
    out = tmp_path / "fixed"
    assert _train(tiny_base_dir, out, "--density-control", "fixed") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # The paper's constant λ: 12 L0 steps leave the gates almost as open as they started.
    assert metrics["density_before_projection"] > 0.5 and "density_trace" not in metrics
    assert "still expected nonzero" in (out / "train.log").read_text()
    assert any("still expected nonzero" in w for w in metrics["warnings"])
    assert metrics["l0_log_alpha_lr"] == 0.1  # the configured rate, not raised


def test_open_gates_warning_only_past_ten_times_the_budget():
    assert open_gates_warning(0.033, 0.005, 300) is None  # the paper's widest end point
    assert open_gates_warning(0.05, 0.005, 300) is None
    warning = open_gates_warning(0.96, 0.005, 126)
    assert "126 L0 steps" in warning and "96.0%" in warning and "192x" in warning


@pytest.mark.parametrize("retry", [True, False])
def test_a_run_that_learns_nothing_says_so_and_still_writes_its_results(tmp_path, tiny_base_dir,
                                                                         capsys, retry):
    # A rate of 1e-9 moves nothing: the tiny model's near-zero logits answer the same for every
    # example, which no constant answer beats. The retry at a third of the rate cannot help, so
    # the run warns with the rate it ended at.
    out = tmp_path / "stuck"
    flag = "--retry-unlearned" if retry else "--no-retry-unlearned"
    assert _train(tiny_base_dir, out, "--method", "full", "--epochs", "1",
                  "--full-lr", "1e-9", flag) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    (warning,) = metrics["warnings"]
    log = (out / "train.log").read_text()
    assert "full finetuning stage" in warning
    assert ("--full-lr 1.1e-10" if retry else "--full-lr 3.3e-10") in warning
    assert warning in log and warning in capsys.readouterr().out
    assert ("full finetuning (retry)" in log) == retry == ("retry" in metrics)
    # Nothing moves at either rate, so the retry's epochs score no higher than the first try's
    # best: that state is kept, and its rate is the one recorded.
    assert metrics["stages"]["full"]["lr"] == 1e-9
    if retry:
        assert metrics["retry"]["stage"] == "full" and metrics["retry"]["first_lr"] == 1e-9
        assert metrics["retry"]["kept"] == "first try"
        assert metrics["full_best_step"] == metrics["retry"]["first_best_step"]
        assert "the first try's best dev state" in log
        assert metrics["retry"]["first_last_epoch_loss"] >= 0.98 * metrics["retry"][
            "constant_answer_loss"]
    assert (out / "model" / "model.safetensors").is_file()
    assert not (out / ".incoming").exists()  # the stage's starting state went with the run


def _tiny_base_without_dropout(folder):
    """The tiny base with dropout off: a stage then draws nothing at random, so two runs that
    start it from the same state and rates must agree bit for bit."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from diffprune.loading import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _score_retry_epochs_with(patch, bonus: float) -> None:
    """Add ``bonus`` to every dev score taken in a retry, to choose which try wins: a bonus
    that is the same for each epoch of a stage leaves the stage's own best epoch as it was."""
    from diffprune.training import recipe

    current = {}
    run_stage, evaluate = recipe.run_stage, recipe.evaluate

    def tracked_run_stage(ctx, stage, *args, **kwargs):
        current["stage"] = stage.name
        return run_stage(ctx, stage, *args, **kwargs)

    def scored(model, loaders, spec):
        scores = evaluate(model, loaders, spec)
        if current.get("stage", "").endswith("-retry"):
            scores = {s: {k: v + bonus for k, v in m.items()} for s, m in scores.items()}
        return scores

    patch.setattr(recipe, "run_stage", tracked_run_stage)
    patch.setattr(recipe, "evaluate", scored)


# 3 * 2**-10 divides by 3 exactly, so the retry's rate equals the third run's to the bit.
@pytest.mark.parametrize("retry_bonus", [None, 1.0, -1.0])
@pytest.mark.parametrize("method", ["diff-structured", "full"])
def test_the_retry_keeps_the_better_of_the_first_try_and_a_run_at_a_third_of_the_rate(
        tmp_path, monkeypatch, method, retry_bonus):
    """The retried run ends as the better of two runs made without it: the first try alone (the
    same rate) and the stage from the same start at a third of the rate; a tie keeps the first
    try. ``retry_bonus`` scores the retry's epochs higher or lower, to see each side win."""
    base = _tiny_base_without_dropout(tmp_path / "base")
    rate = "--mask-lr" if method != "full" else "--full-lr"
    runs = {"first": (str(3 * 2**-10), "--no-retry-unlearned"),
            "third": (str(2**-10), "--no-retry-unlearned"), "retried": (str(3 * 2**-10),)}
    for name, extra in runs.items():
        with monkeypatch.context() as patch:
            if name == "retried" and retry_bonus is not None:
                _score_retry_epochs_with(patch, retry_bonus)
            assert _train(base, tmp_path / name, "--method", method, rate, *extra) == 0
    first, third, retried = (json.loads((tmp_path / n / "metrics.json").read_text())
                             for n in runs)
    assert retried["retry"]["first_lr"] == 3 * 2**-10 and "retry" not in third
    assert retried["retry"]["first_best_scores"] == first["dev_splits"]
    # The retry trains as the third run does, epoch for epoch.
    stage = "fixed-mask" if method != "full" else "full finetuning"
    epochs = [[line.split(f"{stage}{tag}: ")[1].removesuffix(" (best so far)")
               for line in (tmp_path / n / "train.log").read_text().splitlines()
               if f"{stage}{tag}: step" in line and "train loss" in line]
              for n, tag in (("third", ""), ("retried", " (retry)"))]
    if retry_bonus is None:  # (a bonus shows in the logged scores)
        assert epochs[0] == epochs[1] and len(epochs[0]) == 2
        better = "third" if third["dev"]["accuracy"] > first["dev"]["accuracy"] else "first"
    else:
        better = "third" if retry_bonus > 0 else "first"
    assert retried["retry"]["kept"] == {"first": "first try", "third": "retry"}[better]
    kept = {"first": first, "third": third}[better]
    key = "mask" if method != "full" else "full"
    assert retried["stages"][key]["lr"] == kept["stages"][key]["lr"]
    step = "best_step" if method != "full" else "full_best_step"
    assert retried[step] == kept[step]
    if method == "full":
        a, b = (load_file(tmp_path / n / "model" / "model.safetensors")
                for n in ("retried", better))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    else:
        _same_task(tmp_path / "retried", tmp_path / better)


def test_a_stage_that_learns_runs_once(tmp_path, tiny_base_dir):
    # At a high rate over 16 epochs the tiny model fits its 48 examples (a last-epoch loss near
    # 0.13): no retry, and the run is the same as one with the retry off.
    runs = {flag: tmp_path / flag for flag in ("--retry-unlearned", "--no-retry-unlearned")}
    for flag, out in runs.items():
        assert _train(tiny_base_dir, out, "--method", "full", "--epochs", "16",
                      "--full-lr", "3e-3", flag) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in runs.values())
    assert "retry" not in a and "retry" not in a.get("stages", {})
    assert a["dev"] == b["dev"] and a["stages"]["full"]["lr"] == 3e-3
    assert "(retry)" not in (runs["--retry-unlearned"] / "train.log").read_text()


def test_full_finetuning_then_eval_and_predict(tmp_path, tiny_base_dir, capsys):
    out = tmp_path / "full"
    assert _train(tiny_base_dir, out, "--method", "full", "--epochs", "1") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "model" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["eval", str(out), "--data-dir", str(GLUE_DIR), "--max-eval-samples",
                 "24"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["scores"]["dev"]["accuracy"] == pytest.approx(metrics["dev"]["accuracy"])


def test_eval_and_predict_a_task_file(tmp_path, tiny_base_dir, capsys, monkeypatch):
    out = tmp_path / "run"
    assert _train(tiny_base_dir, out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(out / "diff.safetensors"), "--data-dir", str(GLUE_DIR),
                 "--max-eval-samples", "24", "--output", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["scores"]["dev"]["accuracy"] == metrics["dev_from_file"]["accuracy"]
    assert "rte dev (24 examples): accuracy" in capsys.readouterr().out

    monkeypatch.setattr("sys.stdin", io.StringIO(
        'A man sleeps.\tA person rests.\n{"text": "It rains.", "text_pair": "It is dry."}\n'))
    assert main(["predict", str(out)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert line["label"] in ("entailment", "not_entailment")
        assert sum(line["scores"].values()) == pytest.approx(1.0, abs=1e-5)

    monkeypatch.setattr("sys.stdin", io.StringIO("one\ttwo\tthree\n"))
    assert main(["predict", str(out)]) == 2
    assert "<stdin>:1: 3 tab-separated fields" in capsys.readouterr().err


def test_eval_refuses_a_task_with_other_labels(tmp_path, tiny_base_dir, capsys):
    out = tmp_path / "run"
    assert _train(tiny_base_dir, out, "--max-steps", "2") == 0
    assert main(["eval", str(out), "--task", "sst2", "--data-dir", str(GLUE_DIR)]) == 2
    assert "predicts" in capsys.readouterr().err


def _die_after_checkpoint(monkeypatch, count):
    real, calls = stage_module.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == count:
            raise KeyboardInterrupt  # killed right after this checkpoint
        return result

    monkeypatch.setattr(stage_module, "save_checkpoint", save_then_die)


# Checkpoints come at steps 4, 6 (epoch end), 8, 12 of each 12-step stage: the 1st is mid-epoch
# in L0 training, the 7th mid-epoch in fixed-mask finetuning, after a best state was kept.
@pytest.mark.parametrize("killed_after", [1, 7])
def test_resume_continues_a_killed_run_to_the_same_result(tmp_path, tiny_base_dir,
                                                          monkeypatch, killed_after, capsys):
    whole = tmp_path / "whole"
    assert _train(tiny_base_dir, whole) == 0
    killed = tmp_path / "killed"
    with monkeypatch.context() as patch:
        _die_after_checkpoint(patch, killed_after)
        assert _train(tiny_base_dir, killed) == 130
    progress = json.loads((killed / "checkpoint" / "progress.json").read_text())
    assert progress["stage"] == ("l0" if killed_after == 1 else "mask")
    assert progress["step"] == (4 if killed_after == 1 else 8)
    # The same folder without --resume is refused, and nothing is lost.
    assert _train(tiny_base_dir, killed) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(killed)]) == 0
    _same_task(whole, killed)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, killed))
    for key in ("dev", "dev_after_l0", "dev_after_projection", "best_step", "l0_last_loss",
                "density_before_projection", "l0_final_drift", "density_trace"):
        assert a[key] == b[key], key


# With the retry, the fixed-mask stage runs twice: the 8th checkpoint ends the first try (then
# the retry must start from the stage's saved start), the 11th is mid-epoch in the retry.
@pytest.mark.parametrize("killed_after", [8, 11])
def test_resume_continues_a_killed_retry_to_the_same_result(tmp_path, tiny_base_dir,
                                                            monkeypatch, killed_after):
    whole = tmp_path / "whole"
    assert _train(tiny_base_dir, whole) == 0
    a = json.loads((whole / "metrics.json").read_text())
    assert a["retry"]["stage"] == "mask"  # the tiny model learns nothing at the default rate
    # ... nor at a third of it: the first try's best is kept, so a run killed inside the retry
    # must bring that state back from its checkpoint.
    assert a["retry"]["kept"] == "first try"
    killed = tmp_path / "killed"
    with monkeypatch.context() as patch:
        _die_after_checkpoint(patch, killed_after)
        assert _train(tiny_base_dir, killed) == 130
    progress = json.loads((killed / "checkpoint" / "progress.json").read_text())
    assert (progress["stage"], progress["step"]) == (("mask", 12) if killed_after == 8 else
                                                     ("mask-retry", 8))
    assert main(["train", "--resume", str(killed)]) == 0
    _same_task(whole, killed)
    b = json.loads((killed / "metrics.json").read_text())
    for key in ("dev", "retry", "best_step", "stages"):
        assert a[key] == b[key], key
    assert not (killed / ".incoming").exists()


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path, tiny_base_dir, monkeypatch,
                                                      capsys):
    real, calls = DiffPruneModel.penalty, []

    def penalty_that_breaks(self):
        calls.append(1)
        value = real(self)
        return value * float("nan") if len(calls) == 6 else value

    monkeypatch.setattr(DiffPruneModel, "penalty", penalty_that_breaks)
    out = tmp_path / "run"
    assert _train(tiny_base_dir, out) == 2
    err = capsys.readouterr().err
    assert "loss became nan at step 6" in err and "last good checkpoint" in err
    progress = json.loads((out / "checkpoint" / "progress.json").read_text())
    assert progress["stage"] == "l0" and progress["step"] == 4
    assert not (out / "diff.safetensors").exists()
    monkeypatch.undo()
    # A checkpoint of two processes is not resumed by one (each continues its own randomness).
    rng = out / "checkpoint" / "rng_0.safetensors"
    extra = rng.with_name("rng_1.safetensors")
    extra.write_bytes(rng.read_bytes())
    assert main(["train", "--resume", str(out)]) == 2
    assert "written by 2 process(es); resume with as many" in capsys.readouterr().err
    extra.unlink()
    assert main(["train", "--resume", str(out)]) == 0  # the kept checkpoint is usable
    assert (out / "diff.safetensors").is_file()


def test_conflicting_method_flags_are_refused(tmp_path, tiny_base_dir, capsys):
    assert _train(tiny_base_dir, tmp_path / "x", "--method", "diff", "--structured") == 2
    assert "contradicts" in capsys.readouterr().err


def test_config_file_with_flags_overriding(tmp_path, tiny_base_dir):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"train": {"max_steps": 2, "mask_lr": 0.01},
                                  "diffprune": {"l0_lambda": 1e-6}}))
    out = tmp_path / "run"
    assert _train(tiny_base_dir, out, "--config", str(config), "--mask-lr", "0.002") == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["max_steps"] == 2 and saved["train"]["mask_lr"] == 0.002
    assert saved["diffprune"]["l0_lambda"] == 1e-6
    config.write_text(json.dumps({"train": {"nonsense": 1}}))
    assert _train(tiny_base_dir, tmp_path / "bad", "--config", str(config)) == 2


def test_a_finished_run_is_not_overwritten_without_the_flag(tmp_path, tiny_base_dir, capsys):
    out = tmp_path / "run"
    assert _train(tiny_base_dir, out, "--max-steps", "2") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert _train(tiny_base_dir, out, "--max-steps", "2", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "holds a finished run" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert _train(tiny_base_dir, out, "--max-steps", "2", "--seed", "1", "--overwrite") == 0
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 1


def _published(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("killed_after", [1, 7])
def test_a_killed_overwrite_leaves_the_earlier_run_whole(tmp_path, tiny_base_dir, monkeypatch,
                                                         killed_after, capsys):
    out = tmp_path / "run"
    assert _train(tiny_base_dir, out) == 0
    assert main(["eval", str(out), "--data-dir", str(GLUE_DIR), "--max-eval-samples", "8",
                 "--max-seq-length", "32"]) == 0
    before = _published(out)
    assert {"diff.safetensors", "metrics.json", "config.json", "eval.json"} <= before.keys()
    with monkeypatch.context() as patch:
        _die_after_checkpoint(patch, killed_after)
        assert _train(tiny_base_dir, out, "--seed", "1", "--overwrite") == 130
    # Killed in L0 training or in fixed-mask finetuning: every published file is as it was.
    assert _published(out) == before
    # Continued, the new run replaces the whole earlier set: no stale eval.json beside it.
    assert main(["train", "--resume", str(out)]) == 0
    after = _published(out)
    assert "eval.json" not in after and after["diff.safetensors"] != before["diff.safetensors"]
    assert json.loads(after["config.json"])["train"]["seed"] == 1
    assert not (out / ".incoming").exists() and not (out / "checkpoint").exists()
    assert "task file:" in after["train.log"].decode()


def test_a_failed_overwrite_of_full_finetuning_keeps_its_model(tmp_path, tiny_base_dir,
                                                               monkeypatch):
    out = tmp_path / "run"
    assert _train(tiny_base_dir, out, "--method", "full", "--max-steps", "2") == 0
    model = {p.name: p.read_bytes() for p in (out / "model").iterdir()}
    monkeypatch.setattr(DiffPruneModel, "project", lambda self: 1 / 0)  # fails after stage 1
    with pytest.raises(ZeroDivisionError):
        _train(tiny_base_dir, out, "--max-steps", "2", "--overwrite")
    assert {p.name: p.read_bytes() for p in (out / "model").iterdir()} == model
    assert not (out / "diff.safetensors").exists()


def test_train_can_write_a_lossless_task_file(tmp_path, tiny_base_dir):
    from diffprune.task_file import read_metadata

    out = tmp_path / "run"
    assert _train(tiny_base_dir, out, "--max-steps", "2", "--encoding", "lossless") == 0
    assert read_metadata(out / "diff.safetensors")["encoding"] == "lossless"


def _favour_full_epoch(patch, favoured: int, states: list) -> None:
    """Score full finetuning's epoch ``favoured`` (1-based) far above the others, and record
    a copy of the weights at each of its epoch ends and the finetuned model the diff is taken
    from (``states``: the epochs' copies, then the diff's source). The real evaluation still
    runs, so the run draws the same random numbers as without the patch."""
    from diffprune.training import recipe

    current = {}
    run_stage, evaluate = recipe.run_stage, recipe.evaluate
    from_finetuned = recipe.nonadaptive_from_finetuned

    def tracked_run_stage(ctx, stage, *args, **kwargs):
        current.update(stage=stage.name, epoch=0)
        try:
            return run_stage(ctx, stage, *args, **kwargs)
        finally:
            current["stage"] = None  # evaluations between stages are not epoch ends

    def scored(model, loaders, spec):
        scores = evaluate(model, loaders, spec)
        if current.get("stage") == "full":
            current["epoch"] += 1
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            bonus = 10.0 if current["epoch"] == favoured else 0.0
            scores = {s: {k: v + bonus for k, v in m.items()} for s, m in scores.items()}
        return scores

    def recorded(pretrained, finetuned, *args, **kwargs):
        states.append({k: v.detach().clone() for k, v in finetuned.state_dict().items()})
        return from_finetuned(pretrained, finetuned, *args, **kwargs)

    patch.setattr(recipe, "run_stage", tracked_run_stage)
    patch.setattr(recipe, "evaluate", scored)
    patch.setattr(recipe, "nonadaptive_from_finetuned", recorded)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("favoured", [1, 2])
def test_nonadaptive_prunes_the_best_or_the_last_state_of_full_finetuning(
        tmp_path, tiny_base_dir, monkeypatch, favoured):
    """--nonadaptive-from best takes the diff from the epoch dev scored highest, --nonadaptive-
    from last from the stage's end; where the best epoch is the last, the two runs are the
    same bit for bit (what lets a benchmark record such a run once for both)."""
    runs, states = {}, {}
    for choice in ("best", "last"):
        states[choice] = []
        with monkeypatch.context() as patch:
            _favour_full_epoch(patch, favoured, states[choice])
            assert _train(tiny_base_dir, tmp_path / choice, "--method", "nonadaptive",
                          "--nonadaptive-from", choice) == 0
        runs[choice] = json.loads((tmp_path / choice / "metrics.json").read_text())
    for choice, (first, last, source) in states.items():
        assert not _same_state(first, last)  # two epochs that trained apart
        kept = first if choice == "best" and favoured == 1 else last
        assert _same_state(source, kept), choice
    steps = runs["best"]["full_steps"]
    assert runs["best"]["full_best_step"] == runs["last"]["full_best_step"] == favoured * steps / 2
    assert runs["best"]["full_kept_step"] == favoured * steps / 2
    assert runs["last"]["full_kept_step"] == steps
    assert runs["last"]["stages"]["full"]["kept_step"] == steps
    if favoured == 2:
        _same_task(tmp_path / "best", tmp_path / "last")
        assert runs["best"]["dev"] == runs["last"]["dev"]
    else:
        assert runs["best"]["nonzeros"] == runs["last"]["nonzeros"]  # the same budget
