"""The minibatch loop shared by the probes that train a small torch head on frozen features."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def fit_minibatches(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """Train `model` for `epochs` passes over (x, y) in batches; `generator` alone draws the batch order."""
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            loss = loss_fn(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
