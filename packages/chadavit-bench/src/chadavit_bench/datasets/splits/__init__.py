"""Reference train/val splits shipped with the package (the ChAda-ViT authors' CSV files, unchanged)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def reference_split(dataset: str, filename: str) -> Path:
    """Path of a packaged split CSV, e.g. `reference_split("cyclops", "train.csv")`."""
    path = resources.files(__package__).joinpath(dataset, filename)
    return Path(str(path))
