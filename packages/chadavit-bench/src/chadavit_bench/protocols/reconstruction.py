"""Channel reconstruction: a small convolutional decoder on frozen features predicts a held-out channel.

For BBBC021 the encoder sees DAPI and Tubulin; the decoder, trained on the CLS embedding (or, as an
option, on the patch-token map), predicts Actin at `target_size`. Reported with R2, MSE and MAE over
all pixels of the evaluation split, next to the same metrics for the train split's mean image, the
baseline a useful embedding must beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from chadavit_bench.protocols.metrics import regression_metrics, standardise, torch_threads
from chadavit_bench.protocols.training import fit_minibatches

BASE_GRID = 4  # the decoders start from a 4 x 4 map and double it up to the target size


@dataclass(frozen=True)
class ReconstructionConfig:
    target_size: int = 32
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 3e-3
    width: int = 64  # channels of the first decoder map, halved at each upsampling (at least 16)
    use_patch_tokens: bool = False


def _upsampler(width: int, target_size: int) -> nn.Sequential:
    steps = int(math.log2(target_size // BASE_GRID))
    if BASE_GRID * 2**steps != target_size:
        raise ValueError(f"target_size must be {BASE_GRID} times a power of two, got {target_size}")
    layers: list[nn.Module] = []
    channels = width
    for _ in range(steps):
        out = max(16, channels // 2)
        layers += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(channels, out, 3, padding=1),
            nn.GELU(),
        ]
        channels = out
    # A linear output, clipped to the targets' [0, 1] range only when predicting: behind a sigmoid,
    # pixels pushed far below 0 early get no gradient back, and on the pretrained CLS of
    # docs/bench.md two of three seeds stalled at R2 0.66 where the third reached 0.99.
    layers.append(nn.Conv2d(channels, 1, 3, padding=1))
    return nn.Sequential(*layers)


class EmbeddingDecoder(nn.Module):
    """(N, D) embedding -> (N, 1, S, S) image."""

    def __init__(self, dim: int, config: ReconstructionConfig) -> None:
        super().__init__()
        self.width = config.width
        self.project = nn.Linear(dim, config.width * BASE_GRID * BASE_GRID)
        self.upsample = _upsampler(config.width, config.target_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.project(x).view(-1, self.width, BASE_GRID, BASE_GRID)
        return self.upsample(nn.functional.gelu(grid))


class TokenMapDecoder(nn.Module):
    """(N, h, w, D) patch-token map -> (N, 1, S, S) image."""

    def __init__(self, dim: int, config: ReconstructionConfig) -> None:
        super().__init__()
        self.project = nn.Conv2d(dim, config.width, 1)
        self.upsample = _upsampler(config.width, config.target_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.project(x.permute(0, 3, 1, 2))
        grid = nn.functional.interpolate(
            grid, size=(BASE_GRID, BASE_GRID), mode="bilinear", align_corners=False
        )
        return self.upsample(nn.functional.gelu(grid))


def run_reconstruction(
    train: np.ndarray,
    train_targets: np.ndarray,
    query: np.ndarray,
    query_targets: np.ndarray,
    seed: int,
    config: ReconstructionConfig = ReconstructionConfig(),
    unit_range: bool = True,
) -> dict[str, float]:
    """Train the decoder on (features, target images) and score it on the query split.

    `train` is (N, D) for the CLS decoder or (N, h, w, D) for the token-map decoder; targets are
    (N, S, S) in [0, 1] with S = `config.target_size`; with `unit_range` false (raw counts), the
    decoder learns the targets divided by their training maximum and its predictions are scaled
    back, so the metrics are in the targets' own units.
    """
    size = config.target_size
    if train_targets.shape[1:] != (size, size):
        raise ValueError(f"targets must be (N, {size}, {size}), got {train_targets.shape}")
    train_z, query_z = standardise(train, query)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    decoder_type = TokenMapDecoder if train.ndim == 4 else EmbeddingDecoder
    decoder = decoder_type(train.shape[-1], config)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=config.learning_rate)
    x = torch.from_numpy(train_z)
    scale = 1.0 if unit_range else float(np.abs(train_targets).max()) or 1.0
    y = torch.from_numpy((train_targets / scale).astype(np.float32))[:, None]
    with torch_threads(1):
        fit_minibatches(
            decoder,
            optimiser,
            x,
            y,
            nn.functional.mse_loss,
            epochs=config.epochs,
            batch_size=config.batch_size,
            generator=generator,
        )
    with torch.no_grad():
        # Targets in [0, 1] (scaled ones too): clip the decoder's overshoot, then back to their units.
        predicted = decoder(torch.from_numpy(query_z))[:, 0].clamp(0.0, 1.0).numpy() * scale
    metrics = {k: v for k, v in regression_metrics(query_targets, predicted).items() if k != "pearson"}
    mean_image = np.broadcast_to(train_targets.mean(axis=0), query_targets.shape)
    baseline = regression_metrics(query_targets, mean_image)
    metrics.update({f"{name}_mean_image": baseline[name] for name in ("r2", "mse", "mae")})
    return metrics
