"""One training stage: optimizer steps over the data, with best-dev selection and checkpoints.

A stage is resumable from any step: the data order of an epoch is a function of (seed, epoch), so
a resumed run reshuffles the same way and skips the batches it already took, and the checkpoint
restores the random state that gates and dropout draw from. Under DDP every process runs this
loop; gradients are averaged by Accelerate, every process scores the dev set the same way (so
they all keep the same best state) and only the main process writes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from diffprune.density_control import DensityController
from diffprune.model import DiffPruneModel
from diffprune.training.checkpoint import save_checkpoint, trainable_state

LOG_EVERY = 25  # steps between density lines in the log (and the fixed-λ density check)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


@dataclass
class Stage:
    """What to run: a named stage of ``num_steps`` optimizer steps."""

    name: str  # "l0", "mask" or "full"; recorded in checkpoints
    desc: str  # for the progress bar and the log
    num_steps: int
    select_best: bool  # evaluate at each epoch end and restore the best state at the end
    clip: Callable[[], object]  # gradient clipping (the method's own for diff pruning)
    control: DensityController | None = None  # stage 1's density control, if on
    # False: still evaluate and record the best epoch, but end on the last state
    restore_best: bool = True


@dataclass
class StageState:
    """Where a stage stands: enough to resume it exactly."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    best_score: float = -math.inf
    best_scores: dict | None = None
    best_step: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    control: dict | None = None  # the density controller's state, when resuming
    # The stage whose epoch gave the best state: a retry starts with its first try's best.
    best_stage: str | None = None
    last_scores: dict | None = None  # the dev scores of the latest epoch end

    def progress(self, control: DensityController | None = None) -> dict:
        return {"step": self.step, "losses": self.losses, "best_score": self.best_score,
                "best_scores": self.best_scores, "best_step": self.best_step,
                "best_stage": self.best_stage, "last_scores": self.last_scores,
                "control": None if control is None else control.state_dict()}

    @classmethod
    def from_progress(cls, p: dict, best_state: dict | None) -> StageState:
        return cls(p["step"], p["losses"], p["best_score"], p["best_scores"], p["best_step"],
                   best_state or None, p.get("control"),
                   # a checkpoint written before this was recorded: its own stage's best
                   p.get("best_stage", p["stage"] if p["best_scores"] else None),
                   p.get("last_scores"))

    def best_only(self) -> StageState:
        """A fresh state that keeps this one's best as the candidate to beat."""
        return StageState(best_score=self.best_score, best_scores=self.best_scores,
                          best_step=self.best_step, best_state=self.best_state,
                          best_stage=self.best_stage)


@dataclass
class StageContext:
    """What every stage of a run shares."""

    accelerator: Accelerator
    loader: torch.utils.data.DataLoader  # prepared by the accelerator
    generator: torch.Generator  # the loader's shuffle generator, reseeded each epoch
    seed: int
    out_dir: Path
    evaluate: Callable[[torch.nn.Module], tuple[float, dict]]  # -> (selection score, scores)
    checkpoint_steps: int = 0
    run_progress: dict = field(default_factory=dict)  # the run's metrics so far, checkpointed
    log: Callable[[str], None] = print


def _batches(ctx: StageContext, epoch: int, skip: int):
    ctx.generator.manual_seed(ctx.seed * 100_003 + epoch)
    loader = ctx.loader if skip == 0 else ctx.accelerator.skip_first_batches(ctx.loader, skip)
    return iter(loader)


def _all_finite(ctx: StageContext, loss: torch.Tensor) -> bool:
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if ctx.accelerator.num_processes > 1:  # one process's NaN stops every process
        finite = ctx.accelerator.gather(finite)
    return bool(finite.min() > 0)


def run_stage(ctx: StageContext, stage: Stage, model: torch.nn.Module, inner: torch.nn.Module,
              optimizer, scheduler, state: StageState | None = None) -> StageState:
    """Run (or resume) a stage; ``model`` is the prepared (DDP) module, ``inner`` the bare one."""
    acc = ctx.accelerator
    state = state or StageState()
    per_epoch = len(ctx.loader)
    gated = isinstance(inner, DiffPruneModel) and inner.stage == "gated"
    bar = tqdm(total=stage.num_steps, initial=state.step, desc=stage.desc, dynamic_ncols=True,
               disable=not acc.is_local_main_process)
    density = inner.expected_density() if gated else None
    control = stage.control if gated else None
    if control is not None and state.control is not None:
        control.load_state_dict(state.control)
    started, start_step = time.time(), state.step
    model.train()
    while state.step < stage.num_steps:
        epoch, skip = divmod(state.step, per_epoch)
        for batch in _batches(ctx, epoch, skip):
            out = model(**batch)
            loss = out.loss + inner.penalty() if gated else out.loss
            if not _all_finite(ctx, loss):
                raise TrainingDiverged(
                    f"{stage.desc}: loss became {float(loss.detach())} at step "
                    f"{state.step + 1}; stopped. {_kept(ctx)} Lower the learning rates or "
                    "check the data.")
            acc.backward(loss)
            stage.clip()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.losses.append(float(out.loss.detach()))
            state.step += 1
            if control is not None:
                density = inner.last_density()
                inner.drift_gates(control.update(density))
                if state.step % LOG_EVERY == 0 and control.trace[-1]["step"] == state.step:
                    t = control.trace[-1]
                    ctx.log(f"{stage.desc}: step {state.step}, expected density "
                            f"{t['density']:.4%}, target {t['target']:.4%}, "
                            f"drift {t['drift']:.4f}")
            elif gated and state.step % LOG_EVERY == 0:  # a pass over every gate: not each step
                density = inner.expected_density()
            rate = (state.step - start_step) / max(time.time() - started, 1e-9)
            postfix = {"loss": f"{state.losses[-1]:.4f}", "it/s": f"{rate:.2f}"}
            if density is not None:
                postfix["density"] = f"{density:.4f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update()
            epoch_end = state.step % per_epoch == 0 or state.step == stage.num_steps
            if epoch_end:
                _end_of_epoch(ctx, stage, inner, state)
            if epoch_end or (ctx.checkpoint_steps and state.step % ctx.checkpoint_steps == 0):
                _checkpoint(ctx, stage, inner, optimizer, scheduler, state)
            if epoch_end or state.step >= stage.num_steps:
                break
    bar.close()
    if stage.select_best and stage.restore_best and state.best_state is not None:
        inner.load_state_dict(state.best_state, strict=False)
    return state


def _end_of_epoch(ctx: StageContext, stage: Stage, inner, state: StageState) -> None:
    recent = state.losses[-min(len(state.losses), len(ctx.loader)):]
    line = f"{stage.desc}: step {state.step}/{stage.num_steps}, " \
           f"train loss {sum(recent) / len(recent):.4f}"
    if stage.select_best:
        score, scores = ctx.evaluate(inner)
        line += f", dev {_fmt(scores)}"
        state.last_scores = scores
        if score > state.best_score:
            state.best_score, state.best_scores, state.best_step = score, scores, state.step
            state.best_stage = stage.name
            state.best_state = {k: v.clone() for k, v in trainable_state(inner).items()}
            line += " (best so far)"
    ctx.log(line)


def _checkpoint(ctx: StageContext, stage: Stage, inner, optimizer, scheduler,
                state: StageState) -> None:
    acc = ctx.accelerator
    progress = {"stage": stage.name, **state.progress(stage.control),
                "run": ctx.run_progress}
    save_checkpoint(ctx.out_dir, inner, optimizer, scheduler, progress, state.best_state,
                    rank=acc.process_index, is_main=acc.is_main_process,
                    barrier=acc.wait_for_everyone)


def _kept(ctx: StageContext) -> str:
    folder = ctx.out_dir / "checkpoint"
    if (folder / "progress.json").is_file():
        step = json.loads((folder / "progress.json").read_text())["step"]
        return f"The last good checkpoint (step {step}) is kept in {folder}."
    return "No checkpoint had been written yet."


def _fmt(scores: dict) -> str:
    parts = []
    for split, metrics in scores.items():
        inner = " ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items())
        parts.append(f"{split}: {inner}" if len(scores) > 1 else inner)
    return "; ".join(parts)
