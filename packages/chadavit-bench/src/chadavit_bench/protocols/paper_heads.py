"""The authors' head training (github.com/nicoboou/chadavit, solo-learn's LinearModel and their
regression method): AdamW, base LR 5e-4 scaled by batch / 256, weight decay 1e-4, batches of 64,
150 epochs, a linear warm-up of 10 epochs from 1e-5 then cosine to 0, per step; no feature
standardisation (scripts/linear/*/dino_chada_vit_moyen.yaml and
scripts/regression/transloc/dino_chada_vit_moyen.yaml `optimizer`, `scheduler`, `max_epochs`;
src/methods/linear.py and src/methods/base.py for the scheduler defaults; LR scaling:
src/args/linear.py lines 219-220).

Here it trains the NF-kB regression head (`nn.Linear` + MSE, src/methods/regression.py lines
125-131) on frozen features; the same schedule drives the online linear probe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from chadavit_bench.protocols.metrics import regression_metrics, torch_threads


@dataclass(frozen=True)
class PaperHeadConfig:
    epochs: int = 150
    batch_size: int = 64
    base_lr: float = 5e-4  # per 256 samples
    weight_decay: float = 1e-4
    warmup_epochs: int = 10
    warmup_start_lr: float = 1e-5
    min_lr: float = 0.0

    @property
    def peak_lr(self) -> float:
        return self.base_lr * self.batch_size / 256


def warmup_cosine(config: PaperHeadConfig, steps_per_epoch: int) -> np.ndarray:
    """The LR of every step: linear from warmup_start_lr to the peak, then cosine to min_lr."""
    total = config.epochs * steps_per_epoch
    warmup = min(config.warmup_epochs * steps_per_epoch, total)
    ramp = np.linspace(config.warmup_start_lr, config.peak_lr, warmup, endpoint=False)
    rest = np.arange(total - warmup)
    cosine = config.min_lr + 0.5 * (config.peak_lr - config.min_lr) * (
        1 + np.cos(math.pi * rest / max(len(rest), 1))
    )
    return np.concatenate([ramp, cosine])


def fit_paper_head(
    layer: nn.Module,
    batches: Callable[[torch.Generator], list[tuple[torch.Tensor, torch.Tensor]]],
    steps_per_epoch: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: PaperHeadConfig,
    seed: int,
) -> None:
    """Train `layer` with the authors' optimiser and schedule; `batches(generator)` gives one epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(layer.parameters(), lr=0.0, weight_decay=config.weight_decay)
    lrs = warmup_cosine(config, steps_per_epoch)
    step = 0
    for _ in range(config.epochs):
        for x, y in batches(generator):
            for group in optimiser.param_groups:
                group["lr"] = float(lrs[min(step, len(lrs) - 1)])
            loss = loss_fn(layer(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1


def shuffled_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> Callable[[torch.Generator], list[tuple[torch.Tensor, torch.Tensor]]]:
    def epoch(generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x), generator=generator)
        return [
            (x[order[s : s + batch_size]], y[order[s : s + batch_size]]) for s in range(0, len(x), batch_size)
        ]

    return epoch


def run_linear_mse_regression(
    train: np.ndarray,
    train_targets: np.ndarray,
    query: np.ndarray,
    query_targets: np.ndarray,
    seed: int,
    config: PaperHeadConfig = PaperHeadConfig(),
) -> dict[str, float]:
    """R2, MSE, MAE and Pearson's r of an `nn.Linear` head trained with MSE on raw features."""
    x = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32))
    y = torch.from_numpy(np.asarray(train_targets, dtype=np.float32).reshape(len(train), -1))
    torch.manual_seed(seed)  # nn.Linear's init draws from the global generator
    layer = nn.Linear(x.shape[1], y.shape[1])
    steps = -(-len(x) // config.batch_size)
    with torch_threads(1):
        fit_paper_head(
            layer, shuffled_batches(x, y, config.batch_size), steps, nn.functional.mse_loss, config, seed
        )
        with torch.no_grad():
            predicted = layer(torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))).numpy()
    return regression_metrics(query_targets, predicted.reshape(np.shape(query_targets)))
