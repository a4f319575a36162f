"""The end-of-run warnings (``diffprune.training.health``): a constant answer's loss, and when a
run counts as having learned nothing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from diffprune.training.health import (
    UNLEARNED_MARGIN,
    LossWatch,
    constant_answer_loss,
    constant_answer_loss_from_tally,
    unlearned_warning,
)

class_labels = st.lists(st.integers(0, 4), min_size=2, max_size=200).filter(
    lambda ys: len(set(ys)) > 1)
scores = st.lists(st.floats(0, 5, allow_nan=False), min_size=2, max_size=200)


@given(class_labels, st.lists(st.floats(-5, 5, allow_nan=False), min_size=5, max_size=5))
def test_no_constant_logits_beat_the_class_shares(labels, logits):
    """The loss is the cross-entropy of answering the class shares, and any other constant
    answer (logits that ignore the input) does no better."""
    best = constant_answer_loss(labels, regression=False)
    target = torch.tensor(labels)
    other = torch.nn.functional.cross_entropy(
        torch.tensor(logits).expand(len(labels), -1), target).item()
    assert other >= best - 1e-5
    shares = torch.bincount(target, minlength=5).double() / len(labels)
    at_shares = torch.nn.functional.cross_entropy(
        shares.clamp_min(1e-300).log().expand(len(labels), -1), target).item()
    assert at_shares == pytest.approx(best, rel=1e-6)


@given(scores, st.floats(-5, 10, allow_nan=False))
def test_no_constant_score_beats_the_mean(labels, answer):
    best = constant_answer_loss(labels, regression=True)
    other = sum((y - answer) ** 2 for y in labels) / len(labels)
    assert other >= best - 1e-9
    assert best == pytest.approx(sum((y - sum(labels) / len(labels)) ** 2 for y in labels)
                                 / len(labels), abs=1e-9)


def test_two_balanced_classes_cost_log_two():
    assert constant_answer_loss([0, 1] * 50, regression=False) == pytest.approx(math.log(2))


@given(st.floats(0.01, 10), st.floats(0, 2), st.floats(1e-7, 1e-1))
def test_the_warning_comes_exactly_when_the_loss_is_within_the_margin(constant, ratio, lr):
    loss = ratio * constant
    warning = unlearned_warning(loss, constant, "fixed-mask", "--mask-lr {}", lr)
    assert (warning is not None) == (loss >= (1 - UNLEARNED_MARGIN) * constant)
    if warning:
        assert "fixed-mask stage" in warning and f"--mask-lr {lr / 3:.2g}" in warning
        assert f"{loss:.4f}" in warning and f"{constant:.4f}" in warning


def test_no_warning_without_a_loss_to_beat():
    """A regression set with one value leaves nothing to learn."""
    assert unlearned_warning(0.0, constant_answer_loss([2.0, 2.0], True), "full finetuning",
                             "--full-lr {}", 1e-4) is None


@given(st.lists(st.lists(st.integers(-1, 3), min_size=1, max_size=20), min_size=1, max_size=8))
def test_a_tally_over_batches_gives_the_loss_of_the_whole_label_list(batches):
    """Labels tallied batch by batch (an ignored -100 anywhere) give the same constant answer's
    loss as the list of all kept labels."""
    watch = LossWatch(num_labels=4, regression=False)
    for batch in batches:
        watch.add(torch.tensor(0.0), torch.tensor([-100 if y < 0 else y for y in batch]))
    kept = [y for batch in batches for y in batch if y >= 0]
    expected = constant_answer_loss(kept, regression=False) if kept else 0.0
    assert constant_answer_loss_from_tally(watch.tally, False) == pytest.approx(expected, abs=1e-9)
    # A label past the model's classes (a language model's token id) leaves no known answer.
    watch.add(torch.tensor(0.0), torch.tensor([4]))
    assert constant_answer_loss_from_tally(watch.tally, False) is None


@given(st.lists(st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=20),
                min_size=1, max_size=8))
def test_a_regression_tally_gives_the_labels_variance(batches):
    watch = LossWatch(num_labels=1, regression=True)
    for batch in batches:
        watch.add(torch.tensor(0.0), torch.tensor(batch, dtype=torch.float32))
    labels = [float(torch.tensor(y, dtype=torch.float32)) for batch in batches for y in batch]
    assert constant_answer_loss_from_tally(watch.tally, True) == pytest.approx(
        constant_answer_loss(labels, regression=True), abs=1e-6)


@given(st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=40), st.integers(1, 4),
       st.floats(0.5, 5))
def test_the_last_epoch_is_the_mean_of_its_steps(micro, accumulation, epochs):
    """Micro-batch losses add up to one step's loss; the last epoch is the stage's last
    ceil(steps / epochs) steps (the whole stage when it is shorter than an epoch)."""
    watch = LossWatch(num_labels=2, regression=False)
    steps = []
    for start in range(0, len(micro), accumulation):
        for value in micro[start:start + accumulation]:
            watch.add(torch.tensor(value), None)
        watch.end_step()
        steps.append(sum(micro[start:start + accumulation]))
    per_epoch = math.ceil(len(steps) / max(1.0, epochs))
    expected = sum(steps[-per_epoch:]) / per_epoch
    assert float(watch.last_epoch_loss(epochs)) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert watch.tally is None
