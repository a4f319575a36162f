"""Which tensors get a diff, which form the task head, and where each tensor lives.

A tensor may be reachable under several names (tied weights, such as GPT-2's ``lm_head.weight``
and ``transformer.wte.weight``); it gets one diff, written back to every place it is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from diffprune.config import DiffPruneConfig


@dataclass
class TensorSite:
    """One underlying parameter tensor and every (module, attribute) that refers to it."""

    name: str  # the first name under which named_parameters() reports it
    param: nn.Parameter
    owners: list[tuple[nn.Module, str]] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)


def tensor_sites(model: nn.Module) -> list[TensorSite]:
    """All parameter tensors of ``model`` in registration order, tied names grouped."""
    by_id: dict[int, TensorSite] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for attr, param in module._parameters.items():
            if param is None:
                continue
            full = f"{module_name}.{attr}" if module_name else attr
            site = by_id.get(id(param))
            if site is None:
                site = by_id[id(param)] = TensorSite(full, param)
            if (module, attr) not in [(m, a) for m, a in site.owners]:
                site.owners.append((module, attr))
            if full not in site.aliases:
                site.aliases.append(full)
    return list(by_id.values())


def find_head_names(model: nn.Module, missing_keys: list[str] | None = None) -> list[str]:
    """Names of the task-head parameters, found from the model itself.

    Rules, first that applies:
      1. ``missing_keys`` (from ``from_pretrained(..., output_loading_info=True)``): the newly
         initialised parameters are the head.
      2. A Transformers model with a task head (``base_model_prefix`` names a submodule): every
         parameter outside that submodule (``classifier``, ``score``, ``qa_outputs``, ...).
      3. Anything else (a bare backbone, a plain ``nn.Module``): no head.
    A head parameter tied to a backbone tensor (an LM head tied to the embeddings) stays gated.
    """
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    if missing_keys:
        missing = set(missing_keys)
        return [n for n in names if n in missing]
    prefix = getattr(model, "base_model_prefix", None)
    if prefix and isinstance(getattr(model, prefix, None), nn.Module):
        return [n for n in names if not n.startswith(prefix + ".")]
    return []


def _matches(name: str, patterns: list[str]) -> bool:
    return any(re.search(p, name) for p in patterns)


def split_sites(model: nn.Module, config: DiffPruneConfig,
                missing_keys: list[str] | None = None) -> tuple[list[TensorSite], list[TensorSite]]:
    """(gated, head): the tensors that get a gated diff, and the dense task head.

    Everything else is frozen. A tensor tied across the head and the backbone counts as backbone,
    so it is gated once rather than trained twice.
    """
    for p in (*config.target_patterns, *config.exclude_patterns, *config.head_patterns):
        re.compile(p)  # fail early, naming the bad pattern in re.error
    head_names = (
        [n for n, _ in model.named_parameters(remove_duplicate=False)
         if _matches(n, config.head_patterns)]
        if config.head_patterns else find_head_names(model, missing_keys)
    )
    head_set = set(head_names)
    gated: list[TensorSite] = []
    head: list[TensorSite] = []
    for site in tensor_sites(model):
        if any(_matches(a, config.exclude_patterns) for a in site.aliases):
            continue
        if all(a in head_set for a in site.aliases):
            head.append(site)
        elif not config.target_patterns or any(_matches(a, config.target_patterns)
                                               for a in site.aliases):
            if not torch.is_floating_point(site.param):
                continue
            gated.append(site)
    if not gated:
        raise ValueError("no parameter matched for gating: "
                         "check target_patterns / exclude_patterns")
    return gated, head
