"""diffprune: parameter-efficient transfer learning by diff pruning (Guo, Rush, Kim, ACL 2021)."""

from __future__ import annotations

from diffprune.config import DiffPruneConfig
from diffprune.gates import HardConcrete
from diffprune.model import DiffPruneModel, get_diffprune_model
from diffprune.nonadaptive import nonadaptive_from_finetuned
from diffprune.optim import build_optimizer
from diffprune.targets import find_head_names

__version__ = "0.1.0"

__all__ = [
    "DiffPruneConfig",
    "DiffPruneModel",
    "HardConcrete",
    "build_optimizer",
    "find_head_names",
    "get_diffprune_model",
    "nonadaptive_from_finetuned",
    "__version__",
]
