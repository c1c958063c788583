"""Attention maps per channel (the paper's Figure 3): last-block CLS attention, averaged over heads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import chadavit


@dataclass(frozen=True)
class AttentionSample:
    dataset: str
    key: str
    channel_names: tuple[str, ...]
    image: np.ndarray  # (C, H, W) in [0, 1], at the model's input size
    attention: np.ndarray  # (C, h, w), heads averaged; sums to 1 over all channels and positions


@torch.inference_mode()
def attention_per_channel(
    model: nn.Module, images: list[torch.Tensor], device: str = "cpu"
) -> list[np.ndarray]:
    """(C_i, h, w) maps, one per image: where the CLS token looks in each channel."""
    if not hasattr(model, "attention_maps"):
        raise TypeError(f"{type(model).__name__} does not expose attention_maps")
    maps = model.attention_maps(chadavit.ChannelBatch.from_images(images).to(device))
    return [m.float().mean(dim=0).cpu().numpy() for m in maps]
