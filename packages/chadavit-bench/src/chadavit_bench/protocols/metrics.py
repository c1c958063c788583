"""Metrics shared by the protocols, computed with numpy so every protocol reports them the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.metrics import f1_score


def classification_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(np.mean(truth == predicted)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }


def regression_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """R2 (against the truth's own mean), MSE, MAE and Pearson's r over all values."""
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    residual = np.sum((truth - predicted) ** 2)
    total = np.sum((truth - truth.mean()) ** 2)
    r2 = 1.0 - residual / total if total > 0 else 0.0
    spread = truth.std() * predicted.std()
    pearson = (
        float(np.mean((truth - truth.mean()) * (predicted - predicted.mean())) / spread)
        if spread > 0
        else 0.0
    )
    return {
        "r2": float(r2),
        "mse": float(residual / truth.size),
        "mae": float(np.mean(np.abs(truth - predicted))),
        "pearson": pearson,
    }


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Z-score every array with the train features' mean and std (constant features become 0).

    The last axis holds the features; statistics pool every other axis, so an (N, h, w, D) token map
    is standardised per feature like an (N, D) embedding."""
    axes = tuple(range(train.ndim - 1))
    mean = train.mean(axis=axes, keepdims=True)
    std = train.std(axis=axes, keepdims=True)
    std = np.where(std > 1e-8, std, 1.0)
    return [((x - mean) / std).astype(np.float32) for x in (train, *others)]


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run a block with `count` intra-op torch threads, then restore the previous setting.

    The probes train small layers with thousands of tiny steps; there, thread synchronisation costs
    more than the arithmetic (measured 35x slower with 2 threads on a busy 2-core machine).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
