"""``diffprune eval``: dev metrics of a trained task (task file, or a full-finetuning run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffprune.cli.args import add_dataclass_flags, build_dataclass
from diffprune.cli.settings import EvalSettings


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="score a task file or run folder on dev data")
    parser.add_argument("path", type=Path, help="task file, or a run folder")
    add_dataclass_flags(parser, EvalSettings, "evaluation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diffprune.data.files import read_labelled
    from diffprune.data.glue import get_task, load_glue
    from diffprune.data.tokenize import sequence_limit
    from diffprune.inference import load_task_model
    from diffprune.run_folder import EVAL, RunFolder
    from diffprune.training.data import make_loader
    from diffprune.training.evaluate import evaluate

    settings = build_dataclass(EvalSettings, args)
    loaded = load_task_model(args.path, settings.model)
    spec = loaded.spec
    if settings.dev_file:
        splits = {"dev": read_labelled(settings.dev_file, settings.text_columns,
                                       settings.label_column, spec)}
    else:
        task = get_task(settings.task or spec.name)
        if task.labels != spec.labels:
            raise ValueError(f"{loaded.source} predicts {spec.labels}, but {task.name} has "
                             f"labels {task.labels}")
        splits = load_glue(task, settings.data_dir).dev
    splits = {name: split.head(settings.max_eval_samples) for name, split in splits.items()}
    length = sequence_limit(loaded.model, loaded.tokenizer, settings.max_seq_length)
    loaders = {name: make_loader(loaded.tokenizer, split,
                                 settings.batch_size, length, shuffle=False)
               for name, split in splits.items()}
    scores = evaluate(loaded.model, loaders, spec)
    for split, metrics in scores.items():
        shown = "  ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items())
        print(f"{spec.name} {split} ({len(splits[split]):,} examples): {shown}")
    output = settings.output or (RunFolder(args.path) / EVAL if args.path.is_dir() else None)
    if output is not None:
        report = {"source": loaded.source, "task": spec.name, "metric": spec.metric,
                  "examples": {k: len(v) for k, v in splits.items()}, "scores": scores}
        Path(output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"metrics: {output}")
    return 0
