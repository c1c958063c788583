"""Checks of a catalogue spec's values: each failure names the input and the field.

A spec number is an int or an inclusive [low, high] range; the draws take the study's random stream
so that a spec and a seed always give the same catalogue (see docs/emulator.md for the schema).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from idrcell.emulator.catalogue_model import ZARR_COMPRESSORS, ZARR_VERSIONS, ZarrSettings

SCHEMA = "idrcell-emulator-catalogue-v1"
# The plane limit of OMERO.server (omero.pixeldata.max_plane_width/height); docs/idr-api.md: about 3,000 px.
DEFAULT_PLANE_LIMIT = 3000
DEFAULT_ANNOTATIONS: tuple[tuple[str, str], ...] = (
    ("Sample Type", "cell"),
    ("Organism", "Homo sapiens"),
    ("Imaging Method", "fluorescence microscopy"),
)


class CatalogueSpecError(ValueError):
    """A catalogue spec the emulator cannot build; the message names the input and the field."""


def container_kind(study: Mapping[str, Any], source: str, index: int) -> str:
    container = study.get("container")
    if not isinstance(container, str) or not container.startswith(("screen", "experiment")):
        raise CatalogueSpecError(
            f"{source}: studies[{index}].container must start with 'screen' or 'experiment', "
            f"got {container!r}"
        )
    return "screen" if container.startswith("screen") else "project"


def spec_int(value: Any, source: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CatalogueSpecError(f"{source}: {where} must be an integer, got {value!r}")
    return value


def draw_int(rng: np.random.Generator, value: Any, source: str, where: str, minimum: int = 0) -> int:
    """A spec number is either an int or an inclusive [low, high] range drawn uniformly."""
    if isinstance(value, list) and len(value) == 2:
        low, high = (spec_int(v, source, where) for v in value)
        if low > high:
            raise CatalogueSpecError(f"{source}: {where} range [{low}, {high}] is empty")
        drawn = int(rng.integers(low, high + 1))
    else:
        drawn = spec_int(value, source, where)
    if drawn < minimum:
        raise CatalogueSpecError(f"{source}: {where} must be at least {minimum}, got {drawn}")
    return drawn


def draw_choice(rng: np.random.Generator, value: Any, allowed: Sequence[str], source: str, where: str) -> str:
    options = value if isinstance(value, list) else [value]
    for option in options:
        if option not in allowed:
            raise CatalogueSpecError(f"{source}: {where} must be one of {', '.join(allowed)}, got {option!r}")
    return str(options[int(rng.integers(len(options)))])


def spec_annotations(study: Mapping[str, Any], source: str, index: int) -> tuple[tuple[str, str], ...]:
    raw = study.get("annotations", [list(pair) for pair in DEFAULT_ANNOTATIONS])
    if not isinstance(raw, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair) for pair in raw
    ):
        raise CatalogueSpecError(
            f"{source}: studies[{index}].annotations must be a list of [key, value] strings"
        )
    return tuple((key, value) for key, value in raw)


def spec_zarr(study: Mapping[str, Any], source: str, index: int) -> ZarrSettings | None:
    """A study's OME-Zarr copy: `false` for none; by default v0.4 and v0.5 alternate between studies,
    and so do blosc and zlib (every third study), so that a small catalogue holds every kind."""
    raw = study.get("zarr", {})
    if raw is False or raw is None:
        return None
    where = f"{source}: studies[{index}].zarr"
    if not isinstance(raw, Mapping):
        raise CatalogueSpecError(f"{where} must be an object or false, got {raw!r}")
    unknown = sorted(set(raw) - {"version", "compressor", "naming"})
    if unknown:
        raise CatalogueSpecError(f"{where} has unknown keys {', '.join(unknown)}")
    version = raw.get("version", "0.5" if index % 2 else "0.4")
    compressor = raw.get("compressor", "zlib" if index % 3 == 2 else "blosc")
    naming = raw.get("naming", "name" if version == "0.5" else "id")
    for key, value, allowed in (
        ("version", version, ZARR_VERSIONS),
        ("compressor", compressor, ZARR_COMPRESSORS),
        ("naming", naming, ("id", "name")),
    ):
        if value not in allowed:
            raise CatalogueSpecError(f"{where}.{key} must be one of {', '.join(allowed)}, got {value!r}")
    return ZarrSettings(version=str(version), compressor=str(compressor), naming=str(naming))
