"""Scoring a model on dev splits."""

from __future__ import annotations

import torch

from diffprune.data.metrics import glue_metrics
from diffprune.data.task import TaskSpec


@torch.no_grad()
def predict(model: torch.nn.Module, loader, spec: TaskSpec) -> tuple[torch.Tensor, list]:
    """(raw outputs, gold labels): logits per class, or one value per example for regression."""
    was_training = model.training
    model.eval()
    outputs, gold = [], []
    device = next(model.parameters()).device
    for batch in loader:
        labels = batch.pop("labels", None)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
        outputs.append(logits.squeeze(-1) if spec.labels is None else logits)
        if labels is not None:
            gold.extend(labels.tolist())
    model.train(was_training)
    return torch.cat(outputs), gold


def evaluate(model: torch.nn.Module, loaders: dict, spec: TaskSpec) -> dict[str, dict]:
    """GLUE metrics per dev split: {split: {metric: fraction}}."""
    scores = {}
    for split, loader in loaders.items():
        out, gold = predict(model, loader, spec)
        guesses = out if spec.labels is None else out.argmax(-1)
        scores[split] = glue_metrics(spec.metric, guesses.numpy(), torch.tensor(gold).numpy())
    return scores
