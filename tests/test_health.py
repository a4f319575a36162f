"""The end-of-run warnings (``diffprune.training.health``): a constant answer's loss, and when a
run counts as having learned nothing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from diffprune.training.health import UNLEARNED_MARGIN, constant_answer_loss, unlearned_warning

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
    warning = unlearned_warning(loss, constant, "fixed-mask", "--mask-lr", lr)
    assert (warning is not None) == (loss >= (1 - UNLEARNED_MARGIN) * constant)
    if warning:
        assert "fixed-mask stage" in warning and f"--mask-lr {lr / 3:.2g}" in warning
        assert f"{loss:.4f}" in warning and f"{constant:.4f}" in warning


def test_no_warning_without_a_loss_to_beat():
    """A regression set with one value leaves nothing to learn."""
    assert unlearned_warning(0.0, constant_answer_loss([2.0, 2.0], True), "full finetuning",
                             "--full-lr", 1e-4) is None
