"""The diff parametrisation of one tensor: theta + z * w (stage 1) or theta + m * w (stage 2).

Stage 1 runs as one autograd function per tensor. Its forward draws the noise and returns the
effective weight and the tensor's expected L0; it saves only the gate z for backward, where the
noise, s and the penalty's sigmoid terms are recomputed from z and log_alpha (see
``gates.gate_grad_from_gate``). The elementwise math of both passes is fused by ``torch.compile``
into one loop each where a compiler is available (one parameter-sized read or write per
operand instead of one per operation), and runs eagerly otherwise; the noise comes from the
ordinary torch generator either way, so both give the same gates for the same seed.
"""

from __future__ import annotations

import warnings

import torch

from diffprune.gates import HardConcrete


def _forward_math(theta: torch.Tensor, w: torch.Tensor, log_alpha: torch.Tensor,
                  u: torch.Tensor, group_gate: torch.Tensor | None, left: float, right: float,
                  temperature: float, shift: float):
    """(weight, z, sum_i P(z_i > 0)) for noise u; every tensor argument has theta's shape."""
    if temperature == 1.0:
        # sigmoid(logit(u) + a) = 1 / (1 + (1/u - 1) exp(-a)): one exp instead of two logs.
        s = 1.0 / (1.0 + (1.0 / u - 1.0) * torch.exp(-log_alpha))
    else:
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / temperature)
    z = (s * (right - left) + left).clamp(0.0, 1.0)
    delta = z * w if group_gate is None else z * w * group_gate
    weight = theta + delta.to(theta.dtype)
    l0 = torch.sigmoid(log_alpha - shift).sum()
    return weight, z, l0


def _backward_math(grad_weight: torch.Tensor, z: torch.Tensor, w: torch.Tensor,
                   log_alpha: torch.Tensor, group_gate: torch.Tensor | None,
                   grad_l0: torch.Tensor | None, left: float, right: float, temperature: float,
                   shift: float):
    """(grad_w, grad_log_alpha, grad_group_gate) of ``_forward_math`` from z alone."""
    g = grad_weight.to(torch.float32)
    gz = g * z
    # dz/dalpha = (r - l) s (1 - s) / beta with s = (z - l) / (r - l); zero where z is clamped.
    slope = (z - left) * (right - z) / ((right - left) * temperature)
    dz = torch.where((z > 0.0) & (z < 1.0), slope, 0.0)
    grad_alpha = g * w * dz
    grad_group = None
    if group_gate is not None:
        grad_group = (gz * w).sum()
        grad_alpha = grad_alpha * group_gate
        gz = gz * group_gate
    if grad_l0 is not None:
        p = torch.sigmoid(log_alpha - shift)
        grad_alpha = grad_alpha + grad_l0 * p * (1.0 - p)
    return gz, grad_alpha, grad_group


class _Kernels:
    """The two math functions, compiled on first use when ``fused``; eager on any failure."""

    def __init__(self) -> None:
        self.compiled: dict[str, object] = {}
        self.broken = False

    def get(self, name: str, fused: bool):
        eager = _forward_math if name == "forward" else _backward_math
        if not fused or self.broken:
            return eager
        if name not in self.compiled:
            self.compiled[name] = torch.compile(eager, dynamic=True)
        return self.compiled[name]

    def run(self, name: str, fused: bool, *args):
        fn = self.get(name, fused)
        try:
            return fn(*args)
        except Exception as err:  # no C++ compiler, unsupported platform, ...
            if fn is _forward_math or fn is _backward_math:
                raise
            self.broken = True
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); diffprune falls "
                          "back to eager gate kernels (same results, slower)", stacklevel=3)
            return self.get(name, fused=False)(*args)


_KERNELS = _Kernels()


class GatedDiff(torch.autograd.Function):
    """weight = theta + [group_gate *] z * w with z a fresh hard-concrete sample.

    Also returns sum_i P(z_i > 0), so that the penalty's gradient is added in the same backward
    pass, without a second sigmoid graph over every parameter.
    """

    @staticmethod
    def forward(ctx, theta, w, log_alpha, group_gate, hc: HardConcrete, fused: bool):
        # The kernels see flat (numel,) views, so one compiled graph serves every tensor shape.
        u = torch.rand(log_alpha.numel(), dtype=torch.float32, device=log_alpha.device)
        u.clamp_(hc.eps, 1.0 - hc.eps)
        consts = (hc.left, hc.right, hc.temperature, hc.l0_shift)
        weight, z, l0 = _KERNELS.run("forward", fused, theta.reshape(-1), w.reshape(-1),
                                     log_alpha.reshape(-1), u, group_gate, *consts)
        ctx.consts, ctx.fused = consts, fused
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(z, w, log_alpha, group_gate)  # z: (numel,)
        return weight.view(theta.shape), l0

    @staticmethod
    def backward(ctx, grad_weight, grad_l0):
        z, w, log_alpha, group_gate = ctx.saved_tensors
        if grad_weight is None:
            grad_weight = torch.zeros_like(z)
        grad_w, grad_alpha, grad_group = _KERNELS.run(
            "backward", ctx.fused, grad_weight.reshape(-1), z, w.reshape(-1),
            log_alpha.reshape(-1), group_gate, grad_l0, *ctx.consts)
        return (None, grad_w.view(w.shape), grad_alpha.view(w.shape), grad_group, None, None)


def gated_weight(theta: torch.Tensor, w: torch.Tensor, log_alpha: torch.Tensor,
                 group_gate: torch.Tensor | None, hc: HardConcrete,
                 fused: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage-1 effective weight and the tensor's expected L0 (see ``GatedDiff``).

    Args:
        theta: frozen base tensor, any shape and float dtype.
        w, log_alpha: float32 tensors shaped like theta.
        group_gate: 0-dim gate of the whole tensor (structured variant) or None.
    """
    return GatedDiff.apply(theta, w, log_alpha, group_gate, hc, fused)


def masked_weight(theta: torch.Tensor, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Stage-2 effective weight theta + m * w with the mask held as flat positions.

    Args:
        theta: the frozen base tensor, any shape.
        indices: (k,) int64 flat positions into ``theta``, sorted and unique.
        values: (k,) trainable diff values at those positions.
    """
    if indices.numel() == 0:
        return theta
    flat = theta.reshape(-1).index_add(0, indices, values.to(theta.dtype))  # (numel,)
    return flat.view_as(theta)
