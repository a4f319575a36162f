"""PEFT habits: disable_adapter, the bank's use/disabled blocks, mixed-task calls, the
trainable-parameters line, save/load refusals that name their cause and change nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_bert, token_batch
from taskfiles import make_task

from diffprune import DiffPruneConfig, DiffPruneModel, TaskBank, get_diffprune_model, save_task
from diffprune.task_file import TaskFileError


@pytest.fixture()
def two_tasks(tmp_path):
    base = tiny_bert()
    paths, models = {}, {}
    for seed, name in enumerate(["a", "b"]):
        _, wrapped, task = make_task(base, seed=seed)
        paths[name] = save_task(task, tmp_path / f"{name}.safetensors", "lossless")
        models[name] = wrapped
    return base, paths, models


def test_use_activates_for_the_block_and_restores_what_was_active(two_tasks):
    base, paths, models = two_tasks
    bank = TaskBank(copy.deepcopy(base))
    for name, path in paths.items():
        bank.add(name, path)
    x = token_batch(3)
    with torch.no_grad():
        pristine = bank.model(input_ids=x).logits
        with bank.use("a") as model:
            torch.testing.assert_close(model(input_ids=x).logits,
                                       models["a"](input_ids=x).logits)
            with bank.use("b"):
                assert bank.active == "b"
            assert bank.active == "a"
            with bank.disabled() as plain:
                assert bank.active is None
                assert torch.equal(plain(input_ids=x).logits, pristine)
            assert bank.active == "a"
        assert bank.active is None
        assert torch.equal(bank.model(input_ids=x).logits, pristine)


def test_a_block_that_raises_still_restores(two_tasks):
    base, paths, _ = two_tasks
    bank = TaskBank(copy.deepcopy(base))
    bank.add("a", paths["a"])
    with pytest.raises(RuntimeError, match="inside"), bank.use("a"):
        raise RuntimeError("inside the block")
    assert bank.active is None


def test_mixed_call_returns_rows_in_input_order(two_tasks):
    base, paths, models = two_tasks
    bank = TaskBank(copy.deepcopy(base))
    for name, path in paths.items():
        bank.add(name, path)
    x = token_batch(5)
    names = ["b", "a", "b", "a", "a"]
    with torch.no_grad():
        out = bank(task_names=names, input_ids=x)
        for i, name in enumerate(names):
            expected = models[name](input_ids=x[i:i + 1]).logits[0]
            torch.testing.assert_close(out.logits[i], expected, atol=1e-5, rtol=1e-5)
    assert bank.active is None  # the call leaves the bank as it found it
    bank.set_adapter("b")  # PEFT's name for activate
    assert bank.active == "b"


@pytest.mark.parametrize("names", [["a", "nope"], ["missing"]])
def test_an_unknown_task_name_is_named(two_tasks, names):
    base, paths, _ = two_tasks
    bank = TaskBank(copy.deepcopy(base))
    bank.add("a", paths["a"])
    with pytest.raises(KeyError, match=names[-1]):
        bank(task_names=names, input_ids=token_batch(len(names)))


def test_disable_adapter_gives_the_base_weights_inside_the_block():
    base = tiny_bert()
    x = token_batch(2)
    with torch.no_grad():
        plain = copy.deepcopy(base)(input_ids=x).logits
    model = get_diffprune_model(base, DiffPruneConfig(fused=False, density=0.2)).eval()
    with torch.no_grad():
        for site in model.sites:
            model.tensor(site, "diff").normal_()
        model.project()
        changed = model(input_ids=x).logits
        with model.disable_adapter():
            torch.testing.assert_close(model(input_ids=x).logits, plain)
        torch.testing.assert_close(model(input_ids=x).logits, changed)
    assert not torch.allclose(changed, plain)


def test_print_trainable_parameters_prints_pefts_line(capsys):
    model = get_diffprune_model(tiny_bert(), DiffPruneConfig(fused=False))
    model.print_trainable_parameters()
    first = capsys.readouterr().out.splitlines()[0]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert first.startswith(f"trainable params: {trainable:,} || all params: ")
    assert "trainable%: " in first


def test_save_before_projection_says_what_to_call(tmp_path):
    model = get_diffprune_model(tiny_bert(), DiffPruneConfig(fused=False))
    with pytest.raises(RuntimeError, match="project"):
        model.save_pretrained(tmp_path)
    assert not list(tmp_path.iterdir())


def test_loading_onto_another_base_is_refused_and_leaves_it_untouched(two_tasks, tmp_path):
    base, paths, models = two_tasks
    model = models["a"]
    model.save_pretrained(tmp_path / "t", labels=["no", "yes"])
    other = tiny_bert()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    before = {n: p.clone() for n, p in other.named_parameters()}
    with pytest.raises(TaskFileError, match="trained against base"):
        DiffPruneModel.from_pretrained(other, tmp_path / "t")
    after = dict(other.named_parameters())
    assert before.keys() == after.keys()
    assert all(torch.equal(before[n], after[n]) for n in before)
    loaded = DiffPruneModel.from_pretrained(copy.deepcopy(base), tmp_path / "t")
    assert loaded.stage == "masked" and loaded.nonzero_count() == model.nonzero_count()
