"""Resumable training state, in safetensors and JSON (never pickle).

A checkpoint folder holds what changes during training and nothing that does not: the trainable
tensors (the diff and gates, or the kept values and positions, or the whole model for full
finetuning) and the best dev state so far, the optimizer moments, the schedule, each process's
random state and the progress (stage, step, metrics so far). It is written next to the old one
and swapped in by a rename, so a run killed while saving still has its previous checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffprune.model import PREFIX
from diffprune.run_folder import CHECKPOINT, RunFolder

STAGE_START = "stage-start.safetensors"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors training changes: trainable parameters, plus the fixed-mask positions."""
    state = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    state.update({n: b for n, b in model.named_buffers()
                  if PREFIX in n and n.endswith("_indices")})
    return state


def stage_start_path(out_dir: Path) -> Path:
    """Where a run in progress keeps the trainable tensors its last stage started from, for a
    retry: with the run's staged files, which publishing a finished run removes (the
    checkpoint folder itself is replaced at each save)."""
    return RunFolder(out_dir).staging / STAGE_START


def save_stage_start(out_dir: Path, model: nn.Module) -> None:
    save_file({k: v.contiguous() for k, v in trainable_state(model).items()},
              RunFolder(out_dir).staged(STAGE_START))


def load_stage_start(out_dir: Path) -> dict[str, torch.Tensor]:
    path = stage_start_path(out_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the stage's starting state is needed to "
                                "retry it")
    return load_file(path)


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict, info: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *info["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = info["param_groups"]
    for group in groups:  # JSON turned the tuples into lists
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(out_dir: Path, model: nn.Module, optimizer, scheduler,
                    progress: dict, best_state: dict[str, torch.Tensor] | None,
                    rank: int = 0, is_main: bool = True, barrier=lambda: None) -> Path:
    """Write a checkpoint of every process (call on all of them), replacing the previous one."""
    final = out_dir / CHECKPOINT
    tmp = out_dir / f"{CHECKPOINT}.tmp"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    save_file({k: v.contiguous() for k, v in _rng_state().items()}, tmp / f"rng_{rank}.safetensors")
    if is_main:
        state = {f"model.{k}": v.contiguous() for k, v in trainable_state(model).items()}
        state.update({f"best.{k}": v.contiguous() for k, v in (best_state or {}).items()})
        save_file(state, tmp / "state.safetensors")
        tensors, info = _optimizer_to_files(optimizer)
        save_file(tensors, tmp / "optimizer.safetensors")
        info["scheduler"] = scheduler.state_dict()
        (tmp / "optimizer.json").write_text(json.dumps(info))
        (tmp / "progress.json").write_text(json.dumps(progress, indent=2))
    barrier()
    if is_main:
        old = out_dir / f"{CHECKPOINT}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def read_progress(out_dir: Path) -> dict:
    """The progress record of a run's checkpoint; a clear error when there is none."""
    path = out_dir / CHECKPOINT / "progress.json"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from in {out_dir} "
                                f"(expected {path})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: damaged checkpoint progress ({err})") from err


def load_model_state(out_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(model tensors, best-so-far tensors) of the checkpoint."""
    state = load_file(out_dir / CHECKPOINT / "state.safetensors")
    model = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    best = {k[len("best."):]: v for k, v in state.items() if k.startswith("best.")}
    return model, best


def restore_training(out_dir: Path, optimizer, scheduler, rank: int = 0,
                     world_size: int = 1) -> None:
    """Load the optimizer, schedule and this process's random state of the checkpoint."""
    folder = out_dir / CHECKPOINT
    written = len(list(folder.glob("rng_*.safetensors")))
    if written != world_size:  # each process continues its own random stream
        raise ValueError(f"{folder} was written by {written} process(es); resume with as many "
                         f"(this run has {world_size})")
    info = json.loads((folder / "optimizer.json").read_text())
    scheduler_state = info.pop("scheduler")
    optimizer.load_state_dict(
        _optimizer_from_files(load_file(folder / "optimizer.safetensors"), info))
    scheduler.load_state_dict(scheduler_state)
    _set_rng_state(load_file(folder / f"rng_{rank}.safetensors"))
