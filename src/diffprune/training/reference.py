"""Dev scores of full finetuning measured on the bundled base, to print beside a run's score."""

from __future__ import annotations

import json
from pathlib import Path

REFERENCE_FILE = Path(__file__).with_name("reference_scores.json")


def reference_score(model: str | None, task: str) -> dict | None:
    """{'score', 'note'} for the bundled base (``model`` None) on a task, when measured."""
    if model is not None or not REFERENCE_FILE.is_file():
        return None
    return json.loads(REFERENCE_FILE.read_text()).get("tasks", {}).get(task)
