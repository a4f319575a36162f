"""Driving diff pruning with the Transformers ``Trainer``.

``DiffPruneTrainer`` adds the L0 penalty of the same forward pass to the loss, builds the
method's optimiser (per-group learning rates: w and head with the schedule, log-alpha constant)
and clips w and log-alpha separately through a callback, right where the Trainer would clip.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from diffprune.model import DiffPruneModel
from diffprune.optim import make_optimizer, make_scheduler


class SeparateClippingCallback(TrainerCallback):
    """Clip w (with the head) and log-alpha by their own norms before each optimiser step."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if isinstance(model, DiffPruneModel):
            model.clip_grad_norms()


class DiffPruneTrainer(Trainer):
    """A ``Trainer`` for a ``DiffPruneModel`` (stage 1 or the fixed-mask stage 2)."""

    def __init__(self, model: DiffPruneModel, *args: Any, **kwargs: Any) -> None:
        if not isinstance(model, DiffPruneModel):
            raise TypeError("DiffPruneTrainer trains a DiffPruneModel (see get_diffprune_model)")
        super().__init__(model, *args, **kwargs)
        self.args.max_grad_norm = 0.0  # the callback clips each group by the config's norms
        self.add_callback(SeparateClippingCallback())

    def _set_signature_columns_if_needed(self) -> None:
        # The Trainer keeps the dataset columns that model.forward names; ours takes **kwargs,
        # so name the wrapped model's (the same hook the Trainer uses for PEFT models).
        if self._signature_columns is None:
            names = list(inspect.signature(self.model.base_model.forward).parameters)
            self._signature_columns = names + list({"label", "label_ids", *self.label_names})

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = make_optimizer(self.model)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = make_scheduler(optimizer or self.optimizer, num_training_steps,
                                               self.args.get_warmup_steps(num_training_steps))
        return self.lr_scheduler

    def compute_loss(self, model, inputs, return_outputs: bool = False, **kwargs: Any):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
        loss = loss + self.accelerator.unwrap_model(model).penalty()
        return (loss, outputs) if return_outputs else loss
