"""Training: the two-stage recipe (L0 training, projection, fixed-mask finetuning).

``DiffPruneTrainer`` and ``DiffPruneTrainingArguments`` (the Transformers Trainer for both
stages) load Transformers' Trainer on first use, so the CLI's recipe does not pay for it.
"""

from __future__ import annotations

from typing import Any

_TRAINER = {"DiffPruneTrainer", "DiffPruneTrainingArguments"}


def __getattr__(name: str) -> Any:
    if name in _TRAINER:
        from diffprune.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'diffprune.training' has no attribute {name!r}")


__all__ = sorted(_TRAINER)
