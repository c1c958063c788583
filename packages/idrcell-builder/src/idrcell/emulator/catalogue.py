"""The emulator's catalogue: screens, projects, plates, wells, datasets and images, built from a spec.

A spec is a JSON document (schema in docs/emulator.md); the builtin catalogues "tiny", "demo" and
"hostile" are such documents shipped in `idrcell/emulator/catalogues/`. The catalogue is three ideas
in three modules: the data model (catalogue_model.py), the spec checks (catalogue_spec.py) and the
generation (catalogue_build.py); this module loads a spec by name or path and re-exports them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from idrcell.emulator.catalogue_build import build_catalogue
from idrcell.emulator.catalogue_model import (
    PIXEL_TYPES,
    STRUCTURES,
    STUDY_INFO_NS,
    Catalogue,
    Channel,
    Container,
    Dataset,
    Image,
    Plate,
    Well,
    WellSample,
)
from idrcell.emulator.catalogue_spec import SCHEMA, CatalogueSpecError

__all__ = [
    "BUILTIN_CATALOGUES",
    "PIXEL_TYPES",
    "SCHEMA",
    "STRUCTURES",
    "STUDY_INFO_NS",
    "Catalogue",
    "CatalogueSpecError",
    "Channel",
    "Container",
    "Dataset",
    "Image",
    "Plate",
    "Well",
    "WellSample",
    "build_catalogue",
    "load_catalogue",
]

BUILTIN_CATALOGUES: tuple[str, ...] = ("tiny", "demo", "hostile")


def load_catalogue(spec: str | os.PathLike[str] | Mapping[str, Any], seed: int = 0) -> Catalogue:
    """Build a catalogue from a builtin name ("tiny", "demo", "hostile"), a JSON spec path or a dict."""
    if isinstance(spec, Mapping):
        return build_catalogue(spec, seed=seed, source="<dict>")
    text_spec = os.fspath(spec)
    if text_spec in BUILTIN_CATALOGUES:
        text = (
            resources.files("idrcell.emulator")
            .joinpath("catalogues")
            .joinpath(f"{text_spec}.json")
            .read_text("utf-8")
        )
        return build_catalogue(json.loads(text), seed=seed, source=f"builtin catalogue {text_spec!r}")
    path = Path(text_spec)
    if not path.is_file():
        raise CatalogueSpecError(
            f"catalogue {text_spec!r} is neither a builtin ({', '.join(BUILTIN_CATALOGUES)}) nor a JSON file"
        )
    try:
        data = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise CatalogueSpecError(f"catalogue file {path} is not valid JSON: {error}") from error
    return build_catalogue(data, seed=seed, source=str(path))
