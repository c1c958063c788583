"""idrcell: rebuild an IDRCell100k-style dataset from the Image Data Resource into WebDataset shards."""

from idrcell._version import __version__

__all__ = ["__version__"]
