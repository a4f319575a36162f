"""What every benchmark writes: the run's identity, JSON and a Markdown table, the headline."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run_info() -> dict:
    """The exact command, the date and the machine, to commit beside the numbers."""
    import torch

    return {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }


def finish(name: str, title: str, report: dict, table: str, headline: dict, quick: bool) -> None:
    """Print the table; in full mode write results/NAME.json and .md; last line: headline JSON."""
    print(table, file=sys.stderr)
    if not quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(
            f"# {title}\n\nCommand: `{report['command']}`  \nDate: {report['date']}  \n"
            f"Machine: {report['machine']}  \nSettings: {report['settings']}\n\n{table}\n")
    print(json.dumps(headline))
