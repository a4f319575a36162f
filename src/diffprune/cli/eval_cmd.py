"""``diffprune eval``: dev metrics of a trained task (task file, or a full-finetuning run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffprune.cli.args import bounded


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="score a task file or run folder on dev data")
    parser.add_argument("path", type=Path, help="task file, or a run folder")
    parser.add_argument("--task", default=None,
                        help="GLUE task (default: the task the file was trained on)")
    parser.add_argument("--data-dir", default=None, help="GLUE TSV folder; else the hub")
    parser.add_argument("--dev-file", default=None, help="own labelled data (.csv/.tsv/.jsonl)")
    parser.add_argument("--text-columns", nargs="+", default=["text"])
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--model", default=None, help="base model (default: the file's)")
    parser.add_argument("--max-eval-samples", type=bounded(int, 0), default=0)
    parser.add_argument("--batch-size", type=bounded(int, 1), default=64)
    parser.add_argument("--max-seq-length", type=bounded(int, 8), default=128)
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the metrics JSON (default: eval.json in the run "
                             "folder, when a folder is given)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diffprune.data.files import read_labelled
    from diffprune.data.glue import get_task, load_glue
    from diffprune.data.tokenize import sequence_limit
    from diffprune.inference import load_task_model
    from diffprune.run_folder import EVAL, RunFolder
    from diffprune.training.data import make_loader
    from diffprune.training.evaluate import evaluate

    loaded = load_task_model(args.path, args.model)
    spec = loaded.spec
    if args.dev_file:
        splits = {"dev": read_labelled(args.dev_file, args.text_columns, args.label_column, spec)}
    else:
        task = get_task(args.task or spec.name)
        if task.labels != spec.labels:
            raise ValueError(f"{loaded.source} predicts {spec.labels}, but {task.name} has "
                             f"labels {task.labels}")
        splits = load_glue(task, args.data_dir).dev
    splits = {name: split.head(args.max_eval_samples) for name, split in splits.items()}
    length = sequence_limit(loaded.model, loaded.tokenizer, args.max_seq_length)
    loaders = {name: make_loader(loaded.tokenizer, split,
                                 args.batch_size, length, shuffle=False)
               for name, split in splits.items()}
    scores = evaluate(loaded.model, loaders, spec)
    for split, metrics in scores.items():
        shown = "  ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items())
        print(f"{spec.name} {split} ({len(splits[split]):,} examples): {shown}")
    output = args.output or (RunFolder(args.path) / EVAL if args.path.is_dir() else None)
    if output is not None:
        report = {"source": loaded.source, "task": spec.name, "metric": spec.metric,
                  "examples": {k: len(v) for k, v in splits.items()}, "scores": scores}
        Path(output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"metrics: {output}")
    return 0
