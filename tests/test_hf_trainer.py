"""The Transformers Trainer drives diff pruning: penalty in the loss, groups, separate clipping."""

from __future__ import annotations

import torch
from conftest import tiny_bert

from diffprune import DiffPruneConfig, get_diffprune_model
from diffprune.hf_trainer import DiffPruneTrainer


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n=24):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, 99, (n, 8), generator=g)
        self.labels = (self.ids[:, 0] > 50).long()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def test_trainer_runs_stage_one_with_the_method_optimizer(tmp_path, monkeypatch):
    from transformers import TrainingArguments

    config = DiffPruneConfig(fused=False, diff_lr=1e-2, log_alpha_lr=0.1, l0_lambda=1e-3,
                             log_alpha_max_grad_norm=0.5)
    model = get_diffprune_model(tiny_bert(), config)
    l0_before = model.expected_l0()
    clipped = []
    original = type(model).clip_grad_norms

    def spy(self):
        norms = original(self)
        clipped.append(norms)
        return norms

    monkeypatch.setattr(type(model), "clip_grad_norms", spy)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8,
                             max_steps=3, report_to=[], save_strategy="no", use_cpu=True,
                             logging_steps=1, max_grad_norm=5.0)
    trainer = DiffPruneTrainer(model, args, train_dataset=_Rows())
    trainer.train()
    names = [g["name"] for g in trainer.optimizer.param_groups]
    assert names == ["diff", "log_alpha", "head"]
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs["log_alpha"] == 0.1 and lrs["diff"] < 1e-2  # constant vs linear decay
    assert len(clipped) == 3 and set(clipped[0]) == {"diff", "log_alpha"}
    assert trainer.args.max_grad_norm == 0.0
    assert model.expected_l0() < l0_before
