"""Gate math against closed forms computed independently of the code under test."""

from __future__ import annotations

import math

import pytest
import torch

from diffprune.diff import gated_weight
from diffprune.gates import (
    HardConcrete,
    gate_from_noise,
    gate_grad_from_gate,
    prob_nonzero,
    prob_one,
    sample_gate,
)

HC = HardConcrete()
N = 400_000


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.mark.parametrize("log_alpha", [-3.0, -1.0, 0.0, 0.7, 2.0, 5.0])
def test_sampled_probabilities_match_closed_forms(log_alpha):
    z = sample_gate(torch.full((N,), log_alpha), HC)
    assert z.min() >= 0.0 and z.max() <= 1.0
    # For (l, r) = (-1.5, 1.5): P(z > 0) = P(s > 1/2) = sigmoid(a) and
    # P(z = 1) = P(s >= 5/6) = sigmoid(a - log 5).
    for sampled, expected in [((z > 0).float().mean(), _sigmoid(log_alpha)),
                              ((z == 1).float().mean(), _sigmoid(log_alpha - math.log(5.0)))]:
        stderr = math.sqrt(expected * (1 - expected) / N)
        assert abs(float(sampled) - expected) < 5 * stderr + 1e-4


def test_closed_forms_pinned_values():
    assert float(prob_nonzero(torch.tensor(0.0), HC)) == pytest.approx(0.5)
    assert float(prob_one(torch.tensor(0.0), HC)) == pytest.approx(1 / 6)
    assert float(prob_nonzero(torch.tensor(5.0), HC)) == pytest.approx(0.9933071490757153)
    # A gate dead below about -9.2: P(z > 0) < 1e-4.
    assert float(prob_nonzero(torch.tensor(-9.3), HC)) < 1e-4


def test_temperature_and_asymmetric_stretch_closed_forms():
    hc = HardConcrete(left=-0.1, right=1.1, temperature=2 / 3)
    a = 0.4
    z = sample_gate(torch.full((N,), a), hc)
    expected_nonzero = _sigmoid(a - (2 / 3) * math.log(0.1 / 1.1))
    expected_one = _sigmoid(a - (2 / 3) * math.log((1.1 / 1.2) / (0.1 / 1.2)))
    assert float((z > 0).float().mean()) == pytest.approx(expected_nonzero, abs=0.004)
    assert float((z == 1).float().mean()) == pytest.approx(expected_one, abs=0.004)


def test_gate_gradient_from_z_matches_autograd():
    log_alpha = torch.linspace(-4, 4, 1001, requires_grad=True)
    u = torch.rand(1001).clamp(1e-4, 1 - 1e-4)
    z = gate_from_noise(log_alpha, u, HC)
    (grad,) = torch.autograd.grad(z.sum(), log_alpha)
    torch.testing.assert_close(gate_grad_from_gate(z.detach(), HC), grad, rtol=1e-4, atol=1e-6)
    saturated = (z == 0) | (z == 1)
    assert saturated.any() and (grad[saturated] == 0).all()


def test_penalty_gradient_is_sigmoid_derivative():
    log_alpha = torch.tensor([5.0, 0.0, -2.0], requires_grad=True)
    theta, w = torch.zeros(3), torch.zeros(3, requires_grad=True)
    _, l0 = gated_weight(theta, w, log_alpha, None, HC, fused=False)
    assert float(l0) == pytest.approx(sum(_sigmoid(a) for a in (5.0, 0.0, -2.0)), rel=1e-6)
    (1.25e-7 * l0).backward()
    expected = [1.25e-7 * _sigmoid(a) * (1 - _sigmoid(a)) for a in (5.0, 0.0, -2.0)]
    torch.testing.assert_close(log_alpha.grad, torch.tensor(expected), rtol=1e-5, atol=0)
    assert float(log_alpha.grad[0]) == pytest.approx(1.25e-7 * 0.006648056670790033, rel=1e-5)
