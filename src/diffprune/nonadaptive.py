"""Non-adaptive diff pruning: a finetuned model's diff, magnitude-pruned (docs/method.md §7)."""

from __future__ import annotations

import torch
from torch import nn

from diffprune.config import DiffPruneConfig
from diffprune.model import DiffPruneModel


@torch.no_grad()
def nonadaptive_from_finetuned(pretrained: nn.Module, finetuned: nn.Module,
                               config: DiffPruneConfig | None = None, density: float | None = None,
                               missing_keys: list[str] | None = None) -> DiffPruneModel:
    """delta = theta_ft - theta, projected to ``density``; returns a model in the fixed-mask stage.

    ``pretrained`` is wrapped (and so changed in place); ``finetuned`` must share its architecture.
    The finetuned head is copied over, so the result is ready for fixed-mask finetuning.
    """
    model = DiffPruneModel(pretrained, config, missing_keys)
    tuned = dict(finetuned.named_parameters(remove_duplicate=False))
    diffs = []
    for site in model.sites:
        if site.name not in tuned:
            raise ValueError(f"the finetuned model has no parameter {site.name!r}")
        theta = model.tensor(site, "base")
        if tuned[site.name].shape != theta.shape:
            raise ValueError(f"{site.name}: finetuned shape {tuple(tuned[site.name].shape)} "
                             f"differs from the pretrained {tuple(theta.shape)}")
        diffs.append(tuned[site.name].to(theta.device).float() - theta.float())
    model.set_diff(diffs, density)
    for name, param in model.base_model.named_parameters():
        if name in model.head_names:
            param.copy_(tuned[name])  # copy_ crosses devices
    return model
