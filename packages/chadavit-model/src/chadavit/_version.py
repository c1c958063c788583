"""The package version, read from the installed metadata (whose source is the repo's VERSION file)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chadavit-model")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
