"""A client of the public contract only, on the bundled base and a few RTE examples: one
``trainer.train()`` for both stages, save, reload, and the same logits everywhere."""

from __future__ import annotations

import pytest
import torch
from conftest import GLUE_DIR

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (GLUE_DIR / "RTE").is_dir(), reason="needs the GLUE data")]


def _rte(n: int):
    import csv

    with open(GLUE_DIR / "RTE" / "train.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    labels = {"entailment": 0, "not_entailment": 1}
    return [(r["sentence1"], r["sentence2"], labels[r["label"]]) for r in rows]


def test_train_save_reload_bank_and_merge_agree(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from diffprune import (
        DiffPruneConfig,
        DiffPruneModel,
        TaskBank,
        default_model_path,
        get_diffprune_model,
        load_task,
    )
    from diffprune.training import DiffPruneTrainer, DiffPruneTrainingArguments

    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = _rte(24)
    train = [{**tokenizer(a, b, truncation=True, max_length=64), "labels": y}
             for a, b, y in examples]
    labels = {0: "entailment", 1: "not_entailment"}
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2,
                                                              id2label=labels)
    model = get_diffprune_model(base, DiffPruneConfig(density=0.005))
    args = DiffPruneTrainingArguments(output_dir=str(tmp_path / "run"), num_train_epochs=1,
                                      mask_epochs=1, per_device_train_batch_size=8,
                                      learning_rate=1e-4, use_cpu=True)
    trainer = DiffPruneTrainer(model, args, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    tries = {"mask_first_try"} if trainer.retry else set()  # an unlearned stage is retried
    assert set(trainer.stage_results) == {"l0", "mask", *tries} and model.stage == "masked"
    trainer.save_model(str(tmp_path / "task"))
    task = load_task(tmp_path / "task")
    assert task.task["labels"] == ["entailment", "not_entailment"]
    assert task.config["diff_lr"] == 1e-4  # learning_rate reached the diff

    batch = tokenizer([a for a, _, _ in examples[:6]], [b for _, b, _ in examples[:6]],
                      padding=True, truncation=True, max_length=64, return_tensors="pt")
    fresh = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    reloaded = DiffPruneModel.from_pretrained(fresh, tmp_path / "task").eval()
    bank = TaskBank.from_pretrained(path, num_labels=2)
    bank.add("rte", tmp_path / "task")
    with torch.no_grad():
        logits = reloaded(**batch).logits
        with bank.use("rte") as banked:
            bank_logits = banked(**batch).logits
        mixed = bank(task_names=["rte"] * 6, **batch).logits
        merged = reloaded.merge_and_unload().eval()(**batch).logits
    for other in (bank_logits, mixed, merged):
        assert torch.allclose(logits, other, atol=1e-5), (logits - other).abs().max()
    # A base it was not trained on is refused by its fingerprint.
    other_base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    with torch.no_grad():
        next(other_base.parameters()).add_(1e-3)
    with pytest.raises(ValueError, match="trained against base"):
        DiffPruneModel.from_pretrained(other_base, tmp_path / "task")
