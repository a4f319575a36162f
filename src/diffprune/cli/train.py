"""``diffprune train``: the whole recipe on one task (GLUE or own data)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffprune.cli.args import add_dataclass_flags, build_dataclass
from diffprune.config import DiffPruneConfig
from diffprune.run_folder import FULL_MODEL, TASK_FILE
from diffprune.training.presets import load_recipe, recipe_path
from diffprune.training.settings import TrainSettings


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train one task: L0 training, projection, fixed-mask finetuning",
        description="Train one task. Runs unchanged under torchrun or accelerate launch (DDP).")
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file with 'diffprune' and/or 'train' sections (a run's "
                             "config.json works); flags override it")
    add_dataclass_flags(parser, TrainSettings, "run")
    add_dataclass_flags(parser, DiffPruneConfig, "method")
    parser.set_defaults(func=run)


def _read_config_file(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        file = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(file, dict) or not all(isinstance(v, dict) for v in file.values()):
        raise ValueError(f"{path}: a config file is a JSON object of sections, such as "
                         '{"diffprune": {...}, "train": {...}}')
    unknown = set(file) - {"diffprune", "train"}
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)}; use 'diffprune', 'train'")
    return file


def settings_from_args(args: argparse.Namespace) -> tuple[DiffPruneConfig, TrainSettings]:
    """Recipe, then --config file, then flags: each overrides the one before."""
    file = _read_config_file(args.config)
    name = getattr(args, "recipe", None) or file.get("train", {}).get("recipe")
    base = load_recipe(name) if name else {"diffprune": {}, "train": {}}
    for section in ("diffprune", "train"):
        base[section].update(file.get(section, {}))
    try:
        settings = build_dataclass(TrainSettings, args, base["train"])
        config = build_dataclass(DiffPruneConfig, args, base["diffprune"])
    except TypeError as err:  # an unknown key in the config file
        raise ValueError(f"{args.config or recipe_path(name)}: {err}") from err
    if "structured" in vars(args) and settings.method in ("diff", "diff-structured") and \
            args.structured != (settings.method == "diff-structured"):
        raise ValueError(f"--method {settings.method} contradicts --"
                         f"{'' if args.structured else 'no-'}structured; pass only --method")
    return config, settings


def _end_processes() -> None:
    """Under torchrun, take the process group down before the interpreter exits, as PyTorch
    asks of every script that starts one: a gloo group left to the interpreter's teardown
    aborted processes at exit now and then, after the run had finished."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()  # the stages' DDP wrappers first: they hold the group's last work
        dist.destroy_process_group()


def run(args: argparse.Namespace) -> int:
    from diffprune.training.allocator import keep_freed_memory
    from diffprune.training.recipe import settings_for_resume, train_task

    keep_freed_memory()  # before any tensor: large per-step tensors then reuse freed memory

    if getattr(args, "resume", None):
        config, settings = settings_for_resume(args.resume)
    else:
        config, settings = settings_from_args(args)
    metrics = train_task(config, settings)
    _end_processes()
    if not metrics:  # not the main process
        return 0
    out = Path(settings.output)
    metric, score = metrics["metric"], 100 * metrics["dev"][metrics["metric"]]
    if settings.method == "full":
        print(f"model: {out / FULL_MODEL}")
    else:
        print(f"task file: {out / TASK_FILE} ({metrics['file_bytes']:,} bytes, "
              f"{metrics['nonzeros']:,} nonzeros = "
              f"{100 * metrics['density_after_projection']:.3f}% of the gated parameters)")
        if "density_before_projection" in metrics:
            print(f"L0 training ended at {100 * metrics['density_before_projection']:.2f}% "
                  "expected nonzeros, before projection")
    line = f"dev {metric}: {score:.2f}"
    if "dev_from_file" in metrics:
        line += f" (from the task file: {100 * metrics['dev_from_file'][metric]:.2f})"
    print(line)
    return 0
