"""The README's first command, timed as a new user runs it; its record fills the README block.

    python benchmarks/readme_first_command.py          # train (about 20 minutes on 2 CPUs)
    python benchmarks/readme_first_command.py --render  # only rewrite the README block

Runs ``diffprune train --task rte --data-dir ../shared/data/glue`` from the repository root
(refusing if ``runs/rte`` already exists, so that nothing is replaced), records its wall time,
what it printed and its metrics in ``results/readme_first_command.json``, and rewrites the
README's block between the first-command markers from that record.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _report import RESULTS, run_info

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "diffprune train --task rte --data-dir ../shared/data/glue"
RECORD = RESULTS / "readme_first_command.json"
START, END = "<!-- first-command:start -->", "<!-- first-command:end -->"
KEPT_METRICS = ("density_before_projection", "dev_after_l0", "dev_after_projection", "dev",
                "train_seconds", "peak_memory_mb", "l0_steps", "mask_steps", "best_step",
                "retry", "warnings")


def measure() -> dict:
    out = ROOT / "runs" / "rte"
    if out.exists():
        sys.exit(f"{out} exists: move it away first (this script never replaces a run)")
    argv = [sys.executable, "-m", "diffprune.cli.main", *shlex.split(COMMAND)[1:]]
    began = time.time()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - began
    if done.returncode != 0:
        sys.exit(f"the command failed ({done.returncode}):\n{done.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    info = run_info()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src"],
                             cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"command": COMMAND, "date": time.strftime("%Y-%m-%d"),
            "machine": info["machine"], "commit": commit, "source_as_committed": not changed,
            "wall_seconds": round(wall), "printed": summary_lines(done.stdout),
            "metrics": {k: metrics[k] for k in KEPT_METRICS if k in metrics}}


def summary_lines(stdout: str) -> list[str]:
    """What a user reads at the end: the run's warnings and retries, then its last three
    lines."""
    lines = stdout.strip().splitlines()
    return [line for line in lines[:-3]
            if line.startswith("warning:") or "training the stage again" in line] + lines[-3:]


def block(record: dict) -> str:
    printed = "\n".join(record["printed"])
    return (f"The first command took {record['wall_seconds'] / 60:.1f} minutes on this "
            f"project's 2-core CPU ({record['date']}, "
            f"[record](benchmarks/results/{RECORD.name})) and ends with:\n\n"
            f"```\n{printed}\n```")


def write_readme(record: dict) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{block(record)}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="only rewrite the README block")
    args = parser.parse_args()
    if not args.render:
        RECORD.write_text(json.dumps(measure(), indent=2) + "\n")
    write_readme(json.loads(RECORD.read_text()))


if __name__ == "__main__":
    main()
