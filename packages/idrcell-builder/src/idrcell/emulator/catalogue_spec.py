"""Checks of a catalogue spec's values: each failure names the input and the field.

A spec number is an int or an inclusive [low, high] range; the draws take the study's random stream
so that a spec and a seed always give the same catalogue (see docs/emulator.md for the schema).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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
