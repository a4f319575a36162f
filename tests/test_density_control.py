"""Density control: the schedule, the dual step on the multiplier, its state, and a tiny run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprune import DiffPruneConfig, get_diffprune_model
from diffprune.density_control import (
    MAX_PACE_MULTIPLE,
    DensityController,
    DensitySchedule,
    diff_lr_scale,
    end_target,
    gate_learning_rate,
    logit,
    schedule_for,
)
from diffprune.optim import build_optimizer, linear_decay

densities = st.floats(1e-5, 0.999)


@given(start=densities, final=densities, warmup=st.integers(1, 500),
       steps=st.lists(st.integers(0, 1000), min_size=2, max_size=20))
def test_schedule_runs_from_start_to_final_then_holds(start, final, warmup, steps):
    final = min(final, start)
    schedule = DensitySchedule(start, final, warmup)
    assert schedule(0) == pytest.approx(start, rel=1e-9)
    assert schedule(warmup) == pytest.approx(final, rel=1e-9)
    assert schedule(warmup + 17) == schedule(warmup)
    values = [schedule(s) for s in sorted(steps)]
    assert all(a >= b - 1e-15 for a, b in zip(values, values[1:]))  # never rises
    assert all(final * (1 - 1e-9) <= v <= start * (1 + 1e-9) for v in values)


@given(start=densities, final=densities, end=densities, warmup=st.integers(1, 300),
       settle=st.integers(1, 300), steps=st.lists(st.integers(0, 1000), min_size=2, max_size=20))
def test_settle_phase_continues_from_final_to_end_then_holds(start, final, end, warmup, settle,
                                                            steps):
    final = min(final, start)
    end = min(end, final)
    schedule = DensitySchedule(start, final, warmup, end=end, end_steps=warmup + settle)
    assert schedule(warmup) == pytest.approx(final, rel=1e-9)  # the warm-up is unchanged
    assert schedule(warmup + settle) == pytest.approx(end, rel=1e-9)
    assert schedule(warmup + settle + 9) == schedule(warmup + settle)
    values = [schedule(s) for s in sorted(steps)]
    assert all(a >= b - 1e-15 for a, b in zip(values, values[1:]))  # never rises
    assert all(end * (1 - 1e-9) <= v <= start * (1 + 1e-9) for v in values)


def test_settle_phase_from_the_config():
    held = DiffPruneConfig(density=0.005)
    settled = DiffPruneConfig(density=0.005, target_end_multiple=1.0)
    assert end_target(held) == pytest.approx(0.01) and end_target(settled) == pytest.approx(0.005)
    a, b = schedule_for(held, 100, 0.99), schedule_for(settled, 100, 0.99)
    assert [a(s) for s in range(71)] == [b(s) for s in range(71)]  # same warm-up, same pace
    assert a.pace == b.pace
    assert a(100) == pytest.approx(0.01) and b(100) == pytest.approx(0.005)
    assert logit(b(85)) == pytest.approx((logit(0.01) + logit(0.005)) / 2)
    with pytest.raises(ValueError, match="target_end_multiple"):
        DiffPruneConfig(target_multiple=2.0, target_end_multiple=3.0)


def test_schedule_is_linear_in_logits():
    schedule = DensitySchedule(0.99, 0.01, 10)
    logits = [logit(schedule(s)) for s in range(11)]
    steps = [b - a for a, b in zip(logits, logits[1:])]
    assert steps == pytest.approx([steps[0]] * 10)
    assert schedule.pace == pytest.approx(2 * logit(0.99) / 10)


def _controller(**kw):
    return DensityController(DensitySchedule(0.99, 0.01, 10), gain=0.1, rate=0.01, **kw)


def test_drift_follows_the_schedule_and_corrects_errors():
    c = _controller()
    pace = c.schedule.pace
    # On target: the drift is the schedule's own pace (feed-forward), nothing more.
    on = c.update(c.target())
    assert on == pytest.approx(pace) and c.integral == 0.0
    # Above the target: more drift; below: less, down to lifting the gates; never beyond the
    # ceiling either way.
    above = c.update(sigmoid_of(logit(c.target()) + 0.5))
    assert above > pace
    below = c.update(sigmoid_of(logit(c.target()) - 1.0))
    assert -MAX_PACE_MULTIPLE * pace <= below < on
    for _ in range(200):
        c.update(0.9999)
    assert c.drift == pytest.approx(MAX_PACE_MULTIPLE * pace)
    # Held at the final target: no feed-forward, only the correction.
    held = _controller(step=50)
    assert held.update(held.target()) == 0.0


def test_integral_does_not_wind_up_while_the_drift_is_clipped():
    c = _controller()
    for _ in range(250):
        c.update(0.0)  # far below the target: the drift ends clipped at -ceiling
    assert c.drift == pytest.approx(-MAX_PACE_MULTIPLE * c.schedule.pace)
    frozen = c.integral
    for _ in range(250):
        c.update(0.0)
    assert c.integral == frozen  # nothing accumulated while clipped
    # Back on target, the integral starts unwinding at once.
    c.update(0.5)
    assert c.integral > frozen


def sigmoid_of(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60), st.integers(0, 59))
@settings(max_examples=50)
def test_state_round_trips_through_json_bit_for_bit(densities_seen, cut):
    whole, first = _controller(record_every=3), _controller(record_every=3)
    for d in densities_seen:
        whole.update(d)
    cut = min(cut, len(densities_seen))
    for d in densities_seen[:cut]:
        first.update(d)
    resumed = _controller(record_every=3)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for d in densities_seen[cut:]:
        resumed.update(d)
    assert resumed.state_dict() == whole.state_dict()


def test_fixed_mode_has_no_controller_and_keeps_the_gate_rate():
    config = DiffPruneConfig(density_control="fixed")
    assert DensityController.for_stage(config, 100, 0.99) is None
    assert gate_learning_rate(config, 10, 0.99) == config.log_alpha_lr


def test_gate_rate_follows_the_step_count():
    config = DiffPruneConfig(density=0.005)  # final target 1%
    pace = schedule_for(config, 100, 0.99).pace
    assert pace == pytest.approx((logit(0.99) - logit(0.01)) / 70)
    assert gate_learning_rate(config, 100, 0.99) == pytest.approx(2 * pace)
    assert gate_learning_rate(config, 100_000, 0.99) == config.log_alpha_lr  # already fast enough


def test_w_rate_follows_the_density_by_default_and_is_the_papers_one_flag_away():
    assert diff_lr_scale(DiffPruneConfig(), 100, 0.99)(70) == pytest.approx((0.01 / 0.99) ** -0.5)
    assert diff_lr_scale(DiffPruneConfig(diff_lr_density_power=0), 100, 0.99) is None
    assert diff_lr_scale(DiffPruneConfig(density_control="fixed", diff_lr_density_power=0.5),
                         100, 0.99) is None


@given(power=st.floats(0.01, 4), top=st.floats(1, 100), density=st.floats(1e-4, 0.2),
       start=st.floats(0.3, 0.999), num_steps=st.integers(2, 2000))
def test_w_rate_rises_as_the_target_falls_and_stays_capped(power, top, density, start,
                                                           num_steps):
    config = DiffPruneConfig(density=density, diff_lr_density_power=power, diff_lr_max_scale=top)
    scale = diff_lr_scale(config, num_steps, start)
    schedule = schedule_for(config, num_steps, start)
    factors = [scale(s) for s in range(num_steps + 1)]
    assert factors[0] == pytest.approx(1.0)
    assert all(1.0 - 1e-12 <= f <= top for f in factors)
    assert all(a <= b + 1e-12 for a, b in zip(factors, factors[1:]))  # never falls
    for step in (0, num_steps // 2, num_steps):
        expected = (schedule(step) / schedule.start) ** -power
        assert factors[step] == pytest.approx(min(top, expected), rel=1e-9)


def test_the_scale_moves_only_the_diffs_rate():
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    config = DiffPruneConfig(structured=True, fused=False, density=0.05, head_patterns=["^1\\."],
                             diff_lr_density_power=0.5)
    steps = 40
    plain_model = get_diffprune_model(net, config)
    scale = diff_lr_scale(config, steps, plain_model.expected_density())
    optimizer, scheduler = build_optimizer(plain_model, steps, diff_scale=scale)
    decay = linear_decay(steps)
    base = {g["name"]: g["lr"] for g in optimizer.param_groups}
    for step in range(1, steps):
        optimizer.step()  # no gradients: nothing moves, but the schedule advances in order
        scheduler.step()
        for group in optimizer.param_groups:
            want = {"diff": base["diff"] * decay(step) * scale(step),
                    "head": base["head"] * decay(step)}.get(group["name"], base[group["name"]])
            assert group["lr"] == pytest.approx(want, rel=1e-12), (group["name"], step)
    start = plain_model.expected_density()  # the target ends at 2 x 5%: the rate rose ~3x
    assert scale(steps) == pytest.approx((0.1 / start) ** -0.5, rel=1e-6)


@pytest.mark.parametrize("bad", [{"density_control": "lagrange"}, {"target_multiple": 0.5},
                                 {"target_warmup": 0.0}, {"target_warmup": 1.5},
                                 {"target_end_multiple": 0.5},
                                 {"target_start": 0.8}, {"multiplier_lr": -1.0},
                                 {"multiplier_gain": math.inf},
                                 {"gate_speed_headroom": math.nan}])
def test_bad_control_settings_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        DiffPruneConfig(**bad)


def test_a_controlled_stage_lands_on_its_target():
    """A small regression where only a few weights matter: the gates close to the target."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    config = DiffPruneConfig(structured=False, density=0.05, fused=False, diff_lr=1e-2)
    model = get_diffprune_model(net, config)
    steps = 200
    start = model.expected_density()
    model.diffprune_config = DiffPruneConfig(**{**config.to_dict(),
                                      "log_alpha_lr": gate_learning_rate(config, steps, start)})
    control = DensityController.for_stage(model.diffprune_config, steps, start)
    optimizer, scheduler = build_optimizer(model, steps)
    x = torch.randn(256, 32)
    y = torch.sin(x[:, :3].sum(1, keepdim=True))
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y) + model.penalty()
        loss.backward()
        model.clip_grad_norms()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        model.drift_gates(control.update(model.last_density()))
    assert model.expected_density() == pytest.approx(0.1, rel=0.25)
    assert control.trace[0]["step"] == 1 and control.trace[-1]["step"] == 200
