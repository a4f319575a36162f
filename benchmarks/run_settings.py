"""What a ``diffprune train`` run trains with, as settings: the reuse test of the runners.

A run is reused in place of another only when their settings agree field by field (where they
write and read aside). A planned run's settings are those ``train``'s own parser gives its
command today; a finished run's are those it recorded (its run folder's config.json), so a
default that changed since it ran cannot make two different runs look alike.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

# Where a run writes and reads and how it treats its folder, and how its gates are computed
# (fused or eager kernels, embedding rows or whole tables: the same gates), not what it trains.
IGNORED = {"train": ("output", "data_dir", "overwrite", "resume"),
           "diffprune": ("fused", "gather_embedding_gates")}


def _comparable(saved: dict) -> dict:
    return {section: {k: v for k, v in values.items() if k not in IGNORED.get(section, ())}
            for section, values in saved.items()}


def planned_settings(command: list[str]) -> dict:
    """The settings a ``python -m diffprune.cli.main train ...`` command would train with."""
    from diffprune.cli.main import build_parser
    from diffprune.cli.train import settings_from_args

    args = build_parser().parse_args(command[command.index("train"):])
    config, settings = settings_from_args(args)
    if settings.method in ("diff", "diff-structured"):  # as train_task records it
        config = replace(config, structured=settings.method == "diff-structured")
    return _comparable({"diffprune": config.to_dict(), "train": asdict(settings)})


def recorded_settings(folder: Path) -> dict | None:
    """The settings a finished run folder recorded, or None (not a train run)."""
    from diffprune.run_folder import RunFolder

    path = RunFolder(folder).config()
    return _comparable(json.loads(path.read_text())) if path.is_file() else None


def changes(new: dict, old: dict) -> dict[str, tuple]:
    """'section.field' -> (new value, old value) where the two settings differ."""
    out = {}
    for section in sorted(set(new) | set(old)):
        a, b = new.get(section, {}), old.get(section, {})
        out.update({f"{section}.{k}": (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k)})
    return out
