"""Run by test_distributed under torchrun: DiffPruneTrainer at the given rate (every stage's);
each rank writes the warnings and retry it ended with, and its trainable tensors."""

from __future__ import annotations

import json
import sys

import torch
from conftest import tiny_bert
from safetensors.torch import save_file

from diffprune import DiffPruneConfig, get_diffprune_model
from diffprune.training import DiffPruneTrainer, DiffPruneTrainingArguments
from diffprune.training.checkpoint import trainable_state


class _Rows(torch.utils.data.Dataset):
    def __init__(self, labels: list[int]):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, 99, (len(labels), 8), generator=g)
        self.labels = torch.tensor(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


out, labels, rate = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
torch.manual_seed(0)  # the same tiny model on every rank
model = get_diffprune_model(tiny_bert(), DiffPruneConfig(fused=False, density=0.05))
args = DiffPruneTrainingArguments(
    output_dir=out, per_device_train_batch_size=4, num_train_epochs=1, mask_epochs=2,
    report_to=[], use_cpu=True, learning_rate=rate, head_learning_rate=rate,
    mask_learning_rate=rate)
trainer = DiffPruneTrainer(model, args, train_dataset=_Rows(labels))
trainer.train()
rank = trainer.args.process_index
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"warnings": trainer.warnings, "processes": trainer.args.world_size,
               "own_tally": trainer.watch.tally.tolist(), "retry": trainer.retry}, f)
save_file({k: v.contiguous() for k, v in trainable_state(model).items()},
          f"{out}/rank{rank}.safetensors")
# A torchrun script ends by taking its process group down, as PyTorch asks (docs/library.md).
trainer.accelerator.end_training()
