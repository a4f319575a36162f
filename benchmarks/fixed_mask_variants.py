"""Several fixed-mask stages from one and the same stage 1: a diagnostic of the last stage alone.

    python benchmarks/fixed_mask_variants.py stage1 --seed 0 --output runs/fm/stage1
    python benchmarks/fixed_mask_variants.py variant --start runs/fm/stage1 \\
        --output runs/fm/lr3e-3 --mask-lr 3e-3 [--warmup 0.1]

``stage1`` runs the README command's L0 stage (RTE's whole training set, the defaults) and stops
where fixed-mask finetuning would begin, keeping the run's last checkpoint. ``variant`` copies
that folder and resumes it with other fixed-mask settings (the rate, and a linear warm-up over a
fraction of the stage, which ``diffprune train`` does not offer), without the retry of an
unlearned stage, and writes the stage's per-step training losses to ``losses.json`` beside the
run's own files. The projection reseeds, so every variant starts from the same kept values.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from diffprune.config import DiffPruneConfig
from diffprune.training import recipe
from diffprune.training.settings import TrainSettings


class _StopBeforeFixedMask(Exception):
    pass


def stage_one(seed: int, output: Path, data_dir: str) -> None:
    def stop(run, model):
        raise _StopBeforeFixedMask

    recipe._fixed_mask = stop
    settings = TrainSettings(task="rte", data_dir=data_dir, output=str(output), seed=seed)
    try:
        recipe.train_task(DiffPruneConfig(), settings)
    except _StopBeforeFixedMask:
        print(f"stage 1 kept in {output}")


def variant(start: Path, output: Path, mask_lr: float, warmup: float) -> None:
    shutil.copytree(start, output)
    for config in output.rglob("config.json"):  # the staged config the resume reads
        saved = json.loads(config.read_text())
        saved["train"].update(mask_lr=mask_lr, retry_unlearned=False)
        config.write_text(json.dumps(saved, indent=2))
    build = recipe.build_optimizer

    def build_with_warmup(model, steps, warmup_steps=0, lrs=None, diff_scale=None):
        if lrs is not None:  # the fixed-mask stage passes its own rates
            warmup_steps = round(warmup * steps)
        return build(model, steps, warmup_steps, lrs=lrs, diff_scale=diff_scale)

    recipe.build_optimizer = build_with_warmup
    run_stage, losses = recipe.run_stage, {}

    def recording(ctx, stage, *args, **kwargs):
        state = run_stage(ctx, stage, *args, **kwargs)
        losses[stage.name] = state.losses
        return state

    recipe.run_stage = recording
    config, settings = recipe.settings_for_resume(output)
    metrics = recipe.train_task(config, settings)
    (output / "losses.json").write_text(json.dumps(losses) + "\n")
    print(json.dumps({"mask_lr": mask_lr, "warmup": warmup, "dev": metrics["dev"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("stage1")
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--output", type=Path, required=True)
    one.add_argument("--data-dir", default="../shared/data/glue")
    var = sub.add_parser("variant")
    var.add_argument("--start", type=Path, required=True)
    var.add_argument("--output", type=Path, required=True)
    var.add_argument("--mask-lr", type=float, required=True)
    var.add_argument("--warmup", type=float, default=0.0)
    args = parser.parse_args()
    if args.command == "stage1":
        stage_one(args.seed, args.output, args.data_dir)
    else:
        variant(args.start, args.output, args.mask_lr, args.warmup)


if __name__ == "__main__":
    main()
