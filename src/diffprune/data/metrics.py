"""The GLUE metrics, in plain numpy (scores as fractions; multiply by 100 for GLUE points)."""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float((pred == gold).mean())


def f1(pred: np.ndarray, gold: np.ndarray) -> float:
    tp = float(((pred == 1) & (gold == 1)).sum())
    denom = float((pred == 1).sum() + (gold == 1).sum())
    return 0.0 if denom == 0 else 2 * tp / denom


def mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    tp = float(((pred == 1) & (gold == 1)).sum())
    tn = float(((pred == 0) & (gold == 0)).sum())
    fp = float(((pred == 1) & (gold == 0)).sum())
    fn = float(((pred == 0) & (gold == 1)).sum())
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else float((tp * tn - fp * fn) / denom)


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    if pred.std() == 0 or gold.std() == 0:
        return 0.0
    return float(np.corrcoef(pred, gold)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    return pearson(_ranks(pred), _ranks(gold))


def glue_metrics(task_metric: str, predictions: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Every metric GLUE reports for a task; the headline one is named by ``task_metric``."""
    if task_metric == "spearman":
        return {"pearson": pearson(predictions, gold), "spearman": spearman(predictions, gold)}
    out = {"accuracy": accuracy(predictions, gold)}
    if task_metric == "f1":
        out["f1"] = f1(predictions, gold)
    if task_metric == "mcc":
        out["mcc"] = mcc(predictions, gold)
    return out
