"""Fixtures shared by the chadavit model tests: tiny seeded models and random channel mixes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from chadavit import create_model
from chadavit.models.base import PackedViT

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 64}
# The released block's FFN is 2048 wide; tests shrink it.
TINY_V1 = {**TINY, "ffn_dim": 64}


def _tiny_model(name: str = "chadavit_petit", seed: int = 0, **overrides: object) -> PackedViT:
    torch.manual_seed(seed)
    settings = {**(TINY_V1 if name == "chadavit_moyen_v1" else TINY), **overrides}
    return create_model(name, **settings).eval()


def _random_images(counts: list[int], size: int | tuple[int, int] = 64, seed: int = 0) -> list[torch.Tensor]:
    height, width = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(count, height, width, generator=generator) for count in counts]


@pytest.fixture
def tiny_model() -> Callable[..., PackedViT]:
    """`tiny_model(name="chadavit_petit", seed=0, **overrides)`: small fixed weights, eval mode."""
    return _tiny_model


@pytest.fixture
def random_images() -> Callable[..., list[torch.Tensor]]:
    """`random_images(counts, size=64, seed=0)`: one random (C_i, H, W) float image per count."""
    return _random_images
