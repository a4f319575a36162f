"""Where a diff lands: nonzeros per tensor, per layer and per tensor kind."""

from __future__ import annotations

import math
import re
from typing import Any

from diffprune.task_file import TaskDiff

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")


def split_name(name: str) -> tuple[str, str]:
    """('layer 3', 'attention.self.query.weight') or ('embeddings', 'word_embeddings.weight')."""
    match = _LAYER.search(name)
    if match:
        return f"layer {int(match.group(1))}", name[match.end():]
    parts = name.split(".")
    group = next((p for p in parts if p in ("embeddings", "pooler", "embed", "wte", "wpe",
                                           "ln_f", "final_layer_norm")), parts[0])
    return group, ".".join(parts[parts.index(group) + 1:]) or name


def per_tensor(task: TaskDiff) -> list[dict[str, Any]]:
    rows = []
    for name, diff in task.diffs.items():
        layer, kind = split_name(name)
        count = diff.positions.numel()
        rows.append({"tensor": name, "layer": layer, "kind": kind, "shape": list(diff.shape),
                     "nonzeros": count, "density": count / max(1, diff.numel)})
    return rows


def per_layer(task: TaskDiff) -> list[dict[str, Any]]:
    totals: dict[str, list[int]] = {}
    for row in per_tensor(task):
        acc = totals.setdefault(row["layer"], [0, 0, 0])
        acc[0] += row["nonzeros"]
        acc[1] += math.prod(row["shape"])
        acc[2] += row["nonzeros"] == 0
    return [{"layer": layer, "nonzeros": n, "params": p, "density": n / max(1, p),
             "all_zero_tensors": z} for layer, (n, p, z) in totals.items()]
