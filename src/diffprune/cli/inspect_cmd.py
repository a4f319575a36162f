"""``diffprune inspect FILE...``: metadata and where each diff lands (table, JSON or plot)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("inspect", help="show a task file's metadata and nonzeros")
    parser.add_argument("files", nargs="+", type=Path, help="task files (diff.safetensors)")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--plot", type=Path, default=None,
                        help="draw nonzeros by layer and tensor kind, one panel per file (PNG)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diffprune.layout import per_layer, per_tensor
    from diffprune.task_file import load_task, read_metadata, task_path

    reports = []
    for file in map(task_path, args.files):
        task = load_task(file)
        meta = read_metadata(file)
        reports.append({
            "file": str(file), "file_bytes": meta["file_bytes"],
            "bytes_per_nonzero": meta["file_bytes"] / max(1, task.nonzeros),
            "format_version": meta["format_version"], "encoding": meta["encoding"],
            "diffprune_version": meta["diffprune_version"], "task": task.task,
            "metrics": task.metrics, "base": task.base, "nonzeros": task.nonzeros,
            "gated_params": task.gated_params, "density": task.density, "config": task.config,
            "head": {n: list(t.shape) for n, t in task.head.items()},
            "layers": per_layer(task), "tensors": per_tensor(task), "_task": task,
        })
    if args.plot:
        from diffprune.plots import plot_layout

        plot_layout([(r["task"].get("name") or r["file"], r["_task"]) for r in reports], args.plot)
    for r in reports:
        r.pop("_task")
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
        return 0
    for r in reports:
        _print_report(r)
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _print_report(r: dict) -> None:
    task = r["task"]
    print(f"{r['file']}  ({r['file_bytes']:,} bytes, {r['bytes_per_nonzero']:.2f} bytes/nonzero, "
          f"{r['encoding']}, format v{r['format_version']})")
    print(f"  task: {task.get('name')}  labels: {task.get('labels')}  "
          f"problem: {task.get('problem_type')}")
    print(f"  nonzeros: {r['nonzeros']:,} of {r['gated_params']:,} gated "
          f"({100 * r['density']:.3f}%)  dev: {r['metrics']}")
    print(f"  base: {r['base'].get('name_or_path')}  {r['base'].get('fingerprint')}")
    print(f"  {'layer':<14}{'nonzeros':>10}{'density':>10}{'all-zero tensors':>18}")
    for row in r["layers"]:
        print(f"  {row['layer']:<14}{row['nonzeros']:>10,}{100 * row['density']:>9.3f}%"
              f"{row['all_zero_tensors']:>18}")
    print(f"  {'tensor':<56}{'nonzeros':>10}{'density':>10}")
    for row in r["tensors"]:
        print(f"  {row['tensor']:<56}{row['nonzeros']:>10,}{100 * row['density']:>9.3f}%")
