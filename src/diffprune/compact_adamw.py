"""AdamW with its two moments stored in bfloat16: half the optimizer state of stage 1.

Stage 1 trains two parameter-sized tensors (w and log-alpha), so AdamW keeps four parameter-sized
moments: on the bundled base, 364 MB of float32, more than the model itself. This optimizer
keeps them in bfloat16 (182 MB) and computes every step in float32:

    m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2          (float32, from the stored moments)
    p = p (1 - lr wd) - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

which is torch's AdamW update, with the new moments used unrounded; only what is stored for the
next step is rounded. m is rounded to nearest. v is rounded stochastically: with b2 = 0.999 a
step changes v by about 0.1%, below half of bfloat16's spacing (0.4%), so rounding to nearest
would freeze v wherever the gradient shrinks; stochastic rounding keeps every step's change in
expectation. Its random bits are a hash of each entry's position, the step and the tensor's
place in the optimizer, not a draw from torch's generator: the run's random stream is the one
the float32 optimizer gives, a resumed run rounds exactly as the uninterrupted one, and every
process of a distributed run (same gradients after the all-reduce) rounds alike.

Each tensor's step is one compiled loop (``kernels.py``), in place. ``moment_dtype=float32``
stores exact moments (no rounding), the same update as ``torch.optim.AdamW`` up to float
rounding.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diffprune.kernels import Kernels

_M32 = 0xFFFFFFFF


def _round_bits(index: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """16 pseudo-random bits per entry from its flat position and a per-call seed (int64 < 2**32
    throughout: every product stays below 2**63)."""
    h = (index * 0x2545F491 + seed) & _M32
    h = h ^ (h >> 15)
    h = (h * 0x2C1B3C6D) & _M32
    h = h ^ (h >> 12)
    h = (h * 0x297A2D39) & _M32
    return (h >> 16) & 0xFFFF


def stochastic_bfloat16(x: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """float32 ``x`` (flat) rounded to bfloat16 up or down at random, up with probability equal to
    its distance from the value below (in units of the spacing): unbiased, E[result] = x."""
    index = torch.arange(x.numel(), device=x.device, dtype=torch.int64)
    bits = x.view(torch.int32).to(torch.int64) & _M32  # the float's bit pattern, unsigned
    # adding 16 random low bits carries into the kept half with probability = the cut fraction
    bits = (bits + _round_bits(index, seed)) & 0xFFFF0000
    return bits.to(torch.int32).view(torch.float32).to(torch.bfloat16)


def _step_math(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
               hyper: torch.Tensor, seed: torch.Tensor, stochastic: bool) -> None:
    """One AdamW step on flat tensors, in place. ``hyper`` holds (1 - lr wd, b1, 1 - b1, b2,
    1 - b2, lr / (1 - b1^t), sqrt(1 - b2^t), eps) as float32, each computed in double first
    (as torch's AdamW does), so that a new learning rate compiles nothing."""
    decay, b1, one_minus_b1, b2, one_minus_b2, step_size, bc2_sqrt, eps = (
        hyper[i] for i in range(8))
    g = g.float()
    m_new = m.float() * b1 + g * one_minus_b1
    v_new = v.float() * b2 + g * g * one_minus_b2
    p.copy_(p * decay - step_size * m_new / (v_new.sqrt() / bc2_sqrt + eps))
    m.copy_(m_new.to(m.dtype))
    v.copy_(stochastic_bfloat16(v_new, seed) if stochastic else v_new.to(v.dtype))


_KERNELS = Kernels({"step": _step_math})


def _seed(step: int, slot: int) -> int:
    """The rounding seed of one tensor's step: distinct per step and per tensor."""
    return (step * 0x9E3779B1 + slot * 0x85EBCA77 + 0x165667B1) & _M32


class CompactAdamW(torch.optim.Optimizer):
    """``torch.optim.AdamW`` (decoupled weight decay, bias correction) for float32 parameters,
    with both moments kept in ``moment_dtype`` (see the module docstring).

    Args:
        params: parameters or groups, as for any torch optimizer.
        moment_dtype: torch.bfloat16 (half the state) or torch.float32 (exact moments).
        fused: compile each step into one loop (eager fallback, same results).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2,
                 moment_dtype: torch.dtype = torch.bfloat16, fused: bool = True) -> None:
        if moment_dtype not in (torch.bfloat16, torch.float32):
            raise ValueError(f"moment_dtype must be torch.bfloat16 or torch.float32, got "
                             f"{moment_dtype}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})
        self.moment_dtype, self.fused = moment_dtype, fused
        for group in self.param_groups:
            for p in group["params"]:
                if p.dtype != torch.float32:
                    raise ValueError(f"CompactAdamW trains float32 parameters, got {p.dtype}")
                if not p.is_contiguous():  # the kernel steps a flat view in place
                    raise ValueError("CompactAdamW trains contiguous parameters")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        stochastic = self.moment_dtype == torch.bfloat16
        slot = 0
        for group in self.param_groups:
            b1, b2 = group["betas"]
            hypers: dict[int, torch.Tensor] = {}  # by step count: one per group, normally
            for p in group["params"]:
                slot += 1
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("CompactAdamW does not take sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, dtype=self.moment_dtype)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=self.moment_dtype)
                state["step"] = state["step"] + 1  # a new tensor: a loaded one may be shared
                t = int(state["step"])
                if t not in hypers:
                    lr = group["lr"]
                    hypers[t] = torch.tensor(
                        [1.0 - lr * group["weight_decay"], b1, 1.0 - b1, b2, 1.0 - b2,
                         lr / (1.0 - b1 ** t), math.sqrt(1.0 - b2 ** t), group["eps"]],
                        dtype=torch.float32, device=p.device)
                hyper = hypers[t]
                seed = torch.tensor(_seed(t, slot), dtype=torch.int64, device=p.device)
                _KERNELS.run("step", self.fused, p.view(-1), p.grad.reshape(-1),
                             state["exp_avg"].view(-1), state["exp_avg_sq"].view(-1), hyper,
                             seed, stochastic)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loader casts floating state to the parameter's dtype; the moments go back to
        ``moment_dtype`` (exact: they were stored in it)."""
        super().load_state_dict(state_dict)
        for state in self.state.values():
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key] = state[key].to(self.moment_dtype)
