"""chadavit: the ChAda-ViT model, its baselines and DINO pretraining."""

from chadavit._version import __version__

__all__ = ["__version__"]
