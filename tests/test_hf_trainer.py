"""The Transformers Trainer runs the whole method: both stages, honest arguments, no pickle."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_bert
from transformers import TrainerCallback

from diffprune import DiffPruneConfig, DiffPruneModel, TaskBank, get_diffprune_model, load_task
from diffprune.training import DiffPruneTrainer, DiffPruneTrainingArguments
from diffprune.training.checkpoint import trainable_state
from diffprune.training.health import UNLEARNED_MARGIN


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n=24):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, 99, (n, 8), generator=g)
        self.labels = (self.ids[:, 0] > 50).long()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def _args(tmp_path, **kw):
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=2,
                  mask_epochs=2, report_to=[], use_cpu=True, logging_steps=1)
    values.update(kw)
    return DiffPruneTrainingArguments(**values)


class _FixedMaskRates(TrainerCallback):
    """The rate each fixed-mask step's diff group was scheduled from."""

    def __init__(self):
        self.rates = []

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model.stage == "masked":
            (diff,) = [g for g in optimizer.param_groups if g.get("name") == "diff"]
            self.rates.append(diff["initial_lr"])


def _model(**kw):
    config = DiffPruneConfig(fused=False, density=0.05, **kw)
    return get_diffprune_model(tiny_bert(), config)


def test_one_train_call_runs_both_stages_and_honours_the_arguments(tmp_path, monkeypatch):
    model = _model()
    clipped = []
    original = DiffPruneModel.clip_grad_norms

    def spy(self):
        clipped.append(self.diffprune_config.diff_max_grad_norm)
        return original(self)

    monkeypatch.setattr(DiffPruneModel, "clip_grad_norms", spy)
    args = _args(tmp_path, learning_rate=7e-3, weight_decay=0.01, max_grad_norm=0.5,
                 mask_learning_rate=2e-3, mask_head_learning_rate=4e-3,
                 retry_unlearned=False)  # the retry's rates: the test below
    trainer = DiffPruneTrainer(model, args, train_dataset=_Rows(), eval_dataset=_Rows(8))
    assert args.max_grad_norm == 0.5  # the caller's arguments are not changed
    trainer.train()
    assert set(trainer.stage_results) == {"l0", "mask"}
    assert model.stage == "masked"
    assert model.nonzero_count() == pytest.approx(0.05 * model.num_gated, abs=1)
    # Stage 1 ran at the given rate, decay and clip; stage 2 at the fixed-mask rate.
    assert clipped[:6] == [0.5] * 6 and len(clipped) == 12
    assert trainer.stage_results["l0"].global_step == 6
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["diff"]["initial_lr"] == 2e-3 and groups["diff"]["weight_decay"] == 0.01
    assert groups["head"]["initial_lr"] == 4e-3
    assert model.diffprune_config.diff_lr == 7e-3  # the config keeps stage 1's rate (task file)
    assert trainer.density_trace and trainer.density_trace[0]["step"] == 1


def test_learning_rate_changes_the_diff_rate(tmp_path):
    rates = {}
    for lr in (1e-3, 4e-3):
        model = _model()
        trainer = DiffPruneTrainer(model, _args(tmp_path, learning_rate=lr, max_steps=1,
                                                mask_epochs=0), train_dataset=_Rows())
        trainer.train()
        rates[lr] = trainer.stage_results["l0"]
        assert model.stage == "masked"
        assert trainer.optimizer.param_groups[0]["initial_lr"] == lr


@pytest.mark.parametrize("power", [0.5, 0.0])
def test_stage_one_w_rate_follows_the_density_as_in_the_cli(tmp_path, monkeypatch, power):
    import diffprune.training.trainer as trainer_module

    seen = []
    real = trainer_module.make_scheduler

    def spy(optimizer, steps, warmup, diff_scale=None):
        seen.append(diff_scale)
        return real(optimizer, steps, warmup, diff_scale)

    monkeypatch.setattr(trainer_module, "make_scheduler", spy)
    model = _model(diff_lr_density_power=power)
    DiffPruneTrainer(model, _args(tmp_path, mask_epochs=1), train_dataset=_Rows()).train()
    stage_one = seen[0]
    if power == 0:
        assert stage_one is None
    else:  # the target falls from the start density to 2 x 5%: the rate rises ~3x by the end
        assert stage_one(0) == pytest.approx(1.0) and 2.5 < stage_one(6) <= 10
    assert all(s is None for s in seen[1:])  # the fixed-mask stage keeps its plain decay


@pytest.mark.parametrize("bad, named", [
    ({"optim": "sgd"}, "optim='sgd'"),
    ({"lr_scheduler_type": "cosine"}, "lr_scheduler_type"),
    ({"save_strategy": "steps"}, "save_strategy='steps'"),
    ({"eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True},
     "load_best_model_at_end"),
    ({"torch_compile": True}, "torch_compile"),
    ({"gradient_checkpointing": True}, "gradient_checkpointing"),
])
def test_arguments_the_method_cannot_honour_are_refused_by_name(tmp_path, bad, named):
    with pytest.raises(ValueError, match=named):
        DiffPruneTrainer(_model(), _args(tmp_path, **bad), train_dataset=_Rows())


def test_save_model_writes_the_task_file_and_no_pickle(tmp_path):
    model = _model()
    trainer = DiffPruneTrainer(model, _args(tmp_path / "run", max_steps=2),
                               train_dataset=_Rows())
    trainer.train()
    out = tmp_path / "saved"
    trainer.save_model(str(out))
    assert sorted(p.name for p in out.iterdir()) == ["diff.safetensors"]
    assert not list((tmp_path / "run").rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))
    task = load_task(out)
    assert task.task["labels"] == ["LABEL_0", "LABEL_1"]
    assert task.nonzeros == model.nonzero_count()


def test_best_evaluation_of_the_fixed_mask_stage_is_kept(tmp_path):
    model = _model()
    args = _args(tmp_path, eval_strategy="epoch", metric_for_best_model="loss", mask_epochs=3,
                 mask_learning_rate=0.5)  # a rate so high that later epochs get worse
    trainer = DiffPruneTrainer(model, args, train_dataset=_Rows(), eval_dataset=_Rows(8))
    trainer.train()
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 3
    assert trainer.evaluate()["eval_loss"] == pytest.approx(min(evals), rel=1e-5)


class _FixedMaskStates(TrainerCallback):
    """The trainable state at each evaluation of the fixed-mask stage."""

    def __init__(self):
        self.states = []

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if model.stage == "masked":
            self.states.append({k: v.clone() for k, v in trainable_state(model).items()})


@pytest.mark.parametrize("scores, kept", [([0.9, 0.1, 0.2, 0.3], "first try"),
                                          ([0.1, 0.2, 0.9, 0.3], "retry"),
                                          ([0.5, 0.1, 0.5, 0.3], "first try")])  # a tie
def test_a_retry_keeps_the_best_evaluation_of_both_tries(tmp_path, monkeypatch, scores, kept):
    """The fixed-mask stage's two tries (two evaluations each) are scored by a script; the
    model ends in the state of the best-scored evaluation, whichever try it came from."""
    import diffprune.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "unlearned", lambda loss, constant: True)  # retry
    model = _model()
    script = iter(scores)

    def scripted(_):
        return {"score": next(script) if model.stage == "masked" else 0.0}

    args = _args(tmp_path, eval_strategy="epoch", metric_for_best_model="score",
                 mask_learning_rate=1e-2)
    trainer = DiffPruneTrainer(model, args, train_dataset=_Rows(), eval_dataset=_Rows(8),
                               compute_metrics=scripted)
    seen = _FixedMaskStates()
    trainer.add_callback(seen)
    trainer.train()
    assert len(seen.states) == 4 and trainer.retry["kept"] == kept
    best = seen.states[scores.index(max(scores))]
    now = trainable_state(model)
    assert now.keys() == best.keys() and all(torch.equal(now[k], best[k]) for k in now)
    assert not all(torch.equal(now[k], seen.states[1][k]) for k in now)  # the states differ


def test_saved_task_reloads_into_model_bank_and_merge_with_the_same_logits(tmp_path):
    model = _model()
    trainer = DiffPruneTrainer(model, _args(tmp_path, max_steps=3), train_dataset=_Rows())
    trainer.train()
    model.save_pretrained(tmp_path / "task")
    ids = _Rows(5).ids
    torch.manual_seed(0)
    reloaded = DiffPruneModel.from_pretrained(tiny_bert(), tmp_path / "task").eval()
    with torch.no_grad():
        logits = reloaded(input_ids=ids).logits
    torch.manual_seed(0)
    bank = TaskBank(tiny_bert())
    bank.add("t", tmp_path / "task")
    with bank.use("t") as m, torch.no_grad():
        bank_logits = m(input_ids=ids).logits
    assert bank.active is None  # restored
    merged = reloaded.merge_and_unload().eval()
    with torch.no_grad():
        merged_logits = merged(input_ids=ids).logits
    assert torch.allclose(logits, bank_logits, atol=1e-5)
    assert torch.allclose(logits, merged_logits, atol=1e-5)


@pytest.mark.parametrize("retry", [True, False])
def test_a_fixed_mask_stage_that_learns_nothing_warns_and_still_finishes(tmp_path, retry):
    """At a rate of 1e-9 nothing moves: the tiny model's near-zero logits answer the same for
    every example, so the last epoch's loss is a constant answer's. The stage is trained once
    more at a third of its rate (as ``diffprune train`` does), which cannot help either; the
    run says so, in the Trainer's terms, with the rate it ended at, and still ends in the
    fixed-mask stage with a task to save."""
    model = _model()
    args = _args(tmp_path, learning_rate=1e-9, head_learning_rate=1e-9, mask_learning_rate=1e-9,
                 retry_unlearned=retry)
    trainer = DiffPruneTrainer(model, args, train_dataset=_Rows())
    seen = _FixedMaskRates()
    trainer.add_callback(seen)
    trainer.train()
    (warning,) = trainer.warnings
    assert "fixed-mask stage" in warning
    assert ("mask_learning_rate=1.1e-10" if retry else "mask_learning_rate=3.3e-10") in warning
    assert (trainer.retry is not None) == retry
    if retry:
        assert trainer.retry["first_lr"] == 1e-9 and "mask_first_try" in trainer.stage_results
        assert trainer.retry["first_last_epoch_loss"] >= (1 - UNLEARNED_MARGIN) * trainer.retry[
            "constant_answer_loss"]
    steps = 2 * len(_Rows()) // 8  # per try
    assert seen.rates == [1e-9] * steps + ([1e-9 / 3] * steps if retry else [])
    assert model.stage == "masked"
    trainer.save_model(str(tmp_path / "task"))
    assert (tmp_path / "task" / "diff.safetensors").exists()


@pytest.mark.parametrize("accumulation", [1, 2])
def test_the_watch_sees_the_losses_the_trainer_logs(tmp_path, accumulation):
    """The check reads the same per-step losses the Trainer logs (micro-batches summed under
    gradient accumulation) and the labels of every example of the stage."""
    model = _model()
    rows = _Rows()
    args = _args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=accumulation,
                 mask_learning_rate=0.05)
    trainer = DiffPruneTrainer(model, args, train_dataset=rows)
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    watched = [float(x) for x in trainer.watch.step_losses]
    assert len(watched) == len(logged) == 2 * len(rows) // (4 * accumulation)
    assert watched == pytest.approx(logged, abs=1e-3)
    assert trainer.watch.tally.tolist() == [*(2 * torch.bincount(rows.labels)).tolist(), 0]
    shares = torch.bincount(rows.labels).double() / len(rows)
    constant = float(-(shares * shares.log()).sum())
    learned = trainer.watch.last_epoch_loss(2) < (1 - UNLEARNED_MARGIN) * constant
    assert bool(trainer.warnings) != bool(learned)
