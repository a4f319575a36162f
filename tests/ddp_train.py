"""Run by test_distributed under torchrun: trains, then each rank saves its own final diff."""

from __future__ import annotations

import sys

from safetensors.torch import save_file

import diffprune.training.recipe as recipe
from diffprune.cli.main import main
from diffprune.training.checkpoint import trainable_state

_fixed_mask = recipe._fixed_mask


def _fixed_mask_then_save(run, model):
    scores = _fixed_mask(run, model)
    state = {k: v.contiguous() for k, v in trainable_state(model).items()}
    save_file(state, run.out_dir / f"rank{run.acc.process_index}.safetensors")
    return scores


recipe._fixed_mask = _fixed_mask_then_save
sys.exit(main(["train", *sys.argv[1:]]))
