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

Both moments of an entry live in one int32 word, m's bfloat16 bits in the high half and v's in
the low half, so that each tensor's step is one compiled loop (``kernels.py``) of 32-bit
integer and float work, in place: inductor vectorizes it fully, where loads and stores of
bfloat16 tensors ran at a third of the speed (8 against 31 ms a step for 22.7M entries, one
thread; the same bits). ``state_dict`` gives the moments as the two bfloat16 tensors
``exp_avg`` and ``exp_avg_sq``, as torch's optimizers name them. ``moment_dtype=float32``
stores exact moments (no rounding), the same update as ``torch.optim.AdamW`` up to float
rounding.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diffprune import native
from diffprune.kernels import Kernels

_HIGH = -0x10000  # 0xFFFF0000 as an int32
_MAX_ENTRIES = 2**31  # entries are numbered in int32


def _int32(value: int) -> int:
    """An unsigned 32-bit value as the int32 with the same bits."""
    return value - (1 << 32) if value >= 1 << 31 else value


def _round_bits(index: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """16 pseudo-random bits per entry from its flat position and a per-call seed (int32).
    Unsigned 32-bit hashing done in int32: products wrap alike, and each right shift is masked
    to the bits an unsigned shift keeps."""
    h = index * 0x2545F491 + seed
    h = h ^ ((h >> 15) & 0x1FFFF)
    h = h * 0x2C1B3C6D
    h = h ^ ((h >> 12) & 0xFFFFF)
    h = h * 0x297A2D39
    return (h >> 16) & 0xFFFF


def _stochastic_high_bits(x: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """float32 ``x`` (flat) rounded stochastically to bfloat16: the result's bits, in the high
    half of an int32 (the low half zero)."""
    index = torch.arange(x.numel(), device=x.device, dtype=torch.int32)
    # adding 16 random low bits carries into the kept half with probability = the cut fraction
    return (x.view(torch.int32) + _round_bits(index, seed)) & _HIGH


def stochastic_bfloat16(x: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """float32 ``x`` (flat) rounded to bfloat16 up or down at random, up with probability equal to
    its distance from the value below (in units of the spacing): unbiased, E[result] = x.
    ``seed``: a 0-dim integer tensor below 2**32."""
    seed = torch.tensor(_int32(int(seed)), dtype=torch.int32, device=x.device)
    return _stochastic_high_bits(x, seed).view(torch.float32).to(torch.bfloat16)


def _pack(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Two bfloat16 tensors as one int32 tensor: m's bits high, v's low."""
    return (m.view(torch.int16).to(torch.int32) << 16) | (v.view(torch.int16).to(torch.int32)
                                                           & 0xFFFF)


def _unpack(mv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``_pack``'s inverse: (m, v) as bfloat16 tensors (new ones)."""
    m = (mv >> 16).to(torch.int16).view(torch.bfloat16)
    v = ((mv << 16) >> 16).to(torch.int16).view(torch.bfloat16)  # sign-extended: fits int16
    return m, v


def _hyper(hyper: torch.Tensor):
    return (hyper[i] for i in range(8))


def _step_math(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
               hyper: torch.Tensor) -> None:
    """One AdamW step on flat float32 tensors, in place. ``hyper`` holds (1 - lr wd, b1, 1 - b1,
    b2, 1 - b2, lr / (1 - b1^t), sqrt(1 - b2^t), eps) as float32, each computed in double first
    (as torch's AdamW does), so that a new learning rate compiles nothing."""
    decay, b1, one_minus_b1, b2, one_minus_b2, step_size, bc2_sqrt, eps = _hyper(hyper)
    g = g.float()
    m.copy_(m * b1 + g * one_minus_b1)
    v.copy_(v * b2 + g * g * one_minus_b2)
    p.copy_(p * decay - step_size * m / (v.sqrt() / bc2_sqrt + eps))


def _packed_step_math(p: torch.Tensor, g: torch.Tensor, mv: torch.Tensor, hyper: torch.Tensor,
                      seed: torch.Tensor) -> None:
    """``_step_math`` with the moments read from and written to ``mv`` (``_pack``'s layout):
    the new moments are used unrounded; m is stored rounded to nearest even, v stochastically."""
    decay, b1, one_minus_b1, b2, one_minus_b2, step_size, bc2_sqrt, eps = _hyper(hyper)
    g = g.float()
    m = (mv & _HIGH).view(torch.float32) * b1 + g * one_minus_b1
    v = (mv << 16).view(torch.float32) * b2 + g * g * one_minus_b2
    p.copy_(p * decay - step_size * m / (v.sqrt() / bc2_sqrt + eps))
    m_bits = m.view(torch.int32)
    m_high = (m_bits + 0x7FFF + ((m_bits >> 16) & 1)) & _HIGH  # to nearest, ties to even
    mv.copy_(m_high | ((_stochastic_high_bits(v, seed) >> 16) & 0xFFFF))


_KERNELS = Kernels({"step": _step_math, "packed_step": _packed_step_math},
                   {"step": native.adamw, "packed_step": native.packed_adamw})


def _seed(step: int, slot: int) -> int:
    """The rounding seed of one tensor's step: distinct per step and per tensor (int32 bits)."""
    return _int32((step * 0x9E3779B1 + slot * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF)


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
                if moment_dtype == torch.bfloat16 and p.numel() >= _MAX_ENTRIES:
                    raise ValueError(f"CompactAdamW steps tensors of fewer than 2**31 entries, "
                                     f"got {p.numel():,}; use moment_dtype float32")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        packed = self.moment_dtype == torch.bfloat16
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
                    if packed:
                        state["moments"] = torch.zeros_like(p, dtype=torch.int32)
                    else:
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] = state["step"] + 1  # a new tensor: a loaded one may be shared
                t = int(state["step"])
                if t not in hypers:
                    lr = group["lr"]
                    hypers[t] = torch.tensor(
                        [1.0 - lr * group["weight_decay"], b1, 1.0 - b1, b2, 1.0 - b2,
                         lr / (1.0 - b1 ** t), math.sqrt(1.0 - b2 ** t), group["eps"]],
                        dtype=torch.float32, device=p.device)
                flat = (p.view(-1), p.grad.reshape(-1))
                if packed:
                    seed = torch.tensor(_seed(t, slot), dtype=torch.int32, device=p.device)
                    _KERNELS.run("packed_step", self.fused, *flat, state["moments"].view(-1),
                                 hypers[t], seed)
                else:
                    _KERNELS.run("step", self.fused, *flat, state["exp_avg"].view(-1),
                                 state["exp_avg_sq"].view(-1), hypers[t])
        return loss

    def moments(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(exp_avg, exp_avg_sq) of parameter ``p`` in ``moment_dtype`` (copies when packed)."""
        state = self.state[p]
        if "moments" in state:
            return _unpack(state["moments"])
        return state["exp_avg"], state["exp_avg_sq"]

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: packed moments are given as ``exp_avg``/``exp_avg_sq`` bfloat16."""
        sd = super().state_dict()
        for index, entry in sd["state"].items():
            if "moments" in entry:
                entry = dict(entry)  # the live state is not changed
                entry["exp_avg"], entry["exp_avg_sq"] = _unpack(entry.pop("moments"))
                sd["state"][index] = entry
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loader casts floating state to the parameter's dtype; the moments go back to
        ``moment_dtype`` (exact: they were stored in it), packed for bfloat16."""
        super().load_state_dict(state_dict)
        for state in self.state.values():
            if "exp_avg" not in state:
                continue
            if self.moment_dtype == torch.bfloat16:
                m, v = (state.pop(k).to(torch.bfloat16) for k in ("exp_avg", "exp_avg_sq"))
                state["moments"] = _pack(m, v)
            else:
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = state[key].float()
