"""``diffprune serve``: many tasks over HTTP from one base model (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffprune.cli.args import add_dataclass_flags, bounded, build_dataclass
from diffprune.serve.limits import ServeLimits


def _task_arg(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="serve task files over HTTP (OpenAPI at /docs)")
    parser.add_argument("--task", dest="tasks", action="append", type=_task_arg, default=[],
                        metavar="NAME=PATH", help="a task file or run folder; repeat for more")
    parser.add_argument("--model", default=None, help="base model (default: the bundled MiniLM)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=bounded(int, 1, 65535), default=8000)
    add_dataclass_flags(parser, ServeLimits, "limits",
                        only=("max_batch", "max_seq_length", "batch_rows", "batch_wait_ms",
                              "batch_window_ms", "batch_await_returns", "max_body_bytes",
                              "max_upload_bytes", "max_text_chars"))
    parser.add_argument("--allow-path-loading", action="store_true",
                        help="let POST /v1/tasks name a task file on this machine, inside "
                             "--task-root only (default: uploads only)")
    parser.add_argument("--task-root", type=Path, default=None,
                        help="the folder path loading is limited to (with --allow-path-loading)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.allow_path_loading != (args.task_root is not None):
        raise ValueError("--allow-path-loading and --task-root go together: path loading is "
                         "limited to one folder")
    if args.task_root is not None and not args.task_root.is_dir():
        raise FileNotFoundError(f"--task-root {args.task_root}: no such folder")
    try:
        import uvicorn
    except ImportError:
        raise ValueError('serving needs FastAPI and uvicorn: pip install "diffprune[serve]"') \
            from None
    from diffprune.bank import TaskBank
    from diffprune.serve.app import create_app

    bank = TaskBank.from_pretrained(args.model)
    if bank.tokenizer is None:
        raise ValueError(f"{args.model}: no tokenizer found beside the model")
    for name, path in args.tasks:  # any bad file stops here, before serving
        bank.add(name, path)
        print(f"loaded {name} from {path}")
    limits = build_dataclass(ServeLimits, args, {
        "task_root": None if args.task_root is None else str(args.task_root)})
    uvicorn.run(create_app(bank, bank.tokenizer, limits), host=args.host, port=args.port,
                log_level="info")
    return 0
