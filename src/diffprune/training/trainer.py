"""The whole method under the Transformers ``Trainer``: one ``trainer.train()``.

``DiffPruneTrainer.train()`` runs what ``diffprune train`` runs: the L0 stage (the penalty of the
same forward pass in the loss, density control, w and log-alpha clipped separately), the
projection to the config's density, and the fixed-mask stage, keeping its best evaluation when
an eval set is given and evaluated. Every ``TrainingArguments`` field is honoured or refused by
name; ``save_model`` writes the task file and nothing pickled.
"""

from __future__ import annotations

import copy
import gc
import inspect
import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging

from diffprune.config import DiffPruneConfig
from diffprune.density_control import DensityController, diff_lr_scale, gate_learning_rate
from diffprune.model import DiffPruneModel
from diffprune.optim import make_optimizer, make_scheduler
from diffprune.training.checkpoint import trainable_state
from diffprune.training.health import (
    RETRY_RATE_DIVISOR,
    LossWatch,
    constant_answer_loss_from_tally,
    retry_notice,
    unlearned,
    unlearned_warning,
)
from diffprune.training.settings import TrainSettings

logger = logging.get_logger(__name__)

_DEFAULTS = DiffPruneConfig()  # the built-in recipe: the Trainer's defaults are the CLI's
_RUN_DEFAULTS = TrainSettings()
_ADAMW = ("adamw_torch", "adamw_torch_fused")


@dataclass
class DiffPruneTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the method's stage settings.

    ``learning_rate``, ``weight_decay``, ``max_grad_norm``, ``adam_*`` and ``warmup_steps`` are
    the L0 stage's diff w (and head) settings; ``num_train_epochs`` (or ``max_steps``, which
    bounds each stage) its length. The fixed-mask stage follows for ``mask_epochs``.
    """

    learning_rate: float = field(
        default=_DEFAULTS.diff_lr, metadata={"help": "L0 stage: learning rate of the diff w."})
    save_strategy: str = field(
        default="no", metadata={"help": "Must stay 'no': Trainer checkpoints are pickles; "
                                        "save the task with trainer.save_model()."})
    log_alpha_learning_rate: float = field(
        default=_DEFAULTS.log_alpha_lr,
        metadata={"help": "L0 stage: learning rate of the gates (constant; raised to keep pace "
                          "with density control, see DiffPruneConfig.gate_speed_headroom)."})
    log_alpha_max_grad_norm: float = field(
        default=_DEFAULTS.log_alpha_max_grad_norm,
        metadata={"help": "L0 stage: gradient-norm clip of the log-alphas (0 = none)."})
    head_learning_rate: float | None = field(
        default=_DEFAULTS.head_lr, metadata={"help": "L0 stage: learning rate of the task head "
                                                     "(None = learning_rate)."})
    mask_epochs: float = field(
        default=_RUN_DEFAULTS.mask_epochs,
        metadata={"help": "Epochs of fixed-mask finetuning after the L0 stage (0 = stop after "
                          "the projection)."})
    mask_learning_rate: float = field(
        default=_RUN_DEFAULTS.mask_lr,
        metadata={"help": "Fixed-mask stage: learning rate of the kept values and the head "
                          "(linear decay)."})
    mask_head_learning_rate: float | None = field(
        default=_RUN_DEFAULTS.mask_head_lr,
        metadata={"help": "Fixed-mask stage: learning rate of the task head (None = "
                          "mask_learning_rate)."})
    retry_unlearned: bool = field(
        default=_RUN_DEFAULTS.retry_unlearned,
        metadata={"help": "When the fixed-mask stage ends its last epoch no better than a "
                          "constant answer, train it once more from its start at a third of "
                          "its rates (False: only warn)."})


def _plain(value: Any) -> str:
    return str(getattr(value, "value", value))  # an enum member's string, or the string


# What the Trainer would do that the method does otherwise: refused by name, never ignored.
def _refusals(args: TrainingArguments) -> list[str]:
    problems = []
    if _plain(args.optim) not in _ADAMW:
        problems.append(f"optim={_plain(args.optim)!r}: the method's optimizer is AdamW with "
                        "per-group rates; use 'adamw_torch' or 'adamw_torch_fused'")
    if _plain(args.lr_scheduler_type) != "linear":
        problems.append(f"lr_scheduler_type={_plain(args.lr_scheduler_type)!r}: the method "
                        "decays w linearly and keeps the gates' rate constant; use 'linear'")
    if _plain(args.save_strategy) != "no":
        problems.append(f"save_strategy={_plain(args.save_strategy)!r}: Trainer checkpoints are "
                        "pickles; use save_strategy='no' and trainer.save_model() (or "
                        "`diffprune train`, which checkpoints in safetensors and resumes)")
    if args.load_best_model_at_end:
        problems.append("load_best_model_at_end=True: the fixed-mask stage keeps its best "
                        "evaluation itself (set eval_strategy and metric_for_best_model)")
    if getattr(args, "optim_args", None):
        problems.append(f"optim_args={args.optim_args!r}: not used by the method's AdamW")
    if getattr(args, "lr_scheduler_kwargs", None):
        problems.append("lr_scheduler_kwargs: not used by the method's schedule")
    if getattr(args, "torch_compile", False):
        problems.append("torch_compile=True: the method compiles its own gate kernels "
                        "(DiffPruneConfig.fused) and rewrites the weights each step")
    if getattr(args, "gradient_checkpointing", False):
        problems.append("gradient_checkpointing=True: not supported on a DiffPruneModel yet")
    return problems


class _MethodCallback(TrainerCallback):
    """Clipping, density control and best-state selection, at the Trainer's own hooks."""

    def __init__(self, trainer: DiffPruneTrainer) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.model.clip_grad_norms()

    def on_step_end(self, args, state, control, **kwargs):
        t = self.trainer
        if t.watch is not None:
            t.watch.end_step()
        if t.controller is not None and t.model.stage == "gated":
            t.model.drift_gates(t.controller.update(t.model.last_density()))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.trainer._consider_best(metrics or {})


class DiffPruneTrainer(Trainer):
    """A ``Trainer`` whose ``train()`` runs the whole method on a ``DiffPruneModel``.

    After ``train()`` the model is in the fixed-mask stage (its best evaluated state, where an
    eval set was evaluated); ``save_model(directory)`` writes ``directory/diff.safetensors``.
    ``stage_results`` holds each stage's ``TrainOutput``, ``density_trace`` the controller's
    record and ``warnings`` what ``diffprune train`` would keep in metrics.json's (a fixed-mask
    stage that ended no better than a constant answer; also logged). With a plain
    ``TrainingArguments`` the method's own settings (gate rate and clip, fixed-mask epochs and
    rate) come from ``DiffPruneTrainingArguments``' defaults.
    """

    def __init__(self, model: DiffPruneModel, args: TrainingArguments | None = None,
                 *rest: Any, **kwargs: Any) -> None:
        if not isinstance(model, DiffPruneModel):
            raise TypeError("DiffPruneTrainer trains a DiffPruneModel (see get_diffprune_model)")
        if args is None:
            args = DiffPruneTrainingArguments(output_dir="diffprune_trainer")
        problems = _refusals(args)
        if problems:
            raise ValueError("DiffPruneTrainer cannot honour these TrainingArguments: "
                             + "; ".join(problems))
        method = args if isinstance(args, DiffPruneTrainingArguments) else \
            DiffPruneTrainingArguments(output_dir=args.output_dir)
        self.method_args = method
        config = model.diffprune_config
        model.diffprune_config = replace(
            config, diff_lr=args.learning_rate, head_lr=method.head_learning_rate,
            weight_decay=args.weight_decay, diff_max_grad_norm=args.max_grad_norm,
            adam_eps=args.adam_epsilon, log_alpha_lr=method.log_alpha_learning_rate,
            log_alpha_max_grad_norm=method.log_alpha_max_grad_norm,
            # the group gates keep their own rate when the element gates' is raised
            group_log_alpha_lr=config.group_log_alpha_lr or method.log_alpha_learning_rate)
        # The method clips w and log-alpha by their own norms (args.max_grad_norm is w's); the
        # Trainer must not clip all parameters together, so it gets a copy without a clip. The
        # caller's object is not changed.
        own = copy.copy(args)
        own.max_grad_norm = 0.0
        super().__init__(model, own, *rest, **kwargs)
        self.user_args = args
        if not self.label_names:  # found from forward's signature, which ours hides in **kwargs
            from transformers.utils import find_labels

            self.label_names = find_labels(type(model.base_model))
        self.add_callback(_MethodCallback(self))
        self.controller: DensityController | None = None
        self.density_trace: list[dict] = []
        self.stage_results: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.retry: dict | None = None  # the first try of a retried fixed-mask stage
        self.watch: LossWatch | None = None  # the last fixed-mask stage's losses and labels
        self._best: tuple[float, dict[str, torch.Tensor]] | None = None
        self._selecting = False
        self._lrs: dict[str, float] | None = None  # rates by group, overriding the config's

    # ----------------------------------------------------------------- the method's pieces
    def _set_signature_columns_if_needed(self) -> None:
        # The Trainer keeps the dataset columns that model.forward names; ours takes **kwargs,
        # so name the wrapped model's (the same hook the Trainer uses for PEFT models).
        if self._signature_columns is None:
            names = list(inspect.signature(self.model.base_model.forward).parameters)
            self._signature_columns = names + list({"label", "label_ids", *self.label_names})

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = make_optimizer(self.model, (self.args.adam_beta1,
                                                         self.args.adam_beta2), self._lrs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        optimizer = optimizer or self.optimizer
        model = self.model
        diff_scale = None
        if model.stage == "gated" and self.lr_scheduler is None:
            # Density control needs the stage's length: the gates' rate follows from it.
            start, config = model.expected_density(), model.diffprune_config
            config = model.diffprune_config = replace(
                config, log_alpha_lr=gate_learning_rate(config, num_training_steps, start))
            for group in optimizer.param_groups:
                if group.get("name") == "log_alpha":
                    group["lr"] = config.log_alpha_lr
            self.controller = DensityController.for_stage(config, num_training_steps, start)
            diff_scale = diff_lr_scale(config, num_training_steps, start)
        if self.lr_scheduler is None:
            self.lr_scheduler = make_scheduler(optimizer, num_training_steps,
                                               self.args.get_warmup_steps(num_training_steps),
                                               diff_scale)
        return self.lr_scheduler

    def training_step(self, model, inputs, *args: Any, **kwargs: Any) -> torch.Tensor:
        labels = inputs.get(self.label_names[0]) if self.label_names else None
        loss = super().training_step(model, inputs, *args, **kwargs)
        if self.watch is not None:
            self.watch.add(loss, labels)
        return loss

    def compute_loss(self, model, inputs, return_outputs: bool = False, **kwargs: Any):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
        loss = loss + self.accelerator.unwrap_model(model).penalty()
        return (loss, outputs) if return_outputs else loss

    def _consider_best(self, metrics: dict[str, float]) -> None:
        if not self._selecting:
            return
        name = self.args.metric_for_best_model or "loss"
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise KeyError(f"metric_for_best_model={name!r}: the evaluation returned "
                           f"{sorted(metrics)}")
        greater = self.args.greater_is_better
        if greater is None:
            greater = not key.endswith("loss")
        score = metrics[key] if greater else -metrics[key]
        if math.isfinite(score) and (self._best is None or score > self._best[0]):
            self._best = (score, {k: v.detach().clone()
                                  for k, v in trainable_state(self.model).items()})

    # ----------------------------------------------------------------- the whole method
    def train(self, resume_from_checkpoint: Any = None, **kwargs: Any):
        """L0 stage, projection, fixed-mask stage; returns the last stage's ``TrainOutput``."""
        if resume_from_checkpoint:
            raise ValueError("DiffPruneTrainer does not resume Trainer checkpoints (they are "
                             "pickles); `diffprune train --resume` resumes bit for bit")
        model, method = self.model, self.method_args
        result, self.watch, self.warnings = None, None, []
        if model.stage == "gated":
            result = self.stage_results["l0"] = self._train_stage(kwargs)
            if self.controller is not None:
                self.density_trace = list(self.controller.trace)
            # Every process must draw the same final diff: reseed, so they project identically.
            torch.manual_seed(self.args.seed + 1)
            model.project()
        if method.mask_epochs > 0:
            result = self._fixed_mask_stage(method, kwargs)
        return result

    def _train_stage(self, kwargs: dict):
        """One ``Trainer.train()`` call, for one stage, in a wrapper of its own.

        Under DDP the Trainer reuses the wrapper of its previous ``train()`` call, which knows
        the previous stage's parameters only: the fixed-mask values' gradients were then not
        averaged, and the processes ended with different diffs. So each stage starts without a
        wrapper, and its wrapper is let go when it ends: gloo work still held by wrappers when
        the interpreter exits aborted processes at exit.
        """
        self._release_wrapper()
        try:
            return super().train(**kwargs)
        finally:
            self._release_wrapper()

    def _release_wrapper(self) -> None:
        if self.model_wrapped is not self.model:
            self.accelerator.free_memory()
            self.model_wrapped = self.model
            gc.collect()

    def _fixed_mask_stage(self, method: DiffPruneTrainingArguments, kwargs: dict):
        """The fixed-mask stage, once more from its start at a third of its rates when it ends
        no better than a constant answer (as ``diffprune train`` does; docs/method.md)."""
        model = self.model
        retry = method.retry_unlearned
        start = ({k: v.detach().clone() for k, v in trainable_state(model).items()}
                 if retry else None)
        lr = method.mask_learning_rate
        head_lr = method.mask_head_learning_rate or lr
        epochs = self.args.num_train_epochs
        self.retry = None
        self._selecting, self._best = self.eval_dataset is not None, None
        first_best = None
        try:
            for divisor in (1, RETRY_RATE_DIVISOR):
                # The stage's own rates, without changing the config stage 1 used (the task
                # file records that config).
                self._lrs = {"diff": lr / divisor, "head": head_lr / divisor}
                self.optimizer, self.lr_scheduler = None, None
                self.args.num_train_epochs = method.mask_epochs
                # self._best carries over: the first try's best stays a candidate in the retry.
                self.watch = self._new_watch()
                result = self.stage_results["mask"] = self._train_stage(kwargs)
                ended = self._last_epoch_loss(method)
                if start is None or divisor > 1 or ended is None or not unlearned(*ended):
                    break
                self.retry = {"first_lr": lr, "first_last_epoch_loss": ended[0],
                              "constant_answer_loss": ended[1]}
                self.stage_results["mask_first_try"] = result
                first_best = self._best
                if self.is_world_process_zero():
                    logger.warning(retry_notice("fixed-mask", *ended, lr))
                model.load_state_dict(start, strict=False)
            self._warn_if_unlearned(ended, lr / divisor)
            if self.retry is not None:
                kept_first = first_best is not None and self._best is first_best
                self.retry["kept"] = "first try" if kept_first else "retry"
        finally:
            self.args.num_train_epochs, self._selecting = epochs, False
        if self._best is not None:
            model.load_state_dict(self._best[1], strict=False)
        return result

    def _new_watch(self) -> LossWatch | None:
        config = getattr(self.model.base_model, "config", None)
        if config is None or not hasattr(config, "num_labels"):
            return None  # a model of one's own: no known head to judge a constant answer by
        problem = getattr(config, "problem_type", None)
        if problem == "multi_label_classification":
            return None  # a constant answer's loss is not the class shares' entropy there
        regression = problem == "regression" or (problem is None and config.num_labels == 1)
        return LossWatch(config.num_labels, regression)

    def _last_epoch_loss(self, method: DiffPruneTrainingArguments) -> tuple[float, float] | None:
        """(the stage's last-epoch loss, a constant answer's) over every process's steps and
        labels alike, or None where no constant answer is known."""
        watch = self.watch
        if watch is None or watch.tally is None:
            return None
        loss = watch.last_epoch_loss(method.mask_epochs)
        if loss is None:
            return None
        loss = self.accelerator.reduce(loss, reduction="mean")
        tally = self.accelerator.reduce(watch.tally, reduction="sum")
        constant = constant_answer_loss_from_tally(tally, watch.regression)
        return None if constant is None else (float(loss), constant)

    def _warn_if_unlearned(self, ended: tuple[float, float] | None, lr: float) -> None:
        """The check ``diffprune train`` makes, with the rate the stage ended at."""
        if ended is None:
            return
        warning = unlearned_warning(*ended, "fixed-mask", "mask_learning_rate={}", lr)
        if warning:
            self.warnings.append(warning)
            if self.is_world_process_zero():
                logger.warning(warning)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Write the task file ``output_dir/diff.safetensors`` (no pickle, no dense weights)."""
        if self.args.should_save:
            self.model.save_pretrained(output_dir or self.args.output_dir)
