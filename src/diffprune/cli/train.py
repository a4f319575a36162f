"""``diffprune train``: the whole recipe on one GLUE task."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffprune.cli.args import add_dataclass_flags, build_dataclass
from diffprune.config import DiffPruneConfig
from diffprune.training.settings import TrainSettings


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="L0 training, projection and fixed-mask finetuning on one task")
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file with 'diffprune' and/or 'train' sections; flags override")
    add_dataclass_flags(parser, TrainSettings, "run")
    add_dataclass_flags(parser, DiffPruneConfig, "method")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diffprune.training.loop import train_task

    file = json.loads(args.config.read_text()) if args.config else {}
    settings = build_dataclass(TrainSettings, args, file.get("train"))
    config = build_dataclass(DiffPruneConfig, args, file.get("diffprune"))
    metrics = train_task(config, settings)
    score = metrics["dev"][metrics["metric"]]
    print(f"task file: {Path(settings.output) / 'diff.safetensors'} "
          f"({metrics['file_bytes']:,} bytes; dev from the file: "
          f"{100 * metrics['dev_from_file'][metrics['metric']]:.2f})")
    print(f"dev {metrics['metric']}: {100 * score:.2f} at {metrics['nonzeros']:,} nonzeros "
          f"({100 * metrics['density_after_projection']:.3f}% of gated parameters; "
          f"L0 stage ended at {100 * metrics['density_before_projection']:.2f}%)")
    return 0
