"""Entry point of the ``diffprune`` command."""

from __future__ import annotations

import argparse
import sys

from diffprune._version import __version__
from diffprune.cli import eval_cmd, inspect_cmd, merge_cmd, predict_cmd, serve_cmd, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffprune", description="Diff pruning for transformers.")
    parser.add_argument("--version", action="version", version=f"diffprune {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    train.add_parser(subparsers)
    eval_cmd.add_parser(subparsers)
    predict_cmd.add_parser(subparsers)
    inspect_cmd.add_parser(subparsers)
    merge_cmd.add_parser(subparsers)
    serve_cmd.add_parser(subparsers)
    return parser


def quiet_transformers() -> None:
    """The CLI prints its own summary; Transformers' notes (the new head's weights are newly
    initialised, and the like) are expected here and would only bury it."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_transformers()
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except (ValueError, KeyError, OSError, FloatingPointError, RuntimeError) as err:
        print(f"diffprune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffprune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
