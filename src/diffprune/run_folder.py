"""The files of a ``diffprune train`` run folder, and how a run's results appear in it.

A run writes its results (task file or model, metrics, config, log, density plot) into a
staging folder inside the run folder and moves them into place only when it has finished, the
metrics last. A run killed or failed part-way therefore leaves the earlier result as it was (or
nothing), never a mix of the two; ``--resume`` finds the staged config and the checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

CONFIG = "config.json"  # the method's and the run's settings
METRICS = "metrics.json"  # written last: a folder with it holds a finished run
TASK_FILE = "diff.safetensors"  # the diff methods' result
FULL_MODEL = "model"  # full finetuning's result: a Transformers model folder
TASK_INFO = "diffprune_task.json"  # the task's spec, saved inside FULL_MODEL
DENSITY_PLOT = "density.png"  # stage 1's density against its target
LOG = "train.log"
EVAL = "eval.json"  # written later by ``diffprune eval``; stale once the run is replaced
CHECKPOINT = "checkpoint"  # a run in progress (see training/checkpoint.py)
STAGING = ".incoming"
_REPLACED = ".replaced"

# What a finished run consists of: replacing a run replaces all of these.
RESULTS = (TASK_FILE, FULL_MODEL, DENSITY_PLOT, CONFIG, LOG, EVAL, METRICS)
# What marks a folder as holding a finished run.
FINISHED_MARKERS = (METRICS, TASK_FILE, FULL_MODEL)


class RunFolder:
    """One run folder: where each file is, and the publishing of a finished run's results."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        """A published file: ``RunFolder(out) / METRICS``."""
        return self.path / name

    @property
    def staging(self) -> Path:
        return self.path / STAGING

    def staged(self, name: str) -> Path:
        """Where a run in progress writes ``name`` (the folder is created)."""
        self.staging.mkdir(parents=True, exist_ok=True)
        return self.staging / name

    def finished(self) -> list[str]:
        """The names that show a finished run here (empty when there is none)."""
        return [name for name in FINISHED_MARKERS if (self.path / name).exists()]

    def config(self) -> Path:
        """The config of the run in progress, else that of the finished run."""
        staged = self.staging / CONFIG
        return staged if staged.is_file() else self.path / CONFIG

    def publish(self) -> list[str]:
        """Move the staged results into place, replacing any earlier run's whole set; returns
        the names published. The earlier results are first moved aside, so that no file of
        the earlier run can end up beside the new ones."""
        staged = [name for name in RESULTS if (self.staging / name).exists()]
        aside = self.path / _REPLACED
        shutil.rmtree(aside, ignore_errors=True)
        for name in RESULTS:
            if (self.path / name).exists():
                aside.mkdir(exist_ok=True)
                (self.path / name).rename(aside / name)
        for name in staged:  # METRICS is the last name of RESULTS
            (self.staging / name).rename(self.path / name)
        shutil.rmtree(aside, ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        return staged
