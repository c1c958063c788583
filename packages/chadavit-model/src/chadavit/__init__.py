"""chadavit: the ChAda-ViT model, its baselines and DINO pretraining."""

from chadavit._version import __version__
from chadavit.batch import ChannelBatch, collate
from chadavit.hub import from_pretrained, load_released_checkpoint, save_pretrained
from chadavit.models import Features, ViTConfig, create_model, list_models

__all__ = [
    "ChannelBatch",
    "Features",
    "ViTConfig",
    "__version__",
    "collate",
    "create_model",
    "from_pretrained",
    "list_models",
    "load_released_checkpoint",
    "save_pretrained",
]
