"""chadavit: the ChAda-ViT model, its baselines and DINO pretraining."""

from chadavit import channels  # chadavit.channels: raw channel labels -> canonical names
from chadavit._version import __version__
from chadavit.batch import ChannelBatch, NamedImage, collate
from chadavit.hub import from_pretrained, load_released_checkpoint, save_pretrained
from chadavit.models import Features, ViTConfig, create_model, list_models

# The function, not the module, is `chadavit.preprocess` (import the module's other names from here).
from chadavit.preprocess import InputContract, Window, fit_window, input_contract, preprocess

__all__ = [
    "ChannelBatch",
    "Features",
    "InputContract",
    "NamedImage",
    "ViTConfig",
    "Window",
    "__version__",
    "channels",
    "collate",
    "create_model",
    "fit_window",
    "from_pretrained",
    "input_contract",
    "list_models",
    "load_released_checkpoint",
    "preprocess",
    "save_pretrained",
]
