"""Record the density sweeps' non-adaptive runs whose full finetuning kept its last state as the
``nonadaptive-last`` runs of ``nonadaptive_last_check`` (and its random-batch twin), so that
only the runs where dev picked an earlier state train again.

Such a run trains exactly as ``--nonadaptive-from last`` would: the stage still evaluates dev
at each epoch end (so the random draws that follow are the same), and the state it ends on is
the one the diff is taken from either way. Each record says where it came from in
``adopted_from``; ``--except`` leaves some out, to train them and check that claim.

    python benchmarks/nonadaptive_last_adopt.py grouped --except mrpc-d0.001-seed0
    python benchmarks/nonadaptive_last_adopt.py random
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffprune.config import DiffPruneConfig

RESULTS = Path(__file__).resolve().parent / "results"
# experiment -> (its results folder, the sweep's folder, the sweep's matrix folder)
SOURCES = {
    "grouped": ("glue-grouped-nonadaptive-last-check", "glue-grouped-density", "glue-grouped"),
    "random": ("glue-nonadaptive-last-check", "glue-density", "glue"),
}


def run_name(task: str, density: float, seed: int | str) -> str:
    return f"{task}-d{density:g}-seed{seed}.json"


def parse_name(name: str) -> tuple[str, float, str]:
    """(task, density, seed) of a density experiment's run name."""
    task, rest = name.removesuffix(".json").split("-d", 1)
    density, seed = rest.split("-seed", 1)
    return task, float(density), seed


def sweep_runs(sweep: Path, matrix: Path) -> dict[str, Path]:
    """The sweep's non-adaptive runs by their name in a density experiment, with the matrix's
    runs at the tasks and seeds the sweep has as its Table 1 budget."""
    runs = {p.name: p for p in sorted((sweep / "nonadaptive").glob("*-d*-seed*.json"))}
    swept = {(task, seed) for task, _, seed in map(parse_name, runs)}
    for path in sorted((matrix / "nonadaptive").glob("*-seed*.json")):
        task, seed = path.stem.rsplit("-seed", 1)
        if (task, seed) in swept:
            runs.setdefault(run_name(task, DiffPruneConfig().density, seed), path)
    return runs


def adopt(kind: str, leave_out: set[str]) -> list[str]:
    out_name, sweep, matrix = SOURCES[kind]
    out = RESULTS / out_name / "nonadaptive-last"
    adopted = []
    for name, path in sweep_runs(RESULTS / sweep, RESULTS / matrix).items():
        run = json.loads(path.read_text())
        if run["full_best_step"] != run["full_steps"] or name.removesuffix(".json") in leave_out:
            continue
        target = out / name
        if target.exists():
            continue
        run.update(method="nonadaptive-last", density=parse_name(name)[1],
                   full_kept_step=run["full_steps"],
                   adopted_from=str(path.relative_to(RESULTS.parent.parent)))
        out.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(run, indent=2) + "\n")
        adopted.append(name)
    return adopted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(SOURCES))
    parser.add_argument("--except", dest="leave_out", nargs="*", default=[],
                        help="run names (task-dDENSITY-seedN) to leave for the harness to train")
    args = parser.parse_args()
    adopted = adopt(args.kind, set(args.leave_out))
    print(f"adopted {len(adopted)} runs: {' '.join(adopted)}")


if __name__ == "__main__":
    main()
