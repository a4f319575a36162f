"""Would the retry of an unlearned last stage have fired? Read from finished runs' logs.

    python benchmarks/retry_from_logs.py runs/glue-matrix/glue-grouped/diff \\
        runs/glue-matrix/glue-grouped-density --data-dir ../shared/data/glue \\
        --json benchmarks/results/retry_from_logs.json

For every run folder below the given folders (the harness's scratch, ``runs/glue-matrix``, kept
on the machine that trained them), take the last stage's mean training loss over its last epoch
from ``train.log`` and the loss of a constant answer on the run's own training examples, and
apply the rule ``diffprune train`` applies (``diffprune.training.health.unlearned``). The log
prints four decimals; a run within 1e-4 of the threshold is reported as undecided. A run the
rule does not fire on trains the same to the bit with the retry on, so its committed result
stands as it is.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from diffprune.training.data import load_task_data
from diffprune.training.health import UNLEARNED_MARGIN, constant_answer_loss, unlearned
from diffprune.training.settings import TrainSettings

LAST_EPOCH = re.compile(r"(fixed-mask|full finetuning): step (\d+)/(\d+), train loss ([0-9.]+)")


def last_stage_loss(log: str) -> tuple[str, float] | None:
    """(stage, mean loss over its last epoch) of the run's last stage, from its log."""
    ends = [m for m in LAST_EPOCH.finditer(log) if m.group(2) == m.group(3)]
    if not ends:
        return None
    return ends[-1].group(1), float(ends[-1].group(4))


def check(folder: Path, data_dir: str, constants: dict) -> dict | None:
    config, log = folder / "config.json", folder / "train.log"
    if not (config.is_file() and log.is_file()):
        return None
    train = json.loads(config.read_text())["train"]
    found = last_stage_loss(log.read_text())
    if found is None or (train["method"] != "full" and found[0] != "fixed-mask"):
        return None
    key = (train["task"], train["max_train_samples"])
    if key not in constants:
        settings = TrainSettings(task=train["task"], data_dir=data_dir,
                                 max_train_samples=train["max_train_samples"])
        data = load_task_data(settings)
        constants[key] = constant_answer_loss(data.train.labels, data.spec.labels is None)
    constant = constants[key]
    threshold = (1 - UNLEARNED_MARGIN) * constant
    loss = found[1]
    return {"run": str(folder), "method": train["method"], "task": train["task"],
            "seed": train["seed"], "last_epoch_loss": loss, "constant_answer_loss": constant,
            "fires": unlearned(loss, constant),
            "undecided": abs(loss - threshold) <= 1e-4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    constants: dict = {}
    rows = [row for top in args.folders for config in sorted(top.rglob("config.json"))
            if (row := check(config.parent, args.data_dir, constants))]
    for r in rows:
        flag = "FIRES" if r["fires"] else "-"
        print(f"{r['run']}: {r['last_epoch_loss']:.4f} vs {r['constant_answer_loss']:.4f} "
              f"{flag}{' (undecided)' if r['undecided'] else ''}")
    fired = sum(r["fires"] for r in rows)
    print(f"{len(rows)} runs read; the retry fires on {fired}")
    if args.json:
        args.json.write_text(json.dumps({"command": "python benchmarks/retry_from_logs.py "
                                         + " ".join(map(str, args.folders)),
                                         "runs": rows, "fired": fired}, indent=2) + "\n")


if __name__ == "__main__":
    main()
