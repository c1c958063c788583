"""Named model configurations: `create_model(name, **overrides)` and `list_models()`."""

from __future__ import annotations

import dataclasses
from typing import Any

from chadavit.models.base import PackedViT
from chadavit.models.baselines import InterChannelViT, OneChannelViT, StandardViT
from chadavit.models.chadavit import ChAdaViT
from chadavit.models.config import ViTConfig

MODEL_CLASSES: dict[str, type[PackedViT]] = {
    "chadavit": ChAdaViT,
    "onechannel": OneChannelViT,
    "interchannel": InterChannelViT,
    "standard": StandardViT,
}

# Widths: "moyen" is the paper's ViT-Tiny (D 192, 3 heads); petit / grand halve / double it.
_CONFIGS: dict[str, ViTConfig] = {
    "chadavit_petit": ViTConfig(name="chadavit_petit", embed_dim=96, num_heads=2),
    "chadavit_moyen": ViTConfig(name="chadavit_moyen", embed_dim=192, num_heads=3),
    "chadavit_grand": ViTConfig(name="chadavit_grand", embed_dim=384, num_heads=6),
    # The authors' released "chadavit16-moyen" (docs/reference-model.md): nn.TransformerEncoderLayer
    # style block with norm1 applied twice, ReLU FFN of width 2048, LayerNorm eps 1e-5 in blocks,
    # 1e-6 final, no drop path. The training scripts build 2 heads; the file cannot tell.
    "chadavit_moyen_v1": ViTConfig(
        name="chadavit_moyen_v1",
        embed_dim=192,
        num_heads=2,
        ffn_dim=2048,
        drop_path_rate=0.0,
        block="released",
        block_norm_eps=1e-5,
        norm_eps=1e-6,
    ),
    # Paper baselines at ViT-Tiny width. The standard ViT takes 3-channel images (data.first_channels=3).
    "onechannel_vit_tiny": ViTConfig(
        name="onechannel_vit_tiny", architecture="onechannel", embed_dim=192, num_heads=3
    ),
    "interchannel_vit_moyen": ViTConfig(
        name="interchannel_vit_moyen", architecture="interchannel", patch_size=224, embed_dim=192, num_heads=3
    ),
    "standard_vit_tiny": ViTConfig(
        name="standard_vit_tiny", architecture="standard", embed_dim=192, num_heads=3, max_channels=3
    ),
}


def list_models() -> list[str]:
    return sorted(_CONFIGS)


def model_config(name: str, **overrides: Any) -> ViTConfig:
    """The named configuration with `overrides` applied (validated)."""
    if name not in _CONFIGS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    fields = {field.name for field in dataclasses.fields(ViTConfig)} - {"name", "architecture"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {name}; allowed: {sorted(fields)}")
    base = _CONFIGS[name]
    if base.architecture == "interchannel" and "img_size" in overrides and "patch_size" not in overrides:
        # One token per channel: the patch follows the image size.
        overrides = {**overrides, "patch_size": overrides["img_size"]}
    return dataclasses.replace(base, **overrides)


def build_model(config: ViTConfig) -> PackedViT:
    """A freshly initialised model for a full configuration (as stored in config.json)."""
    return MODEL_CLASSES[config.architecture](config)


def create_model(
    name: str, num_classes: int = 0, num_channels: int | None = None, **overrides: Any
) -> PackedViT:
    """`create_model("chadavit_moyen")`, or tiny for tests: `create_model(name, embed_dim=32, depth=2)`.

    `num_classes`: a linear classifier on the embedding (`reset_classifier`); `num_channels`: C for
    the one-channel baseline, whose embedding is C x D wide. Initialisation draws from torch's
    global generator: seed it with `torch.manual_seed` first for identical weights.
    """
    model = build_model(model_config(name, **overrides))
    if num_classes or num_channels is not None:
        model.reset_classifier(num_classes, num_channels=num_channels)
    return model
