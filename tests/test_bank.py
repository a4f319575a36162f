"""The multi-task bank: bit-exact switching, independence, mixed batches, merge, refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_bert, token_batch
from taskfiles import make_task

from diffprune.bank import TaskBank
from diffprune.fingerprint import fingerprint
from diffprune.task_file import TaskFileError, load_task, save_task


def _state(model):
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


@pytest.fixture()
def three_tasks(tmp_path):
    base = tiny_bert()
    paths = {}
    for seed, name in enumerate(["a", "b", "c"]):
        _, wrapped, task = make_task(base, seed=seed)
        paths[name] = (save_task(task, tmp_path / f"{name}.safetensors", "lossless"), wrapped)
    return base, paths


def test_activate_matches_the_trained_model_and_revert_is_bit_exact(three_tasks):
    base, paths = three_tasks
    original = _state(base)
    bank = TaskBank(copy.deepcopy(base))
    x = token_batch(4)
    for name, (path, _) in paths.items():
        bank.add(name, path)
    for name in ["a", "b", "a", "c", "b"]:
        expected = paths[name][1](input_ids=x).logits
        torch.testing.assert_close(bank.forward(name, input_ids=x).logits, expected,
                                   rtol=0, atol=1e-6)
    bank.deactivate()
    after = _state(bank.model)
    assert after.keys() == original.keys()
    for key in original:
        assert torch.equal(after[key], original[key]), key  # bit for bit


def test_tasks_are_independent(three_tasks):
    base, paths = three_tasks
    bank = TaskBank(copy.deepcopy(base))
    x = token_batch(4)
    bank.add("a", paths["a"][0])
    alone = bank.forward("a", input_ids=x).logits
    bank.add("b", paths["b"][0])
    bank.forward("b", input_ids=x)
    bank.remove("b")
    torch.testing.assert_close(bank.forward("a", input_ids=x).logits, alone, rtol=0, atol=0)
    assert [row["name"] for row in bank.describe()] == ["a"]
    assert bank.describe()[0]["file_bytes"] == paths["a"][0].stat().st_size
    with pytest.raises(ValueError, match="already loaded"):
        bank.add("a", paths["a"][0])
    with pytest.raises(KeyError, match="no task named 'zzz'"):
        bank.activate("zzz")


def test_mixed_batch_rows_match_each_task_alone(three_tasks):
    base, paths = three_tasks
    bank = TaskBank(copy.deepcopy(base))
    for name, (path, _) in paths.items():
        bank.add(name, path)
    x = token_batch(7)
    mask = torch.ones_like(x)
    tasks = ["b", "a", "c", "a", "b", "b", "c"]
    rows = bank.forward_mixed(tasks, input_ids=x, attention_mask=mask)
    for i, task in enumerate(tasks):
        alone = bank.forward(task, input_ids=x[i:i + 1], attention_mask=mask[i:i + 1]).logits[0]
        torch.testing.assert_close(rows[i], alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="rows"):
        bank.forward_mixed(["a"], input_ids=x)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mixed_batches_of_padded_rows_answer_as_each_row_alone(three_tasks, side):
    """Rows of many lengths, padded to the batch's longest: each task's group may drop the
    columns that are padding in all its rows, and every answer stays that of the row alone."""
    base, paths = three_tasks
    bank = TaskBank(copy.deepcopy(base))
    for name in "abc":
        bank.add(name, paths[name][0])
    x = token_batch(8, length=9)
    lengths = [9, 2, 5, 1, 7, 3, 4, 6]
    mask = torch.zeros_like(x)
    for i, n in enumerate(lengths):
        if side == "right":
            mask[i, :n] = 1
        else:
            mask[i, 9 - n:] = 1
    x = x * mask  # padding token 0
    tasks = ["b", "a", "a", "c", "b", "a", "c", "c"]  # "a"'s rows end by column 5
    rows = bank.forward_mixed(tasks, input_ids=x, attention_mask=mask)
    for i, task in enumerate(tasks):
        # BERT counts positions from the first column: a left-padded row keeps its padding.
        keep = mask[i].bool() if side == "right" else torch.ones(9, dtype=torch.bool)
        alone = bank.forward(task, input_ids=x[i:i + 1, keep],
                             attention_mask=mask[i:i + 1, keep]).logits[0]
        torch.testing.assert_close(rows[i], alone, rtol=1e-5, atol=1e-5)


def test_merge_writes_a_transformers_model_with_the_same_predictions(three_tasks, tmp_path):
    from transformers import AutoModelForSequenceClassification

    base, paths = three_tasks
    bank = TaskBank(copy.deepcopy(base))
    bank.add("b", paths["b"][0])
    out = bank.merge("b", tmp_path / "merged")
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert merged.config.id2label == {0: "no", 1: "yes"}
    x = token_batch(5)
    torch.testing.assert_close(merged(input_ids=x).logits, bank.forward("b", input_ids=x).logits,
                               rtol=0, atol=1e-6)
    assert not list(out.glob("*.bin")) and list(out.glob("*.safetensors"))


def test_mismatched_base_is_refused_naming_both(three_tasks):
    _, paths = three_tasks
    other = tiny_bert()  # a different random init
    bank = TaskBank(other, {"name_or_path": "other-bert"})
    task = load_task(paths["a"][0])
    with pytest.raises(TaskFileError) as err:
        bank.add("a", paths["a"][0])
    message = str(err.value)
    assert task.base["fingerprint"] in message and "tiny-bert" in message
    names = list(task.diffs)
    assert fingerprint((n, dict(other.named_parameters())[n]) for n in names) in message
    assert "other-bert" in message and bank.tasks == []
