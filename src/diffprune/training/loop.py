"""The whole recipe for one task, top to bottom (SPEC §4–§5):

1. L0 training: w and log-alpha by AdamW (own learning rates and clipping), loss + lambda E[L0];
2. projection of one final draw of the diff to exactly ``density`` of the gated parameters;
3. fixed-mask finetuning of the kept values and the head, keeping the best dev checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from diffprune.bank import TaskBank
from diffprune.config import DiffPruneConfig
from diffprune.data.glue import GlueTask, get_task, read_split
from diffprune.data.metrics import glue_metrics
from diffprune.data_paths import default_model_path
from diffprune.export import task_from_model
from diffprune.model import DiffPruneModel
from diffprune.optim import build_optimizer
from diffprune.task_file import save_task
from diffprune.training.data import make_loader
from diffprune.training.settings import TrainSettings


def load_base(name_or_path: str | None, task: GlueTask):
    """Tokenizer, sequence-classification model and the names of its new (head) parameters."""
    path = str(name_or_path or default_model_path())
    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=task.num_labels, output_loading_info=True)
    return tokenizer, model, list(info["missing_keys"])


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, task: GlueTask) -> dict[str, float]:
    was_training = model.training
    model.eval()
    preds, gold = [], []
    for batch in loader:
        labels = batch.pop("labels")
        logits = model(**batch).logits  # (B, num_labels)
        preds.append(logits.squeeze(-1) if task.labels is None else logits.argmax(-1))
        gold.append(labels)
    model.train(was_training)
    return glue_metrics(task.metric, torch.cat(preds).numpy(), torch.cat(gold).numpy())


def _steps(loader, epochs: float, max_steps: int) -> int:
    steps = math.ceil(len(loader) * epochs)
    return min(steps, max_steps) if max_steps > 0 else steps


def run_stage(model: DiffPruneModel, loader, num_steps: int, optimizer, scheduler,
              desc: str, on_epoch_end=None) -> list[float]:
    """Optimizer steps over ``loader`` (cycled); returns the task loss of every step."""
    losses: list[float] = []
    bar = tqdm(total=num_steps, desc=desc, dynamic_ncols=True)
    step = 0
    while step < num_steps:
        for batch in loader:
            out = model(**batch)
            penalty = model.penalty()
            loss = out.loss + penalty
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {float(loss)} at step {step}; "
                                         "lower the learning rates or check the data")
            loss.backward()
            model.clip_grad_norms()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(out.loss.detach()))
            step += 1
            postfix = {"loss": f"{losses[-1]:.4f}"}
            if model.stage == "gated":
                if step % 25 == 1:  # a pass over every gate: not at every step
                    density = model.expected_density()
                postfix["density"] = f"{density:.4f}"
            bar.set_postfix(postfix)
            bar.update()
            if step >= num_steps:
                break
        if on_epoch_end is not None:
            on_epoch_end(step)
    bar.close()
    return losses


def train_task(config: DiffPruneConfig, settings: TrainSettings) -> dict:
    """Train one task with diff pruning; writes ``diff.safetensors`` and ``metrics.json``."""
    start = time.time()
    torch.manual_seed(settings.seed)
    task = get_task(settings.task)
    if settings.data_dir is None:
        raise ValueError("pass --data-dir with the GLUE TSV layout (e.g. ../shared/data/glue)")
    train_x, train_y = read_split(settings.data_dir, task, "train")
    dev_x, dev_y = read_split(settings.data_dir, task, "dev")
    if settings.max_train_samples:
        n = settings.max_train_samples
        train_x, train_y = train_x[:n], train_y[:n]
    if settings.max_eval_samples:
        dev_x, dev_y = dev_x[: settings.max_eval_samples], dev_y[: settings.max_eval_samples]
    tokenizer, base, missing = load_base(settings.model, task)
    train_loader = make_loader(tokenizer, train_x, train_y, settings.batch_size,
                               settings.max_seq_length, shuffle=True, seed=settings.seed)
    dev_loader = make_loader(tokenizer, dev_x, dev_y, settings.eval_batch_size,
                             settings.max_seq_length, shuffle=False)
    out_dir = Path(settings.output)
    out_dir.mkdir(parents=True, exist_ok=True)

    model = DiffPruneModel(base, config, missing_keys=missing).train()
    metrics: dict = {"task": task.name, "metric": task.metric, "train_examples": len(train_y),
                     "dev_examples": len(dev_y)}

    # Stage 1: L0 training.
    steps = _steps(train_loader, settings.epochs, settings.max_steps)
    optimizer, scheduler = build_optimizer(model, steps)
    metrics["l0_expected_l0_start"] = model.expected_l0()
    losses = run_stage(model, train_loader, steps, optimizer, scheduler, "L0 training")
    metrics.update(l0_steps=steps, l0_first_loss=losses[0], l0_last_loss=losses[-1],
                   l0_expected_l0_end=model.expected_l0(),
                   density_before_projection=model.expected_density(),
                   dev_after_l0=evaluate(model, dev_loader, task))

    # Projection to the exact budget.
    metrics["nonzeros"] = model.project()
    metrics["density_after_projection"] = metrics["nonzeros"] / model.num_gated
    metrics["dev_after_projection"] = evaluate(model, dev_loader, task)

    # Stage 2: fixed-mask finetuning, keeping the best dev checkpoint.
    model.config = replace(model.config, diff_lr=settings.mask_lr, head_lr=settings.mask_lr)
    steps = _steps(train_loader, settings.mask_epochs, settings.max_steps)
    optimizer, scheduler = build_optimizer(model, steps)
    best = {"score": -math.inf}

    def keep_best(step: int) -> None:
        scores = evaluate(model, dev_loader, task)
        if scores[task.metric] > best["score"]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()
                     if "diffprune_" in k or k.split(".", 1)[-1] in model.head_names}
            best.update(score=scores[task.metric], scores=scores, step=step, state=state)

    run_stage(model, train_loader, steps, optimizer, scheduler, "fixed-mask", keep_best)
    model.load_state_dict(best["state"], strict=False)
    metrics.update(mask_steps=steps, best_step=best["step"], dev=best["scores"],
                   train_seconds=time.time() - start)
    task_info = {"name": task.name, "labels": list(task.labels or []),
                 "num_labels": task.num_labels,
                 "problem_type": "regression" if task.labels is None
                 else "single_label_classification"}
    base_info = {"name_or_path": str(settings.model or default_model_path())}
    path = save_task(task_from_model(model, task_info, best["scores"], base_info),
                     out_dir / "diff.safetensors")
    # The compact file keeps float16 values: score the task as a user gets it, from the file,
    # on a freshly loaded base.
    bank = TaskBank(load_base(settings.model, task)[1])
    bank.add(task.name, path)
    bank.activate(task.name)
    metrics["dev_from_file"] = evaluate(bank.model, dev_loader, task)
    metrics["file_bytes"] = path.stat().st_size
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "config.json").write_text(json.dumps(
        {"diffprune": config.to_dict(), "train": vars(settings)}, indent=2) + "\n")
    return metrics

