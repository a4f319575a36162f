"""Warnings for a run that ended without doing what it was for: gates left open before the
projection, or a model that learned nothing from its training set. Each is logged and kept in
metrics.json under ``warnings`` (``DiffPruneTrainer.warnings`` under the Trainer); neither stops
the run, whose results are still written."""

from __future__ import annotations

import math
import statistics
from collections import Counter

import torch

# The paper's runs end L0 training at 0.6-3.3% expected density for a 0.5% budget (at most
# about 7x); past 10x, projection throws away most of what the gates kept.
OPEN_GATES_FACTOR = 10

# A last epoch whose mean training loss is within 2% of the loss of an answer that ignores the
# input has not learned from the training set. On RTE from the README's command, such runs end
# at 0.6930 against 0.6931; runs that leave chance end at 0.66 or below.
UNLEARNED_MARGIN = 0.02

# An unlearned last stage is retried at its rates divided by this (and the warning suggests as
# much): one step of the benchmark's rate sweep, whose factors are 1/3, 1 and 3.
RETRY_RATE_DIVISOR = 3


def open_gates_warning(density_before: float, budget: float, steps: int) -> str | None:
    """A warning when L0 training ended far above the budget, else None.

    With few steps (a small training set) the gates barely move from their open start, and the
    projection then keeps the top entries of a dense diff: the method degrades to non-adaptive
    pruning of a briefly trained diff (BENCHMARKS.md measures this on 1,000-example tasks).
    """
    if density_before <= OPEN_GATES_FACTOR * budget:
        return None
    return (f"warning: after {steps} L0 steps {density_before:.1%} of the diff is still "
            f"expected nonzero, {density_before / budget:.0f}x the {budget:.2%} budget, so the "
            f"projection drops most of it. Train longer (more epochs or a smaller batch), or "
            f"close the gates faster with a larger --log-alpha-lr or --l0-lambda.")


def constant_answer_loss(labels: list[int | float], regression: bool) -> float:
    """The training loss of the best answer that ignores the input: the entropy of the class
    shares for classification (cross-entropy, in nats), the labels' variance for regression
    (mean squared error against their mean)."""
    if regression:
        return statistics.pvariance([float(y) for y in labels])
    shares = [n / len(labels) for n in Counter(labels).values()]
    return -sum(p * math.log(p) for p in shares)


def constant_answer_loss_from_tally(tally: torch.Tensor, regression: bool) -> float | None:
    """``constant_answer_loss`` from a ``LossWatch`` tally: (count, sum, sum of squares) for
    regression; for classification the count of each class and, last, of labels past the
    model's classes (a language model's token ids), where no answer is known (None)."""
    tally = tally.double().cpu()
    if regression:
        n, total, squares = tally.tolist()
        return max(0.0, squares / n - (total / n) ** 2) if n else 0.0
    if tally[-1] > 0:
        return None
    counts = tally[:-1]
    shares = counts[counts > 0] / counts.sum()
    return float(-(shares * shares.log()).sum())


class LossWatch:
    """A Trainer stage's loss per optimizer step and a tally of its training labels, kept on
    their device so that watching costs no synchronisation per step."""

    def __init__(self, num_labels: int, regression: bool) -> None:
        self.num_labels, self.regression = num_labels, regression
        self.step_losses: list[torch.Tensor] = []
        self.tally: torch.Tensor | None = None
        self._pending: torch.Tensor | None = None

    def add(self, loss: torch.Tensor, labels: torch.Tensor | None) -> None:
        """One micro-batch: its loss (already divided for gradient accumulation) and labels."""
        loss = loss.detach().float()
        self._pending = loss if self._pending is None else self._pending + loss
        if labels is None:
            return
        labels = labels.detach().reshape(-1).to(loss.device)
        if self.regression:
            labels = labels.double()
            part = torch.stack([torch.ones_like(labels).sum(), labels.sum(), labels.square().sum()])
        else:
            # Bins: the classes, one for any other label, one for ignored ones (-100). A
            # scatter into fixed bins needs no sync (masking or bincount would size on host).
            labels = labels.long()
            bins = torch.where(labels >= 0, labels.clamp_max(self.num_labels),
                               self.num_labels + 1)
            counts = torch.zeros(self.num_labels + 2, dtype=torch.float64, device=labels.device)
            counts.scatter_add_(0, bins, torch.ones_like(bins, dtype=torch.float64))
            part = counts[:-1]
        self.tally = part if self.tally is None else self.tally + part

    def end_step(self) -> None:
        if self._pending is not None:
            self.step_losses.append(self._pending)
            self._pending = None

    def last_epoch_loss(self, epochs: float) -> torch.Tensor | None:
        """The mean loss over the stage's last epoch (all of it for a stage under one epoch)."""
        if not self.step_losses:
            return None
        per_epoch = math.ceil(len(self.step_losses) / max(1.0, epochs))
        return torch.stack(self.step_losses[-per_epoch:]).mean()


def unlearned(last_epoch_loss: float, constant_loss: float) -> bool:
    """Whether a last epoch's mean loss is within ``UNLEARNED_MARGIN`` of a constant answer's."""
    return constant_loss > 0 and last_epoch_loss >= (1 - UNLEARNED_MARGIN) * constant_loss


def retry_notice(stage: str, last_epoch_loss: float, constant_loss: float, lr: float) -> str:
    """What a run says when it trains an unlearned stage again: the rate it moves to, not a
    flag, since the run lowers it by itself."""
    return (f"{stage}: the last epoch's training loss, {last_epoch_loss:.4f}, is no better than "
            f"a constant answer's ({constant_loss:.4f}); training the stage again from its start "
            f"at a third of its rates (rate {lr / RETRY_RATE_DIVISOR:.2g})")


def unlearned_warning(last_epoch_loss: float, constant_loss: float, stage: str,
                      rate_setting: str, lr: float) -> str | None:
    """A warning when the final stage's last epoch ended no better than a constant answer.

    ``rate_setting`` says how the user sets the stage's rate, with ``{}`` for the value
    (``"--mask-lr {}"`` for the CLI, ``"mask_learning_rate={}"`` for the Trainer).
    """
    if not unlearned(last_epoch_loss, constant_loss):
        return None
    lower = rate_setting.format(f"{lr / RETRY_RATE_DIVISOR:.2g}")
    return (f"warning: the {stage} stage's mean training loss over its last epoch, "
            f"{last_epoch_loss:.4f}, is no better than always giving the same answer "
            f"({constant_loss:.4f}): the model has not learned from the training set. A lower "
            f"rate often lets it start (try {lower}, a third of "
            f"{lr:g}), as do more examples or epochs.")
