"""Weighted k-nearest-neighbour classification on cosine similarity (the DINO kNN protocol).

Each of the k nearest training features votes for its class with weight exp(similarity / T);
k = 20 and T = 0.07 are DINO's defaults (Caron et al. 2021, eval_knn.py), which ChAda-ViT reuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chadavit_bench.protocols.metrics import classification_metrics


@dataclass(frozen=True)
class KnnConfig:
    k: int = 20
    temperature: float = 0.07
    grid_k: Sequence[int] = (10, 20, 50, 100)
    grid_temperature: Sequence[float] = (0.02, 0.07, 0.2)
    chunk: int = 1024  # query rows per similarity block, to bound memory


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def knn_predict(
    train: np.ndarray,
    train_labels: np.ndarray,
    query: np.ndarray,
    k: int,
    temperature: float,
    n_classes: int,
    chunk: int = 1024,
) -> np.ndarray:
    """Predicted class per query row."""
    train_n, query_n = _normalise(train), _normalise(query)
    k = min(k, len(train_n))
    predictions = np.empty(len(query_n), dtype=np.int64)
    for start in range(0, len(query_n), chunk):
        similarity = query_n[start : start + chunk] @ train_n.T
        # argpartition finds the k best without sorting all; ties break by index, deterministically.
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.exp(np.take_along_axis(similarity, nearest, axis=1) / temperature)
        votes = np.zeros((len(nearest), n_classes), dtype=np.float64)
        np.add.at(votes, (np.arange(len(nearest))[:, None], train_labels[nearest]), weights)
        predictions[start : start + len(nearest)] = votes.argmax(axis=1)
    return predictions


def run_knn(
    train: np.ndarray,
    train_labels: np.ndarray,
    query: np.ndarray,
    query_labels: np.ndarray,
    n_classes: int,
    config: KnnConfig = KnnConfig(),
    grid: bool = False,
) -> dict[str, float]:
    """Metrics at the configured (k, T); with `grid`, also `accuracy@k=..,T=..` for every grid cell."""
    predicted = knn_predict(train, train_labels, query, config.k, config.temperature, n_classes, config.chunk)
    metrics = classification_metrics(query_labels, predicted)
    if grid:
        best = 0.0
        for k in config.grid_k:
            for temperature in config.grid_temperature:
                grid_predicted = knn_predict(
                    train, train_labels, query, k, temperature, n_classes, config.chunk
                )
                accuracy = float(np.mean(grid_predicted == query_labels))
                metrics[f"accuracy@k={k},T={temperature:g}"] = accuracy
                best = max(best, accuracy)
        metrics["accuracy_best_of_grid"] = best
    return metrics
