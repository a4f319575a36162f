"""A task on disk: the diff's nonzero positions and values, and the dense head (safetensors)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from diffprune import __version__
from diffprune.model import DiffPruneModel


def save_task(model: DiffPruneModel, path: str | Path, info: dict[str, Any]) -> Path:
    """Write a fixed-mask model's diff (positions, values) and head; atomic rename."""
    if model.stage != "masked":
        raise RuntimeError("save_task needs a projected model (call project() first)")
    tensors = {}
    for site in model.sites:
        tensors[f"diff.{site.name}.indices"] = model.tensor(site, "indices").to("cpu").contiguous()
        values = model.tensor(site, "values").detach()
        tensors[f"diff.{site.name}.values"] = values.cpu().contiguous()
    head = dict(model.base_model.named_parameters())
    for name in model.head_names:
        tensors[f"head.{name}"] = head[name].detach().cpu().contiguous()
    metadata = {"format": "diffprune-task", "diffprune_version": __version__,
                "config": json.dumps(model.config.to_dict()), "info": json.dumps(info)}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path
