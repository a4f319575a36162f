"""The paper's optimiser: AdamW with linear decay on w and the head, constant lr on log-alpha.

One AdamW with per-group learning rates is the same update as the authors' two AdamW instances
(AdamW keeps state per parameter), and it lets any scheduler or the Transformers Trainer drive it.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

from diffprune.model import DiffPruneModel


def linear_decay(num_training_steps: int, warmup_steps: int = 0):
    """lr multiplier: linear warmup to 1 over ``warmup_steps``, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = num_training_steps - step
        return max(0.0, remaining / max(1, num_training_steps - warmup_steps))

    return factor


def build_optimizer(model: DiffPruneModel, num_training_steps: int,
                    warmup_steps: int = 0) -> tuple[torch.optim.AdamW, LambdaLR]:
    """AdamW over ``model.param_groups()`` and its schedule (log-alpha's lr stays constant)."""
    groups = model.param_groups()
    optimizer = torch.optim.AdamW(groups, eps=model.config.adam_eps)
    decay = linear_decay(num_training_steps, warmup_steps)
    lambdas = [(lambda step: 1.0) if g["name"] == "log_alpha" else decay for g in groups]
    return optimizer, LambdaLR(optimizer, lambdas)
