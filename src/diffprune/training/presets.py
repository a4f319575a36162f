"""Recipes: named presets of the method's and the run's settings, as JSON files users can read.

``recipes/default.json`` writes out the built-in defaults; ``recipes/paper.json`` is the paper's
exact setting. A recipe is ``{"about": ..., "diffprune": {...}, "train": {...}}``, the shape of
``--config`` files and of a run's ``config.json``; ``--recipe`` takes a name or a path.
"""

from __future__ import annotations

import json
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
SECTIONS = ("diffprune", "train")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def recipe_path(name_or_path: str) -> Path:
    if name_or_path in recipe_names():
        return RECIPES_DIR / f"{name_or_path}.json"
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"--recipe {name_or_path!r}: neither a recipe name "
                         f"({', '.join(recipe_names())}) nor an existing file")
    return path


def load_recipe(name_or_path: str) -> dict[str, dict]:
    """The recipe's sections (``about`` dropped); a clear error for a bad file."""
    path = recipe_path(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a valid JSON recipe ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a JSON object with 'diffprune' and 'train'")
    unknown = sorted(set(data) - {"about", *SECTIONS})
    if unknown:
        raise ValueError(f"{path}: unknown sections {unknown}; use 'about', 'diffprune', 'train'")
    for section in SECTIONS:
        if not isinstance(data.get(section, {}), dict):
            raise ValueError(f"{path}: section {section!r} must be a JSON object")
    return {section: dict(data.get(section, {})) for section in SECTIONS}
