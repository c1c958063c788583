"""chadavit_bench: downstream evaluation of channel-adaptive microscopy encoders."""

from chadavit_bench._version import __version__

__all__ = ["__version__"]
