"""The diff parametrisation of one tensor: theta + z * w (stage 1) or theta + m * w (stage 2).

Stage 1 runs as one autograd function per tensor. Its forward returns the effective weight
and the tensor's expected L0. The noise u is counter-based: a hash of each entry's index and of
two seeds drawn from the torch generator per call (``entry_uniform``), so the forward computes
it inside its loop instead of drawing a parameter-sized buffer, and the backward computes the
same u again instead of keeping z: only the two seeds are saved. The elementwise math of both
passes is fused by ``torch.compile`` into one loop each where a compiler is available, and runs
eagerly otherwise; both compute the same noise from the same seeds, so both give the same gates.

Because u is a function of the entry's index, an embedding table can draw the gates of just the
rows a batch looks up (``gated_rows``) and get exactly the gates the whole-table pass would give
those rows; the rows it does not look up have no effect on the loss, and their only gradient,
the penalty's, comes from the same call, which also returns the whole table's expected L0
(noise-free, so nothing of the other rows is drawn).
"""

from __future__ import annotations

import math

import torch

from diffprune import native
from diffprune.gates import HardConcrete
from diffprune.kernels import Kernels


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """An avalanching 32-bit integer hash (Wellons' lowbias32), unsigned, computed in int32:
    products wrap alike, and each right shift is masked to the bits an unsigned shift keeps.
    (32-bit lanes vectorize twice as wide as 64-bit ones: the gate kernels run ~20% faster.)"""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x7FEB352D
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * (0x846CA68B - (1 << 32))  # the constant's bits, as an int32
    return x ^ ((x >> 16) & 0xFFFF)


def _as_int32(x: torch.Tensor) -> torch.Tensor:
    """int64 values in [0, 2**32) as the int32 values with the same bits."""
    return torch.where(x >= 1 << 31, x - (1 << 32), x).to(torch.int32)


def entry_uniform(seeds: torch.Tensor, index: torch.Tensor, eps: float) -> torch.Tensor:
    """float32 noise in [eps, 1 - eps] for the entries at flat positions ``index`` (integers
    below 2**31), a pure function of ``seeds`` ((2,) int64 values below 2**32) and of each
    position: the same seeds give the same u for an entry, in any pass and whichever other
    entries are drawn."""
    s = _as_int32(seeds)
    h = _hash32(_hash32(index.to(torch.int32) ^ s[0]) ^ s[1])
    u = (((h >> 8) & 0xFFFFFF).to(torch.float32) + 0.5) * (1.0 / (1 << 24))  # never 0 or 1
    return u.clamp(eps, 1.0 - eps)


def counter_uniform(seeds: torch.Tensor, n: int, eps: float) -> torch.Tensor:
    """``entry_uniform`` of entries 0 .. n-1: a whole tensor's noise, (n,)."""
    return entry_uniform(seeds, torch.arange(n, device=seeds.device, dtype=torch.int32), eps)


def _constants(hc: HardConcrete) -> tuple[float, ...]:
    """The hard-concrete constants in the order the kernels take them."""
    return (hc.left, hc.right, hc.temperature, hc.l0_shift, hc.eps)


def draw_seeds(device: torch.device) -> torch.Tensor:
    """Two 32-bit seeds from the torch generator: one call's noise (reproducible, resumable)."""
    return torch.randint(0, 1 << 32, (2,), dtype=torch.int64).to(device)


def _gate(log_alpha: torch.Tensor, u: torch.Tensor, left: float, right: float,
          temperature: float, neg_exp: torch.Tensor | None = None) -> torch.Tensor:
    """z for noise ``u``; ``neg_exp``: exp(-log_alpha) where the caller has it already."""
    if temperature == 1.0:
        # sigmoid(logit(u) + a) = 1 / (1 + (1/u - 1) exp(-a)): one exp instead of two logs.
        neg_exp = torch.exp(-log_alpha) if neg_exp is None else neg_exp
        s = 1.0 / (1.0 + (1.0 / u - 1.0) * neg_exp)
    else:
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / temperature)
    return (s * (right - left) + left).clamp(0.0, 1.0)


def _noise(seeds: torch.Tensor, n: int, eps: float, index: torch.Tensor | None) -> torch.Tensor:
    return counter_uniform(seeds, n, eps) if index is None else entry_uniform(seeds, index, eps)


def _l0_math(log_alpha: torch.Tensor, shift: float) -> torch.Tensor:
    return torch.sigmoid(log_alpha - shift).sum()


def _l0_backward_math(grad_l0: torch.Tensor, log_alpha: torch.Tensor, shift: float):
    p = torch.sigmoid(log_alpha - shift)
    return grad_l0 * p * (1.0 - p)


def _forward_math(theta: torch.Tensor, w: torch.Tensor, log_alpha: torch.Tensor,
                  seeds: torch.Tensor, group_gate: torch.Tensor | None, left: float,
                  right: float, temperature: float, shift: float, eps: float,
                  index: torch.Tensor | None = None):
    """(weight, sum_i P(z_i > 0)) for the noise of ``seeds``; tensors are flat, theta's size.
    ``index``: the entries' flat positions in their tensor when they are not 0 .. n-1."""
    u = _noise(seeds, log_alpha.numel(), eps, index)
    if temperature == 1.0:
        # One exp per entry serves both the gate and P(z > 0) = sigmoid(log_alpha - shift)
        # = 1 / (1 + exp(-log_alpha) exp(shift)); compiled, the sum's loop would otherwise
        # take the exp again (the forward kernel ran ~25% faster, the same bits at shift 0).
        neg_exp = torch.exp(-log_alpha)
        z = _gate(log_alpha, u, left, right, temperature, neg_exp)
        l0 = (1.0 / (1.0 + neg_exp * math.exp(shift))).sum()
    else:
        z = _gate(log_alpha, u, left, right, temperature)
        l0 = _l0_math(log_alpha, shift)
    delta = z * w if group_gate is None else z * w * group_gate
    weight = theta + delta.to(theta.dtype)
    return weight, l0


def _backward_math(grad_weight: torch.Tensor, seeds: torch.Tensor, w: torch.Tensor,
                   log_alpha: torch.Tensor, group_gate: torch.Tensor | None,
                   grad_l0: torch.Tensor | None, left: float, right: float, temperature: float,
                   shift: float, eps: float, index: torch.Tensor | None = None):
    """(grad_w, grad_log_alpha, grad_group_gate) of ``_forward_math``: z is computed again from
    the same seeds, not kept."""
    z = _gate(log_alpha, _noise(seeds, log_alpha.numel(), eps, index), left, right, temperature)
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
        grad_alpha = grad_alpha + _l0_backward_math(grad_l0, log_alpha, shift)
    return gz, grad_alpha, grad_group


_EAGER = {"forward": _forward_math, "backward": _backward_math, "l0": _l0_math,
          "l0_backward": _l0_backward_math}


_NATIVE = {"forward": native.gate_forward, "backward": native.gate_backward,
           "l0": native.expected_l0, "l0_backward": native.expected_l0_backward}
_KERNELS = Kernels(_EAGER, _NATIVE)


class GatedDiff(torch.autograd.Function):
    """weight = theta + [group_gate *] z * w with z a fresh hard-concrete sample.

    Also returns sum_i P(z_i > 0), so that the penalty's gradient is added in the same backward
    pass, without a second sigmoid graph over every parameter.
    """

    @staticmethod
    def forward(ctx, theta, w, log_alpha, group_gate, hc: HardConcrete, fused: bool, seeds):
        # The kernels see flat (numel,) views, so one compiled graph serves every tensor shape.
        seeds = draw_seeds(log_alpha.device) if seeds is None else seeds
        consts = _constants(hc)
        weight, l0 = _KERNELS.run("forward", fused, theta.reshape(-1), w.reshape(-1),
                                  log_alpha.reshape(-1), seeds, group_gate, *consts)
        ctx.consts, ctx.fused = consts, fused
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(seeds, w, log_alpha, group_gate)  # no parameter-sized z
        return weight.view(theta.shape), l0

    @staticmethod
    def backward(ctx, grad_weight, grad_l0):
        seeds, w, log_alpha, group_gate = ctx.saved_tensors
        if grad_weight is None:
            grad_weight = torch.zeros_like(w)
        grad_w, grad_alpha, grad_group = _KERNELS.run(
            "backward", ctx.fused, grad_weight.reshape(-1), seeds, w.reshape(-1),
            log_alpha.reshape(-1), group_gate, grad_l0, *ctx.consts)
        return (None, grad_w.view(w.shape), grad_alpha.view(w.shape), grad_group, None, None,
                None)


def gated_weight(theta: torch.Tensor, w: torch.Tensor, log_alpha: torch.Tensor,
                 group_gate: torch.Tensor | None, hc: HardConcrete, fused: bool = True,
                 seeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage-1 effective weight and the tensor's expected L0 (see ``GatedDiff``).

    Args:
        theta: frozen base tensor, any shape and float dtype.
        w, log_alpha: float32 tensors shaped like theta.
        group_gate: 0-dim gate of the whole tensor (structured variant) or None.
        seeds: the noise's seeds (``draw_seeds``), drawn here when None.
    """
    return GatedDiff.apply(theta, w, log_alpha, group_gate, hc, fused, seeds)


class GatedRows(torch.autograd.Function):
    """Rows ``rows`` of ``GatedDiff``'s weight for a 2-D table, (k, width): the same gates, for
    the same seeds, as the whole-table pass gives those rows; and the whole table's expected
    L0, so that one backward gives log-alpha's whole gradient (the penalty's, dense, with the
    rows' loss gradient added in place) instead of two table-sized tensors summed."""

    @staticmethod
    def forward(ctx, theta, w, log_alpha, group_gate, rows, seeds, hc: HardConcrete,
                fused: bool, padding_idx: int | None):
        consts = _constants(hc)
        index = _row_entries(rows, theta.shape[1])
        weight, _ = _KERNELS.run("forward", fused, theta[rows].reshape(-1), w[rows].reshape(-1),
                                 log_alpha[rows].reshape(-1), seeds, group_gate, *consts, index)
        l0 = _KERNELS.run("l0", fused, log_alpha.reshape(-1), hc.l0_shift)
        ctx.consts, ctx.fused, ctx.padding_idx = consts, fused, padding_idx
        ctx.shift = hc.l0_shift
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(rows, seeds, w, log_alpha, group_gate)
        return weight.view(rows.numel(), theta.shape[1]), l0

    @staticmethod
    def backward(ctx, grad_rows, grad_l0):
        rows, seeds, w, log_alpha, group_gate = ctx.saved_tensors
        if grad_rows is None and grad_l0 is None:
            return (None,) * 9
        full_alpha = (torch.zeros_like(log_alpha) if grad_l0 is None else _KERNELS.run(
            "l0_backward", ctx.fused, grad_l0, log_alpha.reshape(-1), ctx.shift).view(w.shape))
        if grad_rows is None:  # the penalty's gradient alone
            return (None, None, full_alpha, None, None, None, None, None, None)
        if ctx.padding_idx is not None:  # nn.Embedding never trains its padding row
            grad_rows = grad_rows.masked_fill((rows == ctx.padding_idx)[:, None], 0.0)
        grad_w, grad_alpha, grad_group = _KERNELS.run(
            "backward", ctx.fused, grad_rows.reshape(-1), seeds, w[rows].reshape(-1),
            log_alpha[rows].reshape(-1), group_gate, None, *ctx.consts,
            _row_entries(rows, w.shape[1]))
        shape = (rows.numel(), w.shape[1])
        full_w = torch.zeros_like(w).index_copy_(0, rows, grad_w.view(shape))
        full_alpha.index_add_(0, rows, grad_alpha.view(shape))  # rows are unique: one add each
        return (None, full_w, full_alpha, grad_group, None, None, None, None, None)


def _row_entries(rows: torch.Tensor, width: int) -> torch.Tensor:
    """Flat positions of every entry of ``rows`` in a (n, width) table: (k * width,) int64."""
    return (rows[:, None] * width + torch.arange(width, device=rows.device)).reshape(-1)


def gated_rows(theta: torch.Tensor, w: torch.Tensor, log_alpha: torch.Tensor,
               group_gate: torch.Tensor | None, rows: torch.Tensor, seeds: torch.Tensor,
               hc: HardConcrete, fused: bool = True,
               padding_idx: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage-1 effective weight of the rows ``rows`` of a 2-D table, (k, width), and the whole
    table's sum_i P(z_i > 0) (as ``gated_weight`` returns it).

    Args:
        rows: (k,) int64 row numbers, unique.
        seeds: the seeds ``gated_weight`` would have drawn for the whole table (``draw_seeds``).
        padding_idx: a row whose gradient stays zero, as ``nn.Embedding`` keeps it.
    """
    return GatedRows.apply(theta, w, log_alpha, group_gate, rows, seeds, hc, fused, padding_idx)


class ExpectedL0(torch.autograd.Function):
    """sum_i P(z_i > 0) = sum_i sigmoid(log_alpha_i - shift), saving nothing parameter-sized."""

    @staticmethod
    def forward(ctx, log_alpha, shift: float, fused: bool):
        ctx.shift, ctx.fused = shift, fused
        ctx.save_for_backward(log_alpha)
        return _KERNELS.run("l0", fused, log_alpha.reshape(-1), shift)

    @staticmethod
    def backward(ctx, grad_l0):
        (log_alpha,) = ctx.saved_tensors
        grad = _KERNELS.run("l0_backward", ctx.fused, grad_l0, log_alpha.reshape(-1), ctx.shift)
        return grad.view(log_alpha.shape), None, None


def expected_l0(log_alpha: torch.Tensor, hc: HardConcrete, fused: bool = True) -> torch.Tensor:
    """A tensor's expected L0, differentiable in ``log_alpha`` (a row-gated table's penalty when
    a forward did not look it up)."""
    return ExpectedL0.apply(log_alpha, hc.l0_shift, fused)


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
