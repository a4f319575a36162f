"""The fused stage-1 function against the same math written with plain autograd."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprune.diff import (
    counter_uniform,
    draw_seeds,
    entry_uniform,
    expected_l0,
    gated_rows,
    gated_weight,
    masked_weight,
)
from diffprune.gates import HardConcrete, gate_from_noise, prob_nonzero


def _reference(theta, w, log_alpha, group_log_alpha, hc, seed):
    torch.manual_seed(seed)  # the same two seeds the function draws
    u = counter_uniform(draw_seeds(theta.device), theta.numel(), hc.eps).view(theta.shape)
    z = gate_from_noise(log_alpha, u, hc)
    delta = z * w
    l0 = prob_nonzero(log_alpha, hc).sum()
    if group_log_alpha is not None:
        delta = delta * group_log_alpha  # a stand-in gate value, differentiable like the real one
    return theta + delta, l0


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("grouped", [False, True])
# The third: temperature 1 with l != -r, where the forward's P(z > 0) takes exp(shift) != 1.
@pytest.mark.parametrize("hc", [HardConcrete(), HardConcrete(-0.1, 1.1, 2 / 3, 1e-4),
                                HardConcrete(-0.1, 1.1, 1.0, 1e-4)])
def test_gated_weight_matches_reference(fused, grouped, hc):
    theta = torch.randn(5, 7)
    make = lambda t: t.clone().requires_grad_(True)  # noqa: E731
    w, log_alpha = torch.randn(5, 7) * 0.1, torch.randn(5, 7) * 2
    group = torch.tensor(0.8) if grouped else None
    ours = [make(w), make(log_alpha)] + ([make(group)] if grouped else [])
    ref = [make(w), make(log_alpha)] + ([make(group)] if grouped else [])
    g_out = torch.randn(5, 7)

    torch.manual_seed(3)
    weight, l0 = gated_weight(theta, *ours[:2], ours[2] if grouped else None, hc, fused=fused)
    ref_weight, ref_l0 = _reference(theta, *ref[:2], ref[2] if grouped else None, hc, seed=3)
    torch.testing.assert_close(weight, ref_weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l0, ref_l0, rtol=1e-5, atol=1e-5)

    ((weight * g_out).sum() + 0.3 * l0).backward()
    ((ref_weight * g_out).sum() + 0.3 * ref_l0).backward()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)


def test_zero_diff_gives_theta_exactly():
    theta = torch.randn(64, 3)
    weight, _ = gated_weight(theta, torch.zeros(64, 3), torch.full((64, 3), 5.0), None,
                             HardConcrete(), fused=False)
    assert torch.equal(weight, theta)


def test_masked_weight_touches_only_the_mask():
    theta = torch.randn(4, 6)
    idx = torch.tensor([1, 7, 23])
    values = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    weight = masked_weight(theta, idx, values)
    changed = (weight != theta).view(-1).nonzero().view(-1)
    assert changed.tolist() == [1, 7, 23]
    weight.sum().backward()
    assert values.grad.tolist() == [1.0, 1.0, 1.0]


def test_fused_kernels_compile_where_a_compiler_exists():
    import shutil

    from diffprune.diff import _KERNELS
    from diffprune.kernels import use_backend

    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no C compiler: the eager fallback is used")
    theta = torch.randn(10)
    w = torch.zeros(10, requires_grad=True)
    with use_backend("compile"):  # the C++ kernels would take these inputs first
        weight, l0 = gated_weight(theta, w, torch.full((10,), 5.0), None, HardConcrete(),
                                  fused=True)
        (weight.sum() + l0).backward()
    assert not _KERNELS.broken and {"forward", "backward"} <= set(_KERNELS.compiled)


def test_the_counter_noise_is_uniform_and_independent():
    """The hash noise has the uniform distribution the gate needs: moments, a Kolmogorov-Smirnov
    distance, and no correlation between neighbouring entries or between seeds."""
    torch.manual_seed(0)
    n = 200_000
    u = counter_uniform(draw_seeds(torch.device("cpu")), n, 0.0).double()
    assert abs(u.mean().item() - 0.5) < 0.003 and abs(u.var().item() - 1 / 12) < 0.002
    ks = (torch.sort(u).values - torch.arange(1, n + 1, dtype=torch.float64) / n).abs().max()
    assert ks < 1.63 / n ** 0.5 * 1.5  # well inside the 1% critical value of the KS test
    def corr(a, b):
        return torch.corrcoef(torch.stack([a, b]))[0, 1].abs().item()
    assert corr(u[:-1], u[1:]) < 0.01
    v = counter_uniform(draw_seeds(torch.device("cpu")), n, 0.0).double()
    assert corr(u, v) < 0.01
    # Low bits too: the parity of 2**k * u is a fair coin for every k up to the 24 bits kept.
    for k in (1, 8, 16, 23):
        assert abs(((u * 2 ** k).floor() % 2).mean().item() - 0.5) < 0.01


def test_the_noise_is_a_function_of_the_seeds_alone():
    seeds = torch.tensor([12345, 2**32 - 1])
    a, b = counter_uniform(seeds, 1000, 1e-4), counter_uniform(seeds, 1000, 1e-4)
    assert torch.equal(a, b) and a.min() >= 1e-4 and a.max() <= 1 - 1e-4
    assert torch.equal(counter_uniform(seeds, 10, 1e-4), a[:10])  # entry i is entry i
    assert not torch.equal(counter_uniform(torch.tensor([12346, 2**32 - 1]), 1000, 1e-4), a)


def _lowbias32(x: int) -> int:
    """The hash on Python integers, unsigned 32-bit: what the tensor code must compute."""
    m = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


_compiled_uniform = torch.compile(entry_uniform, dynamic=True)


@settings(max_examples=30, deadline=None)
@given(seeds=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
       index=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=40))
def test_the_noise_is_the_unsigned_hash_of_position_and_seeds(seeds, index):
    """u = (lowbias32(lowbias32(i ^ s0) ^ s1) >> 8 + 0.5) / 2**24 for every seed and position,
    eager and compiled (the int32 arithmetic wraps as unsigned would)."""
    expected = torch.tensor(
        [((_lowbias32(_lowbias32(i ^ seeds[0]) ^ seeds[1]) >> 8) + 0.5) / 2**24 for i in index],
        dtype=torch.float32)
    s, i = torch.tensor(seeds, dtype=torch.int64), torch.tensor(index, dtype=torch.int64)
    assert torch.equal(entry_uniform(s, i, 0.0), expected)
    assert torch.equal(_compiled_uniform(s, i, 0.0), expected)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("rows,padding_idx", [([0, 3, 4], None), ([1, 2, 5, 8], 2), ([7], 7),
                                              (list(range(9)), 0)])
def test_gated_rows_are_those_rows_of_the_whole_table(fused, grouped, rows, padding_idx):
    """The same seeds give the looked-up rows the gates the whole-table pass gives them, and
    the same gradients: the other rows get only the penalty's, the padding row none."""
    hc = HardConcrete()
    theta = torch.randn(9, 6)
    make = lambda t: t.clone().requires_grad_(True)  # noqa: E731
    w, log_alpha = torch.randn(9, 6) * 0.1, torch.randn(9, 6) * 2
    group = torch.tensor(0.7) if grouped else None
    ours = [make(w), make(log_alpha)] + ([make(group)] if grouped else [])
    ref = [make(w), make(log_alpha)] + ([make(group)] if grouped else [])
    rows = torch.tensor(rows)
    g_out = torch.randn(len(rows), 6)

    torch.manual_seed(5)
    whole, l0 = gated_weight(theta, *ref[:2], ref[2] if grouped else None, hc, fused=fused)
    torch.manual_seed(5)
    part, part_l0 = gated_rows(theta, *ours[:2], ours[2] if grouped else None, rows,
                               draw_seeds(theta.device), hc, fused, padding_idx)
    torch.testing.assert_close(part, whole[rows], rtol=0, atol=0)
    torch.testing.assert_close(part_l0, l0, rtol=1e-6, atol=1e-5)
    # the fallback for a table a forward did not look up gives the same L0
    torch.testing.assert_close(expected_l0(ours[1], hc, fused), part_l0, rtol=0, atol=0)

    keep = (rows != padding_idx)[:, None].float() if padding_idx is not None else 1.0
    ((whole[rows] * g_out * keep).sum() + 0.3 * l0).backward()
    ((part * g_out).sum() + 0.3 * part_l0).backward()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("use", ["rows", "penalty"])
def test_gated_rows_with_one_output_unused(fused, use):
    """Only the rows in the loss: log-alpha's gradient is the rows' alone; only the penalty:
    the penalty's alone, and w gets none."""
    hc = HardConcrete()
    theta, rows = torch.randn(9, 6), torch.tensor([1, 4])
    w = (torch.randn(9, 6) * 0.1).requires_grad_(True)
    log_alpha = (torch.randn(9, 6) * 2).requires_grad_(True)
    part, l0 = gated_rows(theta, w, log_alpha, None, rows, draw_seeds(theta.device), hc, fused)
    (part.sum() if use == "rows" else l0).backward()
    if use == "penalty":
        assert w.grad is None
        p = torch.sigmoid(log_alpha.detach() - hc.l0_shift)
        torch.testing.assert_close(log_alpha.grad, p * (1 - p))
    else:
        others = torch.ones(9, dtype=torch.bool)
        others[rows] = False
        assert not log_alpha.grad[others].any() and not w.grad[others].any()
        assert w.grad[rows].abs().sum() > 0
