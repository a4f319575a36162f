"""The method's configuration: one dataclass, the single source of truth.

Every default is the paper's (see SPEC §2–§5). The same object is saved with each task and will
generate the command-line flags, so every field carries help text in its metadata.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

PenaltyForm = Literal["code", "paper"]


def _field(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class DiffPruneConfig:
    """How a model is turned into a base plus a sparse, gated diff.

    Attributes are documented through their ``metadata["help"]``; see ``describe()``.
    """

    structured: bool = _field(
        True, "Add one group gate per parameter tensor (structured diff pruning, the default)."
    )
    structured_penalty: PenaltyForm = _field(
        "code",
        "Structured L0 penalty: 'code' counts element gates plus each group gate once (the "
        "authors' code, which produced the published numbers); 'paper' uses the product form "
        "sum_g P(z_g>0) * sum_i P(z_i>0) of the paper's text.",
    )
    l0_lambda: float = _field(
        1.25e-7, "Weight of the expected-L0 penalty (a plain sum over gates)."
    )
    init_log_alpha: float = _field(5.0, "Initial log-alpha of every gate (P(z>0) ~ 0.993).")
    stretch_left: float = _field(-1.5, "Left end l of the hard-concrete stretch interval.")
    stretch_right: float = _field(1.5, "Right end r of the hard-concrete stretch interval.")
    temperature: float = _field(1.0, "Hard-concrete temperature beta (the paper uses 1).")
    noise_eps: float = _field(1e-4, "Uniform noise u is clipped to [eps, 1 - eps].")
    fused: bool = _field(
        True, "Fuse the gates' elementwise math with torch.compile (eager fallback, same results)."
    )
    density: float = _field(0.005, "Fraction of gated parameters kept by the projection.")
    target_patterns: list[str] = _field(
        [], "Regexes (re.search on parameter names) choosing the gated tensors; empty = all."
    )
    exclude_patterns: list[str] = _field([], "Regexes of parameter names never gated nor trained.")
    head_patterns: list[str] = _field(
        [],
        "Regexes naming the task head (trained densely, stored in full). Empty = found from the "
        "model: for Transformers models, everything outside the base model.",
    )
    diff_lr: float = _field(1e-5, "Learning rate of the diff vector w (linear decay).")
    log_alpha_lr: float = _field(0.1, "Learning rate of every log-alpha (constant).")
    group_log_alpha_lr: float | None = _field(
        None, "Learning rate of the structured variant's group log-alphas (constant); None = "
        "log_alpha_lr, as in the paper. A diagnostic knob: BENCHMARKS.md measures it.")
    head_lr: float | None = _field(None, "Learning rate of the dense task head; None = diff_lr.")
    diff_max_grad_norm: float = _field(1.0, "Gradient-norm clip of w and the head; 0 = none.")
    log_alpha_max_grad_norm: float = _field(1.0, "Gradient-norm clip of log-alpha; 0 = none.")
    adam_eps: float = _field(1e-8, "AdamW epsilon (it interacts with the tiny penalty gradient).")
    weight_decay: float = _field(0.0, "AdamW weight decay of w and the head.")

    def __post_init__(self) -> None:
        if self.structured_penalty not in ("code", "paper"):
            raise ValueError(
                f"structured_penalty must be 'code' or 'paper', got {self.structured_penalty!r}"
            )
        if not self.stretch_left < 0.0 < 1.0 < self.stretch_right:
            raise ValueError(
                "the stretch interval must satisfy l < 0 < 1 < r so that gates can be exactly 0 "
                f"or 1; got l={self.stretch_left}, r={self.stretch_right}"
            )
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.noise_eps < 0.5:
            raise ValueError(f"noise_eps must be in (0, 0.5), got {self.noise_eps}")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {self.density}")
        for name in ("l0_lambda", "weight_decay", "diff_max_grad_norm", "log_alpha_max_grad_norm"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("diff_lr", "log_alpha_lr", "adam_eps"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        for name in ("head_lr", "group_log_alpha_lr"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0 or None, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiffPruneConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown DiffPruneConfig fields: {', '.join(unknown)}")
        return cls(**values)

    @staticmethod
    def describe() -> dict[str, str]:
        """Field name -> help text, for generated CLI flags and docs."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(DiffPruneConfig)}
