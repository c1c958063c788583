"""Tiny model specs for tests, demos and smoke runs: ChAda-ViT sizes shrunk to run in seconds on a CPU.

Embedding width 32, 2 blocks, 2 heads, 32 x 32 inputs in 8 x 8 patches (a 4 x 4 grid per channel).
"""

from __future__ import annotations

TINY_OVERRIDES = "embed_dim=32&depth=2&num_heads=2&img_size=32&patch_size=8"
TINY_IMG_SIZE = 32
TINY_CHADAVIT = f"random:chadavit_petit?{TINY_OVERRIDES}"
TINY_ONECHANNEL = f"onechannel_vit_tiny?{TINY_OVERRIDES}"
TINY_INTERCHANNEL = "interchannel_vit_moyen?embed_dim=32&depth=2&num_heads=2&img_size=32"
