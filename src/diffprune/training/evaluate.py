"""Loading a base for a task, and scoring a model on dev splits."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from diffprune.data.metrics import glue_metrics
from diffprune.data.task import TaskSpec
from diffprune.data_paths import base_path


def load_base(name_or_path: str | None, spec: TaskSpec):
    """Tokenizer, sequence-classification model and the names of its new (head) parameters."""
    path = base_path(name_or_path)
    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=spec.num_labels, problem_type=spec.problem_type,
        output_loading_info=True)
    return tokenizer, model, list(info["missing_keys"])


def sequence_limit(model: torch.nn.Module, tokenizer, requested: int) -> int:
    """``requested`` tokens, cut to what the model's position table and tokenizer allow."""
    limits = [requested, getattr(tokenizer, "model_max_length", requested)]
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if positions:
        limits.append(positions)
    return int(min(limits))


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
