"""Density control: stage 1 steers the gates to a density target instead of hoping a λ lands there.

The paper trains stage 1 with a constant penalty weight λ and lets the density land where it
lands; with few steps the gates barely move (λ·sigmoid'(5) ≈ 8e-10 is below AdamW's epsilon) and
the projection then throws most of the diff away. Here stage 1 solves the constrained problem

    minimise task loss   subject to   ρ(α) ≤ t(step)

where ρ is the expected density of the diff (the mean of P(z_i > 0), times P(z_g > 0) for the
structured variant) and t a target schedule, by a primal-dual method whose multiplier μ is
raised while the density is above the target and lowered while it is below, as CoFi pruning and
"Controlled Sparsity via Constrained Optimization" do. Three choices make it work with AdamW:

* **The penalty's step is decoupled from AdamW** (as AdamW decouples weight decay from Adam): after
  each optimizer step every element log-alpha moves down by μ. That is the natural-gradient step
  of μ·E[L0]: under the Fisher metric of a Bernoulli gate, p(1 − p) in logit coordinates, the
  gradient sigmoid'(α) of P(z > 0) becomes 1 for every gate. Inside AdamW the same penalty would
  be normalised away (any λ large enough moves every gate by its learning rate, any smaller one
  hardly at all), so λ has no useful scale; μ has one, logits per step, the unit the schedule
  moves in. A gate stays open where the task pushes its log-alpha up faster than μ pulls it down.
* **Everything is in logit units.** The target's logit falls linearly from the start density to
  the final target (reached at ``target_warmup`` of stage 1, after ``target_start`` at the start
  density, then held, or, with ``target_end_multiple``, lowered on to that multiple of the budget
  by the last step), the controller's error is logit(ρ) − logit(t), and μ is the schedule's
  own pace (feed-forward) plus a proportional and an integral correction. The feed-forward term
  means the controller need not discover the right scale first, so there is no wind-up and no
  overshoot from a lagging multiplier.
* **The gates can keep pace with the task.** ``gate_learning_rate`` raises the element gates'
  AdamW rate to ``gate_speed_headroom`` times the schedule's pace, so that a gate the task needs
  can outrun the drift.

The in-loss penalty l0_lambda·E[L0] of the paper is kept in both modes; with
``density_control='fixed'`` μ is 0 and stage 1 is exactly the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from diffprune.config import DiffPruneConfig

# |μ| never exceeds this many times the schedule's pace: a lagging density is caught up within a
# few steps, and no error, however large, closes (or opens) every gate at once.
MAX_PACE_MULTIPLE = 3.0
_EDGE = 1e-7  # densities are clamped into (EDGE, 1 - EDGE) before taking a logit


def logit(p: float) -> float:
    p = min(max(p, _EDGE), 1.0 - _EDGE)
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True)
class DensitySchedule:
    """t(step): ``start`` until ``hold_steps``, logit-linear down to ``final`` at
    ``warmup_steps``; then held, or, with ``end`` and ``end_steps``, logit-linear on down to
    ``end`` at ``end_steps`` (the settle phase) and held there."""

    start: float
    final: float
    warmup_steps: int
    hold_steps: int = 0
    end: float | None = None
    end_steps: int = 0

    def __call__(self, step: int) -> float:
        span = max(1, self.warmup_steps - self.hold_steps)
        frac = min(1.0, max(0.0, (step - self.hold_steps) / span))
        if self.end is not None and step > self.warmup_steps:
            settle = max(1, self.end_steps - self.warmup_steps)
            frac = min(1.0, (step - self.warmup_steps) / settle)
            return sigmoid(logit(self.final) + (logit(self.end) - logit(self.final)) * frac)
        return sigmoid(logit(self.start) + (logit(self.final) - logit(self.start)) * frac)

    @property
    def pace(self) -> float:
        """How far the target's logit falls per step during the warm-up (the settle phase, if
        any, falls more slowly)."""
        span = max(1, self.warmup_steps - self.hold_steps)
        return max(0.0, logit(self.start) - logit(self.final)) / span


def final_target(config: DiffPruneConfig) -> float:
    """The density stage 1 steers to by the end of its warm-up: ``target_multiple`` times the
    projection's budget."""
    return min(1.0, config.target_multiple * config.density)


def end_target(config: DiffPruneConfig) -> float:
    """The density stage 1 ends at: ``target_end_multiple`` times the budget where it is set,
    else the warm-up's final target (held)."""
    if config.target_end_multiple is None:
        return final_target(config)
    return min(final_target(config), config.target_end_multiple * config.density)


def schedule_for(config: DiffPruneConfig, num_steps: int, start: float) -> DensitySchedule:
    warmup = max(1, round(config.target_warmup * num_steps))
    hold = min(warmup - 1, round(config.target_start * num_steps))
    final = min(start, final_target(config))
    if config.target_end_multiple is None or warmup >= num_steps:
        return DensitySchedule(start, final, warmup, hold)
    return DensitySchedule(start, final, warmup, hold, min(final, end_target(config)),
                           num_steps)


def gate_learning_rate(config: DiffPruneConfig, num_steps: int, start: float) -> float:
    """The element gates' learning rate for a controlled stage of ``num_steps`` steps.

    At least ``log_alpha_lr``, and ``gate_speed_headroom`` times the schedule's pace, since AdamW
    moves a log-alpha by about its learning rate per step at most.
    """
    if config.density_control != "target" or config.gate_speed_headroom <= 0:
        return config.log_alpha_lr
    pace = schedule_for(config, num_steps, start).pace
    return max(config.log_alpha_lr, config.gate_speed_headroom * pace)


def diff_lr_scale(config: DiffPruneConfig, num_steps: int,
                  start: float) -> Callable[[int], float] | None:
    """step -> the factor on stage 1's w learning rate, or None where it stays the paper's.

    AdamW moves every trained entry by about its learning rate per step, so the size of an
    update grows with the square root of the number of entries moving. As the gates close, fewer
    entries move, and at the paper's decaying rate the diff all but stops learning once it is
    sparse. With ``diff_lr_density_power`` p the rate is multiplied by (t(step) / t(0))^-p,
    at most ``diff_lr_max_scale`` times; p = 0.5 keeps the update's size as the density falls.
    A function of the step alone, so a resumed run follows it exactly.
    """
    power = config.diff_lr_density_power
    if config.density_control != "target" or power == 0:
        return None
    schedule = schedule_for(config, num_steps, start)
    top = config.diff_lr_max_scale

    def scale(step: int) -> float:
        return min(top, (schedule(step) / schedule.start) ** -power)

    return scale


@dataclass
class DensityController:
    """The drift μ (logits per step) that steers ρ along t(step); one ``update`` per step.

    μ = pace(step) + gain·e + integral, clipped to ±MAX_PACE_MULTIPLE · pace, with e the density
    error in logits and the integral accumulating rate·e (frozen while μ is clipped, so it cannot
    wind up). μ may be negative: the target is held as an equality, as CoFi's multipliers do, so
    gates that drift shut below the target (AdamW's noise walks a log-alpha into the region where
    z is always 0 and the task gradient vanishes) are lifted back. Every process of a DDP run
    holds the same log-alphas, hence the same density and the same μ: nothing needs to be
    communicated.
    """

    schedule: DensitySchedule
    gain: float  # μ per logit of error (proportional action)
    rate: float  # integral action: change of the integral per step per logit of error
    record_every: int = 5  # steps between entries of ``trace`` (a plot's resolution)
    step: int = 0
    integral: float = 0.0
    drift: float = 0.0  # μ for the next step
    trace: list[dict] = field(default_factory=list)

    @classmethod
    def for_stage(cls, config: DiffPruneConfig, num_steps: int,
                  start: float) -> DensityController | None:
        """The controller of a stage-1 run, or None for the paper's fixed λ."""
        if config.density_control != "target":
            return None
        return cls(schedule_for(config, num_steps, start), config.multiplier_gain,
                   config.multiplier_lr)

    def target(self, step: int | None = None) -> float:
        return self.schedule(self.step if step is None else step)

    def feed_forward(self, step: int) -> float:
        """The schedule's own pace at ``step``: how far its logit falls over the next step."""
        return max(0.0, logit(self.schedule(step)) - logit(self.schedule(step + 1)))

    def update(self, density: float) -> float:
        """Take the density of the step just run; returns μ, the drift to apply now."""
        target = self.target()
        error = logit(density) - logit(target)
        ceiling = MAX_PACE_MULTIPLE * max(self.schedule.pace, 1e-3)
        raw = self.feed_forward(self.step) + self.gain * error + self.integral
        if abs(raw) < ceiling or raw * error < 0:
            self.integral += self.rate * error  # only where it moves μ back into range
        self.drift = min(ceiling, max(-ceiling, raw))
        self.step += 1
        if self.step % self.record_every == 0 or self.step == 1:
            self.trace.append({"step": self.step, "target": target, "density": density,
                               "drift": self.drift})
        return self.drift

    def state_dict(self) -> dict:
        """JSON-safe; floats round-trip exactly, so a resumed run continues bit for bit."""
        return {"step": self.step, "integral": self.integral, "drift": self.drift,
                "trace": [dict(t) for t in self.trace]}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.integral = float(state["integral"])
        self.drift = float(state["drift"])
        self.trace = [dict(t) for t in state["trace"]]
