"""Hard-concrete gates (Louizos et al. 2018) as used by diff pruning (docs/method.md §2).

A gate z in [0, 1] is drawn as

    u ~ U(eps, 1 - eps)
    s = sigmoid((log u - log(1 - u) + log_alpha) / beta)
    z = clamp(s * (r - l) + l, 0, 1)

so it is exactly 0 or exactly 1 with positive probability. This module holds the reference math
(plain autograd) used for scalar group gates and as the oracle in tests; ``diff.py`` holds the
fused, memory-lean version used for the element gates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffprune.config import DiffPruneConfig


@dataclass(frozen=True)
class HardConcrete:
    """The constants of the stretched hard-concrete distribution."""

    left: float = -1.5
    right: float = 1.5
    temperature: float = 1.0
    eps: float = 1e-4

    @classmethod
    def from_config(cls, config: DiffPruneConfig) -> HardConcrete:
        return cls(config.stretch_left, config.stretch_right, config.temperature, config.noise_eps)

    @property
    def l0_shift(self) -> float:
        """beta * log(-l / r): P(z > 0) = sigmoid(log_alpha - l0_shift). Zero for l = -r."""
        return self.temperature * math.log(-self.left / self.right)

    @property
    def one_shift(self) -> float:
        """beta * logit((1 - l) / (r - l)): P(z = 1) = sigmoid(log_alpha - one_shift)."""
        t = (1.0 - self.left) / (self.right - self.left)
        return self.temperature * math.log(t / (1.0 - t))


def sample_noise(shape: torch.Size | tuple[int, ...], hc: HardConcrete, *, device=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """u ~ U(0, 1) clipped to [eps, 1 - eps], float32, one draw per element."""
    u = torch.rand(shape, device=device, generator=generator, dtype=torch.float32)
    return u.clamp_(hc.eps, 1.0 - hc.eps)


def gate_from_noise(log_alpha: torch.Tensor, u: torch.Tensor, hc: HardConcrete) -> torch.Tensor:
    """z for given noise u; differentiable in log_alpha. Reference form, any shape."""
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / hc.temperature)
    return (s * (hc.right - hc.left) + hc.left).clamp(0.0, 1.0)


def sample_gate(log_alpha: torch.Tensor, hc: HardConcrete,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh z per element of ``log_alpha``; differentiable in log_alpha."""
    u = sample_noise(log_alpha.shape, hc, device=log_alpha.device, generator=generator)
    return gate_from_noise(log_alpha, u, hc)


def prob_nonzero(log_alpha: torch.Tensor, hc: HardConcrete) -> torch.Tensor:
    """P(z > 0) in closed form; its sum is the expected L0 norm."""
    return torch.sigmoid(log_alpha - hc.l0_shift)


def prob_one(log_alpha: torch.Tensor, hc: HardConcrete) -> torch.Tensor:
    """P(z = 1) in closed form."""
    return torch.sigmoid(log_alpha - hc.one_shift)


def gate_grad_from_gate(z: torch.Tensor, hc: HardConcrete) -> torch.Tensor:
    """dz / dlog_alpha written in terms of z alone.

    With s = (z - l) / (r - l) inside the open interval, dz/dalpha = (r - l) s (1 - s) / beta
    = (z - l)(r - z) / ((r - l) beta); where z is clamped to 0 or 1 the derivative is 0. So the
    backward pass needs only z, not the noise or s.
    """
    grad = (z - hc.left) * (hc.right - z) / ((hc.right - hc.left) * hc.temperature)
    return grad.masked_fill_((z <= 0.0) | (z >= 1.0), 0.0)
