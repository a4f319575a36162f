"""The whole recipe for one task, top to bottom (docs/method.md §4–§6).

diff-structured / diff:
  1. L0 training: w and log-alpha by AdamW (own learning rates and clipping), loss + λ·E[L0];
  2. projection of one final draw of the diff to exactly ``density`` of the gated parameters;
  3. fixed-mask finetuning of the kept values and the head, keeping the best dev checkpoint.
nonadaptive: full finetuning (best dev), δ = θ_ft − θ projected, then step 3.
full: full finetuning (best dev), the reference; the whole model is saved.

Runs on one process or under ``torchrun`` / ``accelerate launch`` (DDP through Accelerate); only
the main process writes. Every stage checkpoints, and ``--resume`` picks up where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from tqdm.auto import tqdm

from diffprune.bank import TaskBank
from diffprune.config import DiffPruneConfig
from diffprune.data.tokenize import sequence_limit
from diffprune.density_control import (
    DensityController,
    diff_lr_scale,
    end_target,
    gate_learning_rate,
)
from diffprune.export import task_from_model
from diffprune.loading import base_path, load_base
from diffprune.model import DiffPruneModel
from diffprune.nonadaptive import nonadaptive_from_finetuned
from diffprune.optim import adamw, build_optimizer, make_scheduler
from diffprune.plots import plot_density_trace
from diffprune.run_folder import (
    CONFIG,
    DENSITY_PLOT,
    FULL_MODEL,
    LOG,
    METRICS,
    TASK_FILE,
    TASK_INFO,
    RunFolder,
)
from diffprune.task_file import save_task
from diffprune.training.checkpoint import (
    CHECKPOINT,
    load_model_state,
    load_stage_start,
    read_progress,
    restore_training,
    save_stage_start,
)
from diffprune.training.data import load_task_data, make_loader
from diffprune.training.evaluate import evaluate
from diffprune.training.health import (
    RETRY_RATE_DIVISOR,
    constant_answer_loss,
    open_gates_warning,
    retry_notice,
    unlearned,
    unlearned_warning,
)
from diffprune.training.settings import TrainSettings
from diffprune.training.stage import Stage, StageContext, StageState, run_stage


def make_accelerator() -> Accelerator:
    # Several processes without CUDA (torchrun on CPUs) must be told to use gloo on the CPU;
    # a single process keeps Accelerate's own choice of device.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # The frozen base lives in buffers; DDP must not broadcast them (all of the model) per step.
    # (Accelerate calls that flag deprecated in favour of one it cannot pass on yet.)
    warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated")
    return Accelerator(cpu=multi_cpu, kwargs_handlers=[
        DistributedDataParallelKwargs(broadcast_buffers=False)])


def _steps(per_epoch: int, epochs: float, max_steps: int) -> int:
    steps = max(1, round(per_epoch * epochs))
    return min(steps, max_steps) if max_steps > 0 else steps


def peak_memory_mb() -> float:
    """This process's peak resident memory (or CUDA memory, if larger), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if torch.cuda.is_available():
        peak = max(peak, torch.cuda.max_memory_allocated() / 2**20)
    return round(peak, 1)


def settings_for_resume(folder: str | Path) -> tuple[DiffPruneConfig, TrainSettings]:
    """The method and run settings saved in a run folder, to continue it as it was started."""
    path = RunFolder(folder).config()
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a diffprune run folder")
    saved = json.loads(path.read_text())
    settings = TrainSettings(**{**saved["train"], "resume": str(folder), "output": str(folder)})
    return DiffPruneConfig.from_dict(saved["diffprune"]), settings


class _Run:
    """State shared by the stages of one run."""

    def __init__(self, config: DiffPruneConfig, settings: TrainSettings, acc: Accelerator):
        self.config, self.settings, self.acc = config, settings, acc
        self.out_dir = Path(settings.output)
        self.folder = RunFolder(self.out_dir)
        self.progress = read_progress(self.out_dir) if settings.resume else None
        self.data = load_task_data(settings)
        self.spec = self.data.spec
        self.tokenizer, self.base, self.missing = load_base(settings.model, self.spec)
        self.generator = torch.Generator().manual_seed(settings.seed)
        length = sequence_limit(self.base, self.tokenizer, settings.max_seq_length)
        train = make_loader(self.tokenizer, self.data.train, settings.batch_size, length,
                            shuffle=True, generator=self.generator,
                            group_by_length=settings.group_by_length)
        self.dev_loaders = {s: make_loader(self.tokenizer, split, settings.eval_batch_size,
                                           length, shuffle=False)
                            for s, split in self.data.dev.items()}
        self.metrics: dict = {} if self.progress is None else self.progress["run"]
        self.logger = _file_logger(self.folder.staging / LOG, acc.is_main_process)
        self.ctx = StageContext(acc, acc.prepare_data_loader(train), self.generator,
                                settings.seed, self.out_dir, self.score,
                                settings.checkpoint_steps, self.metrics, self.log)

    def log(self, line: str) -> None:
        if self.acc.is_main_process:
            tqdm.write(line)
            self.logger.info(line)

    def warn(self, warning: str) -> None:
        """Log a warning and keep it in metrics.json's ``warnings``."""
        self.log(warning)
        self.metrics.setdefault("warnings", []).append(warning)

    def close_log(self) -> None:
        """Let go of the log file, so that it can move into place."""
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)

    def score(self, model) -> tuple[float, dict]:
        scores = evaluate(model, self.dev_loaders, self.spec)
        return scores[self.data.selection_split][self.spec.metric], scores

    def steps(self, epochs: float) -> int:
        return _steps(len(self.ctx.loader), epochs, self.settings.max_steps)

    def resuming(self, stage: str) -> bool:
        return self.progress is not None and self.progress["stage"] == stage

    def stage(self, stage: Stage, inner: torch.nn.Module, optimizer, scheduler,
              state: StageState | None = None) -> StageState:
        """Run ``stage`` from ``state`` (a fresh one if None), or from the checkpoint when the
        run resumes inside it."""
        if self.resuming(stage.name):
            model_state, best = load_model_state(self.out_dir)
            inner.load_state_dict(model_state, strict=False)
            restore_training(self.out_dir, optimizer, scheduler, self.acc.process_index,
                             self.acc.num_processes)
            state = StageState.from_progress(self.progress, best)
            self.log(f"{stage.desc}: resumed at step {state.step}/{stage.num_steps}")
            self.progress = None
        model = self.acc.prepare_model(inner)
        return run_stage(self.ctx, stage, model, inner, optimizer, scheduler, state)

    def full_finetune(self, model: torch.nn.Module, last: bool = False,
                      restore_best: bool = True) -> StageState:
        """Plain finetuning of every parameter, keeping the best dev state (``restore_best``
        False: ending on the last state, the best still evaluated and recorded); ``last``: the
        run's last stage (``--method full``), which an unlearned end sends round again."""
        params = [p for p in model.parameters() if p.requires_grad]
        settings = self.settings

        def optimizer_for(divisor: int):
            optimizer = adamw(params, lr=settings.full_lr / divisor, eps=self.config.adam_eps,
                              weight_decay=settings.full_weight_decay)
            return optimizer, make_scheduler(optimizer, steps)

        steps = self.steps(settings.epochs)
        norm = settings.full_max_grad_norm or float("inf")
        stage = Stage("full", "full finetuning", steps, select_best=True,
                      clip=lambda: torch.nn.utils.clip_grad_norm_(params, norm),
                      restore_best=restore_best)
        if last:
            state, divisor = _last_stage(self, model, stage, optimizer_for, "--full-lr {}",
                                         settings.full_lr)
        else:
            state, divisor = self.stage(stage, model, *optimizer_for(1)), 1
        kept = state.best_step if restore_best else steps
        self.metrics.update(full_steps=steps, full_best_step=state.best_step,
                            full_kept_step=kept, dev_after_finetuning=(
                                state.best_scores if restore_best else state.last_scores))
        self.metrics["stages"] = {**self.metrics.get("stages", {}), "full": {
            "steps": steps, "lr": settings.full_lr / divisor,
            "max_grad_norm": settings.full_max_grad_norm,
            "weight_decay": settings.full_weight_decay, "best_step": state.best_step,
            "kept_step": kept}}
        return state


def _file_logger(path: Path, active: bool) -> logging.Logger:
    logger = logging.getLogger(f"diffprune.run.{path}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if active and not logger.handlers:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger


def _check_output(settings: TrainSettings) -> None:
    out_dir = Path(settings.output)
    if settings.resume is None and (out_dir / CHECKPOINT).exists():
        raise FileExistsError(f"{out_dir} holds a checkpoint of an earlier run: continue it with "
                              f"--resume {out_dir}, or pick another --output")
    found = RunFolder(out_dir).finished()
    if settings.resume is None and found and not settings.overwrite:
        raise FileExistsError(f"{out_dir} holds a finished run ({', '.join(found)}): pick another "
                              "--output, or pass --overwrite to replace it")


def train_task(config: DiffPruneConfig, settings: TrainSettings,
               accelerator: Accelerator | None = None) -> dict:
    """Train one task by ``settings.method``; writes the task file (or model) and metrics.json."""
    start = time.time()
    if settings.method in ("diff", "diff-structured"):
        config = replace(config, structured=settings.method == "diff-structured")
    _check_output(settings)
    acc = accelerator or make_accelerator()
    if acc.is_main_process and settings.resume is None:  # left by a run killed before its
        shutil.rmtree(RunFolder(settings.output).staging, ignore_errors=True)  # first checkpoint
    acc.wait_for_everyone()
    torch.manual_seed(settings.seed)
    run = _Run(config, settings, acc)
    if acc.is_main_process:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        run.folder.staged(CONFIG).write_text(json.dumps(
            {"diffprune": config.to_dict(), "train": asdict(settings)}, indent=2) + "\n")
    run.metrics.update(task=run.spec.name, method=settings.method, metric=run.spec.metric,
                       selection_split=run.data.selection_split,
                       train_examples=len(run.data.train),
                       dev_examples={s: len(d) for s, d in run.data.dev.items()},
                       processes=acc.num_processes)
    if settings.method == "full":
        final = run.full_finetune(run.base, last=True).best_scores
        if acc.is_main_process:
            folder = run.folder.staged(FULL_MODEL)
            run.base.save_pretrained(folder)
            run.tokenizer.save_pretrained(folder)
            (folder / TASK_INFO).write_text(json.dumps(run.spec.to_dict(), indent=2) + "\n")
    else:
        model = _diff_model(run)
        final = _fixed_mask(run, model)
        if acc.is_main_process:
            _export(run, model, final)
    selection = final[run.data.selection_split]
    run.metrics.update(dev=selection, dev_splits=final,
                       train_seconds=round(time.time() - start, 1),
                       peak_memory_mb=peak_memory_mb())
    if acc.is_main_process:
        run.log(f"done in {run.metrics['train_seconds']:.0f} s; metrics in "
                f"{run.folder / METRICS}")
        run.close_log()
        run.folder.staged(METRICS).write_text(json.dumps(run.metrics, indent=2) + "\n")
        run.folder.publish()  # the earlier run's results, if any, give way only now
        shutil.rmtree(run.out_dir / CHECKPOINT, ignore_errors=True)  # finished: nothing to resume
    acc.wait_for_everyone()
    return run.metrics if acc.is_main_process else {}


def _diff_model(run: _Run) -> DiffPruneModel:
    """A model in the fixed-mask stage: after L0 training and projection, or non-adaptive."""
    settings, acc = run.settings, run.acc
    if run.resuming("mask") or run.resuming(_retry_name("mask")):  # from the checkpoint
        model = DiffPruneModel(run.base, run.config, missing_keys=run.missing)
        model.diffprune_config = _stage_one_config(run.config, run.steps(settings.epochs),
                                                   model.expected_density())
        model.load_masked_state(load_model_state(run.out_dir)[0])
        return model
    if settings.method == "nonadaptive":
        run.full_finetune(run.base, restore_best=settings.nonadaptive_from == "best")
        # on the finetuned model's device: the diff and its top-k are computed there
        pretrained = load_base(settings.model, run.spec)[1].to(
            next(run.base.parameters()).device)
        model = nonadaptive_from_finetuned(pretrained, run.base, run.config,
                                           missing_keys=run.missing)
        run.metrics.update(nonzeros=model.nonzero_count(),
                           density_after_projection=model.nonzero_count() / model.num_gated)
        return model
    model = DiffPruneModel(run.base, run.config, missing_keys=run.missing).train()
    steps = run.steps(settings.epochs)
    start = model.expected_density()
    model.diffprune_config = _stage_one_config(run.config, steps, start)
    optimizer, scheduler = build_optimizer(
        model, steps, diff_scale=diff_lr_scale(model.diffprune_config, steps, start))
    if run.progress is None:
        run.metrics["l0_expected_l0_start"] = model.expected_l0()
    control = DensityController.for_stage(model.diffprune_config, steps, start)
    stage = Stage("l0", "L0 training", steps, select_best=False, clip=model.clip_grad_norms,
                  control=control)
    state = run.stage(stage, model, optimizer, scheduler)
    run.metrics.update(l0_steps=steps, l0_first_loss=state.losses[0],
                       l0_last_loss=state.losses[-1], l0_expected_l0_end=model.expected_l0(),
                       l0_log_alpha_lr=model.diffprune_config.log_alpha_lr,
                       density_before_projection=model.expected_density(),
                       dev_after_l0=run.score(model)[1])
    c = model.diffprune_config
    run.metrics["stages"] = {**run.metrics.get("stages", {}), "l0": {
        "steps": steps, "diff_lr": c.diff_lr, "head_lr": c.head_lr or c.diff_lr,
        "log_alpha_lr": c.log_alpha_lr, "group_log_alpha_lr": c.group_log_alpha_lr,
        "density_control": c.density_control, "l0_lambda": c.l0_lambda,
        "target": end_target(c) if control is not None else None,
        "diff_lr_density_power": c.diff_lr_density_power if control is not None else 0.0,
        "diff_lr_max_scale": c.diff_lr_max_scale}}
    if control is not None:
        run.metrics.update(density_target=end_target(model.diffprune_config),
                           l0_final_drift=control.drift,
                           density_trace=control.trace)
        if acc.is_main_process:
            plot_density_trace([(run.spec.name, control.trace)], run.folder.staged(DENSITY_PLOT))
    warning = open_gates_warning(run.metrics["density_before_projection"], run.config.density,
                                 steps)
    if warning:
        run.warn(warning)
    # Every process must draw the same final diff: reseed, so they project identically.
    torch.manual_seed(settings.seed + 1)
    run.metrics["nonzeros"] = model.project()
    run.metrics["density_after_projection"] = run.metrics["nonzeros"] / model.num_gated
    acc.wait_for_everyone()
    return model


def _stage_one_config(config: DiffPruneConfig, steps: int, start: float) -> DiffPruneConfig:
    """The config stage 1 runs with (and the task file records): under density control the
    element gates' rate follows from the step count (``gate_learning_rate``), while the group
    gates keep the configured rate."""
    gate_lr = gate_learning_rate(config, steps, start)
    if gate_lr == config.log_alpha_lr:
        return config
    return replace(config, log_alpha_lr=gate_lr,
                   group_log_alpha_lr=config.group_log_alpha_lr or config.log_alpha_lr)


def _fixed_mask(run: _Run, model: DiffPruneModel) -> dict:
    """Fixed-mask finetuning of the kept values and the head; returns the best dev scores."""
    if run.progress is None:
        run.metrics["dev_after_projection"] = run.score(model)[1]
    settings = run.settings
    steps = run.steps(settings.mask_epochs)
    head_lr = settings.mask_head_lr or settings.mask_lr

    def optimizer_for(divisor: int):  # its own rates, not the L0 ones
        lrs = {"diff": settings.mask_lr / divisor, "head": head_lr / divisor}
        return build_optimizer(model, steps, lrs=lrs)

    stage = Stage("mask", "fixed-mask", steps, select_best=True, clip=model.clip_grad_norms)
    state, divisor = _last_stage(run, model, stage, optimizer_for, "--mask-lr {}",
                                 settings.mask_lr)
    run.metrics.update(mask_steps=steps, best_step=state.best_step)
    run.metrics["stages"] = {**run.metrics.get("stages", {}), "mask": {
        "steps": steps, "lr": settings.mask_lr / divisor, "head_lr": head_lr / divisor,
        "max_grad_norm": model.diffprune_config.diff_max_grad_norm,
        "weight_decay": model.diffprune_config.weight_decay, "best_step": state.best_step}}
    return state.best_scores


def _retry_name(stage: str) -> str:
    return f"{stage}-retry"


def _last_stage(run: _Run, inner: torch.nn.Module, stage: Stage,
                optimizer_for: Callable[[int], tuple], rate_setting: str,
                lr: float) -> tuple[StageState, int]:
    """Run the last stage; when its last epoch ends no better than a constant answer (and
    ``retry_unlearned`` is on), run it once more from its start at its rates divided by
    ``RETRY_RATE_DIVISOR``. Returns the state kept and what the rates of the try it came from
    were divided by.

    ``optimizer_for(divisor)`` gives the stage's optimizer and schedule at its rates divided by
    ``divisor``. On RTE the fixed-mask stage's loss stays at chance through the stage at the
    default rate and leaves it at a third of it, while STS-B and SST-2 learn at the default
    and never see the retry (docs/method.md).
    Both tries' epochs are candidates for the best dev state: the retry starts with the first
    try's best as the score to beat, so a first try that had begun to learn is not lost.
    """
    retry = replace(stage, name=_retry_name(stage.name), desc=f"{stage.desc} (retry)")
    allowed = run.settings.retry_unlearned
    first = None  # the first try's state, unless the run resumes inside the retry
    if not run.resuming(retry.name):
        if allowed and not run.resuming(stage.name) and run.acc.is_main_process:
            save_stage_start(run.out_dir, inner)
        run.acc.wait_for_everyone()
        first = run.stage(stage, inner, *optimizer_for(1))
        loss, constant = _last_epoch_loss(run, first)
        if not (allowed and unlearned(loss, constant)):
            _warn_if_unlearned(run, loss, constant, stage.desc, rate_setting, lr)
            return first, 1
        run.log(retry_notice(stage.desc, loss, constant, lr))
        run.metrics["retry"] = {"stage": stage.name, "first_lr": lr,
                                "first_last_epoch_loss": loss, "constant_answer_loss": constant,
                                "first_best_scores": first.best_scores,
                                "first_best_step": first.best_step}
        inner.load_state_dict(load_stage_start(run.out_dir), strict=False)
    state = run.stage(retry, inner, *optimizer_for(RETRY_RATE_DIVISOR),
                      None if first is None else first.best_only())
    loss, constant = _last_epoch_loss(run, state)
    _warn_if_unlearned(run, loss, constant, stage.desc, rate_setting, lr / RETRY_RATE_DIVISOR)
    if state.best_stage == stage.name:  # no epoch of the retry scored higher
        run.metrics["retry"]["kept"] = "first try"
        run.log(f"{stage.desc}: the first try's best dev state (step {state.best_step}) is kept: "
                "no epoch of the retry scored higher")
        return state, 1
    run.metrics["retry"]["kept"] = "retry"
    return state, RETRY_RATE_DIVISOR


def _last_epoch_loss(run: _Run, state: StageState) -> tuple[float, float]:
    """(mean training loss over the stage's last epoch, a constant answer's loss), the loss
    averaged over every process: each sees its own shard, and all must decide alike."""
    recent = state.losses[-max(1, run.steps(1.0)):] or [math.nan]
    loss = torch.tensor([statistics.mean(recent)], device=run.acc.device)
    if run.acc.num_processes > 1:
        loss = run.acc.gather(loss)
    constant = constant_answer_loss(run.data.train.labels, run.spec.labels is None)
    return float(loss.mean()), constant


def _warn_if_unlearned(run: _Run, loss: float, constant: float, stage: str, rate_setting: str,
                       lr: float) -> None:
    """Say so when the final stage's last epoch ended no better than a constant answer."""
    warning = unlearned_warning(loss, constant, stage, rate_setting, lr)
    if warning:
        run.warn(warning)


def _export(run: _Run, model: DiffPruneModel, scores: dict) -> None:
    """Write the task file, then score it as a user gets it: from the file, on a fresh base."""
    base_info = {"name_or_path": base_path(run.settings.model)}
    # The header records the dev scores and what each stage actually ran with.
    metrics = {**scores[run.data.selection_split], "stages": run.metrics.get("stages", {})}
    path = save_task(task_from_model(model, run.spec.to_dict(), metrics, base_info),
                     run.folder.staged(TASK_FILE), run.settings.encoding)
    bank = TaskBank(load_base(run.settings.model, run.spec)[1])
    bank.add(run.spec.name, path)
    bank.activate(run.spec.name)
    run.metrics["dev_from_file"] = evaluate(bank.model, run.dev_loaders, run.spec)[
        run.data.selection_split]
    run.metrics["file_bytes"] = path.stat().st_size
    run.log(f"task file: {run.folder / TASK_FILE} ({run.metrics['file_bytes']:,} bytes)")
