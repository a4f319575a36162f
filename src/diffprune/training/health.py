"""Warnings for a run that ended without doing what it was for: gates left open before the
projection, or a model that learned nothing from its training set. Each is logged and kept in
metrics.json under ``warnings``; neither stops the run, whose results are still written."""

from __future__ import annotations

import math
import statistics
from collections import Counter

# The paper's runs end L0 training at 0.6-3.3% expected density for a 0.5% budget (at most
# about 7x); past 10x, projection throws away most of what the gates kept.
OPEN_GATES_FACTOR = 10

# A last epoch whose mean training loss is within 2% of the loss of an answer that ignores the
# input has not learned from the training set. On RTE from the README's command, such runs end
# at 0.6930 against 0.6931; runs that leave chance end at 0.66 or below.
UNLEARNED_MARGIN = 0.02


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


def unlearned_warning(last_epoch_loss: float, constant_loss: float, stage: str, flag: str,
                      lr: float) -> str | None:
    """A warning when the final stage's last epoch ended no better than a constant answer."""
    if not constant_loss > 0 or last_epoch_loss < (1 - UNLEARNED_MARGIN) * constant_loss:
        return None
    return (f"warning: the {stage} stage's mean training loss over its last epoch, "
            f"{last_epoch_loss:.4f}, is no better than always giving the same answer "
            f"({constant_loss:.4f}): the model has not learned from the training set. A lower "
            f"rate often lets it start (try {flag} {lr / 3:.2g}, a third of {lr:g}), as do more "
            f"examples or epochs.")
