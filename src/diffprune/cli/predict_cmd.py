"""``diffprune predict``: label sentences (or pairs) from a file or stdin; JSON lines out.

Input, one example per line: plain text, with a tab between the two texts of a pair; or JSON
objects with "text" (and "text_pair"). Output: one JSON object per input line, in order.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import torch

from diffprune.cli.args import add_dataclass_flags, build_dataclass
from diffprune.cli.settings import PredictSettings


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="label sentences or pairs; JSON lines out")
    parser.add_argument("path", type=Path, help="task file, or a run folder")
    add_dataclass_flags(parser, PredictSettings, "prediction")
    parser.set_defaults(func=run)


def parse_line(line: str, where: str) -> tuple[str, ...]:
    """The texts of one input line: a JSON object, or plain text with an optional tab."""
    if line.lstrip().startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(record.get("text"), str):
            raise ValueError(f"{where}: a JSON input needs a string field 'text'")
        pair = record.get("text_pair")
        return (record["text"],) if pair is None else (record["text"], str(pair))
    parts = line.rstrip("\n").split("\t")
    if len(parts) > 2:
        raise ValueError(f"{where}: {len(parts)} tab-separated fields; give one text or a pair")
    return tuple(parts)


def read_inputs(stream, name: str) -> list[tuple[str, ...]]:
    examples = [parse_line(line, f"{name}:{i}")
                for i, line in enumerate(stream, start=1) if line.strip()]
    if len({len(e) for e in examples}) > 1:
        raise ValueError(f"{name}: mixes single texts and pairs; use one kind per run")
    return examples


def run(args: argparse.Namespace) -> int:
    from diffprune.data.files import decode_utf8
    from diffprune.data.tokenize import encode, pad, sequence_limit
    from diffprune.inference import describe_outputs, load_task_model

    settings = build_dataclass(PredictSettings, args)
    source = None if settings.input == "-" else Path(settings.input)
    if source is not None and not source.is_file():
        raise FileNotFoundError(f"--input {source}: " + (
            "a folder, not a file" if source.is_dir() else "no such file"))
    name = "<stdin>" if source is None else settings.input
    if source is None:
        # The task before stdin: a bad task file is refused before the input is waited on.
        loaded = load_task_model(args.path, settings.model)
        raw = getattr(sys.stdin, "buffer", None)  # bytes where there are (a real stdin)
        text = decode_utf8(raw.read(), name) if raw is not None else sys.stdin.read()
    else:  # a file's bad lines are refused before the slower model load
        text = decode_utf8(source.read_bytes(), name)
    examples = read_inputs(io.StringIO(text, newline=None), name)
    if source is not None:
        loaded = load_task_model(args.path, settings.model)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    length = sequence_limit(model, tokenizer, settings.max_seq_length)
    with torch.no_grad():
        for start in range(0, len(examples), settings.batch_size):
            chunk = examples[start:start + settings.batch_size]
            batch = pad(tokenizer, encode(tokenizer, chunk, length))
            logits = model(**batch).logits.float()
            outputs = logits.squeeze(-1) if loaded.spec.labels is None else logits
            for answer in describe_outputs(outputs, loaded.spec):
                print(json.dumps(answer))
    return 0
