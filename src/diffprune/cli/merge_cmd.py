"""``diffprune merge FILE --output DIR``: a standalone Transformers model directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("merge", help="write base + diff as a plain model directory")
    parser.add_argument("file", type=Path, help="task file (diff.safetensors) or its run folder")
    parser.add_argument("--output", type=Path, required=True, help="output directory")
    parser.add_argument("--model", default=None,
                        help="base model path or name (default: the one recorded in the file)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diffprune.bank import TaskBank
    from diffprune.task_file import load_task

    if args.output.is_file() or (args.output.is_dir() and any(args.output.iterdir())):
        raise FileExistsError(f"--output {args.output} exists and is not an empty folder: "
                              "pick another (nothing was written)")
    task = load_task(args.file)
    base = args.model or task.base.get("name_or_path")
    bank = TaskBank.from_pretrained(base)
    bank.add("task", task)
    out = bank.merge("task", args.output)
    print(f"merged model: {out}")
    return 0
