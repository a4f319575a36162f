"""The method's configuration: one dataclass, the single source of truth.

The defaults are the built-in recipe (``recipes/default.json`` writes them out): the paper's gate
(hard-concrete on [-1.5, 1.5], log-alpha 5 at the start, λ 1.25e-7), with density control and the
learning rates measured on the bundled base; ``recipes/paper.json`` is the paper's exact setting
(docs/method.md says where the two differ and why). The same object is saved with each task and
generates the command-line flags, so every field carries help text in its metadata.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from diffprune.bounds import check_bounds
from diffprune.bounds import setting as _field

PenaltyForm = Literal["code", "paper"]
DensityControl = Literal["target", "fixed"]
MomentDtype = Literal["bfloat16", "float32"]


@dataclass
class DiffPruneConfig:
    """How a model is turned into a base plus a sparse, gated diff.

    Attributes are documented through their ``metadata["help"]`` (the CLI's flag help).
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
        1.25e-7, "Weight of the expected-L0 penalty in the loss (a plain sum over gates).", low=0)
    density_control: DensityControl = _field(
        "target", "'target': a multiplier, applied as a decoupled step on the log-alphas, "
        "steers the expected density along a schedule to target_multiple x density "
        "(density_control.py); 'fixed': the paper's constant l0_lambda alone.")
    target_multiple: float = _field(
        2.0, "Stage 1's final density target, as a multiple of the projection's density.", low=1)
    target_start: float = _field(
        0.0, "Fraction of stage 1 during which the target stays at the start density (the "
        "diff trains densely first).", low=0, high=1, open_high=True)
    target_warmup: float = _field(
        0.7, "Fraction of stage 1 by which the target reaches its final value (then held).",
        low=0, high=1, open_low=True)
    target_end_multiple: float | None = _field(
        None, "Stage 1's target at its last step, as a multiple of the projection's density: "
        "after target_warmup the target keeps falling, logit-linearly, from target_multiple "
        "to this (the settle phase), so that the diff the projection cuts is already small. "
        "None = hold target_multiple.", low=1, optional=True)
    multiplier_gain: float = _field(
        0.2, "Density control's proportional action: logits of drift per step per logit of "
        "density error.", low=0)
    multiplier_lr: float = _field(
        0.002, "Density control's integral action: change of the drift per step per logit of "
        "density error.", low=0)
    gate_speed_headroom: float = _field(
        2.0, "With density control, the element gates' lr is at least this many times the "
        "schedule's pace in logits per step (0 = use log_alpha_lr as given).", low=0)
    init_log_alpha: float = _field(
        5.0, "Initial log-alpha of every gate (P(z>0) ~ 0.993).", low=-100, high=100)
    stretch_left: float = _field(
        -1.5, "Left end l of the hard-concrete stretch interval.", low=-100, high=100)
    stretch_right: float = _field(
        1.5, "Right end r of the hard-concrete stretch interval.", low=-100, high=100)
    temperature: float = _field(
        1.0, "Hard-concrete temperature beta (the paper uses 1).", low=0, open_low=True)
    noise_eps: float = _field(
        1e-4, "Uniform noise u is clipped to [eps, 1 - eps].",
        low=0, high=0.5, open_low=True, open_high=True)
    fused: bool = _field(
        True, "Run stage 1's elementwise math (gates, AdamW) as one loop per tensor: C++ kernels "
        "on the CPU, torch.compile elsewhere, eager where neither builds (same results)."
    )
    gather_embedding_gates: bool = _field(
        True, "Embedding tables draw stage-1 gates only for the rows a batch looks up: the same "
        "loss and gradients as the whole table (the noise is a function of each entry's "
        "position), without the gate work on the vocabulary's other rows."
    )
    density: float = _field(
        0.005, "Fraction of gated parameters kept by the projection.", low=0, high=1, open_low=True)
    target_patterns: list[str] = _field(
        [], "Regexes (re.search on parameter names) choosing the gated tensors; empty = all."
    )
    exclude_patterns: list[str] = _field([], "Regexes of parameter names never gated nor trained.")
    head_patterns: list[str] = _field(
        [],
        "Regexes naming the task head (trained densely, stored in full). Empty = found from the "
        "model: for Transformers models, everything outside the base model.",
    )
    diff_lr: float = _field(
        3e-4, "L0 stage: learning rate of the diff vector w (linear decay; the paper: 1e-5).",
        low=0, open_low=True)
    diff_lr_density_power: float = _field(
        0.5, "With density control, stage 1's w learning rate is multiplied by (target / start "
        "density)^-power, at most diff_lr_max_scale times: as the gates close, the entries left "
        "open take larger steps, so that the update's size keeps up (0 = the paper's "
        "decay alone).", low=0, high=4)
    diff_lr_max_scale: float = _field(
        10.0, "The most that diff_lr_density_power multiplies stage 1's w learning rate by.",
        low=1)
    log_alpha_lr: float = _field(
        0.1, "L0 stage: learning rate of every log-alpha (constant; raised to keep pace under "
        "density control, see gate_speed_headroom).", low=0, open_low=True)
    group_log_alpha_lr: float | None = _field(
        None, "Learning rate of the structured variant's group log-alphas (constant); None = "
        "log_alpha_lr, as in the paper. A diagnostic knob: BENCHMARKS.md measures it.",
        low=0, open_low=True)
    head_lr: float | None = _field(
        1e-3, "L0 stage: learning rate of the dense task head; None = diff_lr (the paper).",
        low=0, open_low=True, optional=True)
    diff_max_grad_norm: float = _field(
        1.0, "L0 and fixed-mask stages: gradient-norm clip of w and the head; 0 = none.", low=0)
    log_alpha_max_grad_norm: float = _field(
        1.0, "L0 stage: gradient-norm clip of log-alpha; 0 = none.", low=0)
    moment_dtype: MomentDtype = _field(
        "bfloat16", "L0 stage: how AdamW stores its moments (of w, log-alpha and the head): "
        "'bfloat16' halves the optimizer state (the step runs in float32; v is rounded "
        "stochastically, compact_adamw.py); 'float32' is torch's AdamW, as in the paper.")
    adam_eps: float = _field(
        1e-8, "AdamW epsilon (it interacts with the tiny penalty gradient).", low=0, open_low=True)
    weight_decay: float = _field(
        0.0, "L0 and fixed-mask stages: AdamW weight decay of w and the head.", low=0)

    def __post_init__(self) -> None:
        check_bounds(self)  # every number against the range in its field's metadata
        if self.structured_penalty not in ("code", "paper"):
            raise ValueError(
                f"structured_penalty must be 'code' or 'paper', got {self.structured_penalty!r}"
            )
        if self.density_control not in ("target", "fixed"):
            raise ValueError(f"density_control must be 'target' or 'fixed', got "
                             f"{self.density_control!r}")
        if self.moment_dtype not in ("bfloat16", "float32"):
            raise ValueError(f"moment_dtype must be 'bfloat16' or 'float32', got "
                             f"{self.moment_dtype!r}")
        if not self.stretch_left < 0.0 < 1.0 < self.stretch_right:
            raise ValueError(
                "the stretch interval must satisfy l < 0 < 1 < r so that gates can be exactly 0 "
                f"or 1; got l={self.stretch_left}, r={self.stretch_right}"
            )
        if (self.target_end_multiple is not None
                and self.target_end_multiple > self.target_multiple):
            raise ValueError("target_end_multiple must not exceed target_multiple, got "
                             f"{self.target_end_multiple} and {self.target_multiple}")
        if not self.target_start < self.target_warmup:
            raise ValueError("target_start must be below target_warmup, got "
                             f"{self.target_start} and {self.target_warmup}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiffPruneConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown DiffPruneConfig fields: {', '.join(unknown)}")
        return cls(**values)
