"""diffprune: parameter-efficient transfer learning by diff pruning (Guo, Rush, Kim, ACL 2021).

The PEFT-shaped entry points: ``DiffPruneConfig`` and ``get_diffprune_model`` wrap a model;
``save_pretrained`` / ``DiffPruneModel.from_pretrained`` and ``save_task`` / ``load_task`` handle
task files; ``TaskBank`` serves many tasks on one base. The Transformers Trainer for both stages,
``DiffPruneTrainer`` with ``DiffPruneTrainingArguments``, lives a layer up, in
``diffprune.training``: this package imports only the layers below training.
"""

from __future__ import annotations

from diffprune._version import __version__
from diffprune.bank import TaskBank
from diffprune.config import DiffPruneConfig
from diffprune.gates import HardConcrete
from diffprune.loading import default_model_path
from diffprune.model import DiffPruneModel, get_diffprune_model
from diffprune.nonadaptive import nonadaptive_from_finetuned
from diffprune.optim import build_optimizer
from diffprune.targets import find_head_names
from diffprune.task_file import load_task, save_task

__all__ = [
    "DiffPruneConfig",
    "DiffPruneModel",
    "HardConcrete",
    "TaskBank",
    "build_optimizer",
    "default_model_path",
    "find_head_names",
    "get_diffprune_model",
    "load_task",
    "nonadaptive_from_finetuned",
    "save_task",
    "__version__",
]
