"""CompactAdamW: torch's AdamW update with bfloat16 moments (stage 1's default optimizer)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_bert
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprune import DiffPruneConfig, get_diffprune_model
from diffprune.compact_adamw import CompactAdamW, _seed, stochastic_bfloat16
from diffprune.optim import build_optimizer
from diffprune.training.checkpoint import _optimizer_from_files, _optimizer_to_files


def _pair(dtype: torch.dtype, fused: bool, shape=(300, 17)):
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(shape)), torch.nn.Parameter(torch.randn(shape[1]))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    groups = lambda ps: [{"params": [ps[0]], "lr": 1e-2, "weight_decay": 0.05},  # noqa: E731
                         {"params": [ps[1]], "lr": 3e-2, "weight_decay": 0.0}]
    ref = torch.optim.AdamW(groups(a), eps=1e-8)
    ours = CompactAdamW(groups(b), eps=1e-8, moment_dtype=dtype, fused=fused)
    return a, b, ref, ours


def _steps(a, b, ref, ours, n: int, decay: float = 0.97):
    for i in range(n):
        for pa, pb in zip(a, b):
            g = torch.randn_like(pa) * decay ** i
            pa.grad, pb.grad = g.clone(), g.clone()
        for opt in (ref, ours):
            for group in opt.param_groups:  # a schedule: the rate changes every step
                group["lr"] *= 0.99
            opt.step()


@pytest.mark.parametrize("fused", [False, True])
def test_float32_moments_give_torch_adamw(fused):
    a, b, ref, ours = _pair(torch.float32, fused)
    _steps(a, b, ref, ours, 40)
    for pa, pb in zip(a, b):
        assert torch.allclose(pa, pb, rtol=0, atol=2e-5)
        assert torch.allclose(ref.state[pa]["exp_avg_sq"], ours.state[pb]["exp_avg_sq"],
                              rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("fused", [False, True])
def test_bfloat16_moments_stay_on_the_float32_path(fused):
    a, b, ref, ours = _pair(torch.bfloat16, fused)
    start = [p.detach().clone() for p in a]
    _steps(a, b, ref, ours, 200)
    for pa, pb, p0 in zip(a, b, start):
        m, v = ours.moments(pb)
        assert m.dtype == v.dtype == torch.bfloat16
        # the two paths differ by a small part of how far the float32 run moved
        assert (pa - pb).abs().max() < 0.05 * (pa - p0).abs().max()
        # v has shrunk ~e^-12 with the gradients; rounding to nearest would have frozen it
        v_ref, v = ref.state[pa]["exp_avg_sq"], v.float()
        assert float(v.mean()) == pytest.approx(float(v_ref.mean()), rel=0.03)


def test_rounding_to_nearest_would_freeze_v():
    """Why v is rounded stochastically: at b2 = 0.999 a shrinking gradient moves v by 0.1% a
    step, under half of bfloat16's spacing."""
    v = torch.full((10_000,), 1.0)
    nearest, stochastic = v.to(torch.bfloat16), v.to(torch.bfloat16)
    for step in range(500):
        seed = torch.tensor(step)
        nearest = (nearest.float() * 0.999).to(torch.bfloat16)
        stochastic = stochastic_bfloat16(stochastic.float() * 0.999, seed)
    assert float(nearest.float().mean()) == 1.0
    assert stochastic.float().mean().item() == pytest.approx(0.999 ** 500, rel=0.01)


finite = st.floats(min_value=-2.0**100, max_value=2.0**100, allow_nan=False, width=32).filter(
    lambda x: x == 0 or abs(x) > 2.0**-100)


@settings(max_examples=40, deadline=None)
@given(x=finite, seed=st.integers(0, 2**32 - 1))
def test_stochastic_rounding_is_unbiased_between_the_two_neighbours(x, seed):
    values = torch.full((20_000,), x, dtype=torch.float32)
    rounded = stochastic_bfloat16(values, torch.tensor(seed)).float()
    # the bfloat16 neighbours of x: toward zero (the bits cut) and the next one away from zero
    bits = int(values[:1].view(torch.int32)) & 0xFFFFFFFF
    toward = bits & 0xFFFF0000
    neighbours = {toward, toward + 0x10000} if bits != toward else {toward}
    as_float = {float(torch.tensor([n - (1 << 32) if n >= 1 << 31 else n],
                                   dtype=torch.int32).view(torch.float32)) for n in neighbours}
    assert set(rounded.unique().tolist()) <= as_float
    lo, hi = min(as_float), max(as_float)
    spacing = hi - lo
    # unbiased: the mean is x within the sampling error of a two-valued draw
    error = abs(float(rounded.double().mean()) - x)
    assert error <= 5 * spacing / (2 * math.sqrt(values.numel())) + 1e-6 * abs(x)


def test_rounding_does_not_draw_from_torch_generator():
    a, b, ref, ours = _pair(torch.bfloat16, False)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    b[0].grad, b[1].grad = torch.ones_like(b[0]), torch.ones_like(b[1])
    ours.step()
    assert torch.equal(before, torch.get_rng_state())


def test_state_through_checkpoint_files_resumes_bit_for_bit():
    a, b, ref, ours = _pair(torch.bfloat16, False)
    _steps(a, b, ref, ours, 5)
    tensors, info = _optimizer_to_files(ours)
    # the files hold torch's names and bfloat16, whatever the layout in memory
    assert {k: v.dtype for k, v in tensors.items() if not k.endswith("step")} == {
        f"{i}.{k}": torch.bfloat16 for i in (0, 1) for k in ("exp_avg", "exp_avg_sq")}
    copies = [torch.nn.Parameter(p.detach().clone()) for p in b]
    resumed = CompactAdamW([{"params": [copies[0]]}, {"params": [copies[1]]}],
                           moment_dtype=torch.bfloat16, fused=False)
    resumed.load_state_dict(_optimizer_from_files(tensors, info))
    for p, q in zip(b, copies):
        for mine, theirs in zip(ours.moments(p), resumed.moments(q)):
            assert mine.dtype == torch.bfloat16 and torch.equal(mine, theirs)
    for _ in range(3):
        for p, q in zip(b, copies):
            g = torch.randn_like(p)
            p.grad, q.grad = g, g.clone()
        ours.step()
        resumed.step()
    for p, q in zip(b, copies):
        assert torch.equal(p, q)


def test_stage_one_uses_it_by_default_and_the_paper_setting_uses_torch():
    model = get_diffprune_model(tiny_bert(), DiffPruneConfig())
    assert isinstance(build_optimizer(model, 10)[0], CompactAdamW)
    exact = get_diffprune_model(tiny_bert(), DiffPruneConfig(moment_dtype="float32"))
    assert type(build_optimizer(exact, 10)[0]) is torch.optim.AdamW
    model.project()
    assert type(build_optimizer(model, 10)[0]) is torch.optim.AdamW  # the fixed-mask stage


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="moment_dtype"):
        DiffPruneConfig(moment_dtype="float16")
    with pytest.raises(ValueError, match="float32 parameters"):
        CompactAdamW([torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))])
    with pytest.raises(ValueError, match="moment_dtype"):
        CompactAdamW([torch.nn.Parameter(torch.zeros(2))], moment_dtype=torch.float16)
    with pytest.raises(ValueError, match="contiguous"):
        CompactAdamW([torch.nn.Parameter(torch.zeros(3, 4).t())])


def _reference_bfloat16_step(p, g, m, v, lr, wd, b1, b2, eps, t, seed):
    """The bfloat16-moment step written plainly: float32 math, m stored rounded to nearest,
    v stochastically (``stochastic_bfloat16``)."""
    m_new = m.float() * b1 + g * (1 - b1)
    v_new = v.float() * b2 + g * g * (1 - b2)
    step_size = torch.tensor(lr / (1 - b1 ** t), dtype=torch.float32)
    bc2 = torch.tensor(math.sqrt(1 - b2 ** t), dtype=torch.float32)
    p.copy_(p * torch.tensor(1 - lr * wd, dtype=torch.float32)
            - step_size * m_new / (v_new.sqrt() / bc2 + eps))
    return m_new.to(torch.bfloat16), stochastic_bfloat16(v_new, torch.tensor(seed & 0xFFFFFFFF))


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 3000), steps=st.integers(1, 4), scale=st.sampled_from([1e-6, 1e-2, 10.0]),
       fused=st.booleans())
def test_packed_moments_step_as_the_plain_bfloat16_math(n, steps, scale, fused):
    """Both moments packed in one int32 word give, bit for bit, the plain bfloat16 step."""
    torch.manual_seed(n)
    p = torch.nn.Parameter(torch.randn(n))
    ref_p = p.detach().clone()
    m, v = torch.zeros(n, dtype=torch.bfloat16), torch.zeros(n, dtype=torch.bfloat16)
    opt = CompactAdamW([p], lr=1e-3, weight_decay=0.01, fused=fused)
    for t in range(1, steps + 1):
        g = torch.randn(n) * scale
        p.grad = g.clone()
        opt.step()
        m, v = _reference_bfloat16_step(ref_p, g, m, v, 1e-3, 0.01, 0.9, 0.999, 1e-8, t,
                                        _seed(t, 1))
        mine_m, mine_v = opt.moments(p)
        assert torch.equal(mine_m.view(torch.int16), m.view(torch.int16))
        assert torch.equal(mine_v.view(torch.int16), v.view(torch.int16))
        assert torch.allclose(p.detach(), ref_p, rtol=0, atol=1e-6 * float(ref_p.abs().max()))
