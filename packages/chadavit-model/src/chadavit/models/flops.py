"""Analytic FLOPs of a forward pass (one multiply-add = 2 FLOPs; matmuls only, as is customary).

Per sequence of L tokens and per block: q, k, v and output projections 8 L D^2, MLP 4 L D H,
attention scores and weighted sum 4 L^2 D. The shared Conv2d costs 2 D p^2 per real patch token
(the reference pads *after* tokenising, so padding adds no convolution work). A training step
(forward + backward) is counted as 3x the forward.
"""

from __future__ import annotations

from collections.abc import Sequence

from chadavit.models.config import ViTConfig


def sequence_layout(
    config: ViTConfig, channel_counts: Sequence[int], height: int, width: int, padded: bool
) -> tuple[int, list[int]]:
    """(tokens per plane, planes per sequence as the model runs it) for one batch."""
    if config.architecture == "interchannel":
        per_plane = 1  # every plane is resized to one img_size patch
    else:
        per_plane = (height // config.patch_size) * (width // config.patch_size)
    if config.architecture == "onechannel":
        planes = [1] * sum(channel_counts)
    elif config.architecture == "standard":
        planes = [1] * len(channel_counts)  # the 3 channels share one token grid
    elif padded:
        planes = [config.max_channels] * len(channel_counts)
    else:
        planes = list(channel_counts)
    return per_plane, planes


def forward_flops(
    config: ViTConfig, channel_counts: Sequence[int], height: int, width: int, padded: bool = False
) -> int:
    """Forward FLOPs for a batch of images with these channel counts."""
    per_plane, planes = sequence_layout(config, channel_counts, height, width, padded)
    dim, hidden = config.embed_dim, config.hidden_dim
    real_tokens = sum(channel_counts) * per_plane
    total = 2 * dim * config.patch_size**2 * real_tokens
    for count in planes:
        length = 1 + count * per_plane
        per_block = 8 * length * dim * dim + 4 * length * dim * hidden + 4 * length * length * dim
        total += config.depth * per_block
    return total
