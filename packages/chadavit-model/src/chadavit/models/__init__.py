"""Model definitions: ChAda-ViT, its released variant and the paper's baselines."""

from chadavit.models.base import Features, PackedViT
from chadavit.models.baselines import InterChannelViT, OneChannelViT
from chadavit.models.chadavit import ChAdaViT
from chadavit.models.config import ViTConfig
from chadavit.models.registry import build_model, create_model, list_models, model_config

__all__ = [
    "ChAdaViT",
    "Features",
    "InterChannelViT",
    "OneChannelViT",
    "PackedViT",
    "ViTConfig",
    "build_model",
    "create_model",
    "list_models",
    "model_config",
]
