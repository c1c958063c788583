"""Linear probe: a linear classifier trained on frozen, standardised features.

Trained with AdamW and cross-entropy in torch, so the seed drives the initialisation and the batch
order (the paper reports 5 seeds); the features are z-scored with the training subset's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from chadavit_bench.protocols.metrics import classification_metrics, standardise, torch_threads
from chadavit_bench.protocols.training import fit_minibatches


@dataclass(frozen=True)
class LinearProbeConfig:
    epochs: int = 100
    min_steps: int = 500  # small training sets get more epochs, so every probe sees enough updates
    batch_size: int = 256
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4


def train_linear(
    features: np.ndarray, labels: np.ndarray, n_classes: int, config: LinearProbeConfig, seed: int
) -> nn.Linear:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # nn.Linear's init draws from the global generator
    layer = nn.Linear(features.shape[1], n_classes)
    optimiser = torch.optim.AdamW(
        layer.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    x = torch.from_numpy(features)
    y = torch.from_numpy(labels.astype(np.int64))
    batches = -(-len(x) // config.batch_size)
    epochs = max(config.epochs, -(-config.min_steps // batches))
    fit_minibatches(
        layer,
        optimiser,
        x,
        y,
        nn.functional.cross_entropy,
        epochs=epochs,
        batch_size=config.batch_size,
        generator=generator,
    )
    return layer


def run_linear_probe(
    train: np.ndarray,
    train_labels: np.ndarray,
    query: np.ndarray,
    query_labels: np.ndarray,
    n_classes: int,
    seed: int,
    config: LinearProbeConfig = LinearProbeConfig(),
) -> dict[str, float]:
    train_z, query_z = standardise(train, query)
    with torch_threads(1):
        layer = train_linear(train_z, train_labels, n_classes, config, seed)
    with torch.no_grad():
        predicted = layer(torch.from_numpy(query_z)).argmax(dim=1).numpy()
    return classification_metrics(query_labels, predicted)
