"""Safe names for sample keys and staging folders, whatever text the inputs carry.

Keys end up as tar member names and folder names: they must never contain dots (WebDataset splits
a member name at its first dot), slashes, NUL or non-ASCII, and must stay short enough for a USTAR
tar header (100 bytes for `KEY.c11.png`). Names that had to be changed get a short hash of the
original so that two different inputs never collapse onto the same key.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
# Longest part kept verbatim: two such parts leave 14 digits of image id within MAX_KEY_LENGTH.
MAX_PART_LENGTH = 36
# The contract's limit (docs/format.md): `KEY.c11.png` must fit a 100-byte USTAR name.
MAX_KEY_LENGTH = 88
KEY_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_KEY_LENGTH - 1}}}$")


class KeyTooLongError(ValueError):
    """An image id too long for its experiment's key (OMERO ids are int64; IDR's have 7 digits)."""


def safe_part(text: str) -> str:
    """`text` if it is already a short run of [A-Za-z0-9-], else a cleaned prefix plus a hash of `text`."""
    if _SAFE_PART.match(text) and len(text) <= MAX_PART_LENGTH:
        return text
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    cleaned = _UNSAFE.sub("-", text).strip("-")[: MAX_PART_LENGTH - 9].strip("-")
    return f"{cleaned}-{digest}" if cleaned else f"x-{digest}"


def experiment_name(study: str, container: str) -> str:
    """Name of an experiment's staging folder, e.g. `idr0002-heriche-condensation_screenA`."""
    return f"{safe_part(study)}_{safe_part(container)}"


def sample_key(study: str, container: str, image_id: int) -> str:
    """The sample key of the shard contract, e.g. `idr0002-heriche-condensation_screenA_1938559`."""
    if image_id < 0:
        raise ValueError(f"image id {image_id} is negative")
    key = f"{experiment_name(study, container)}_{int(image_id)}"
    # Refused, not shortened: a key is a pure function of (study, container, id) and never changes.
    if len(key) > MAX_KEY_LENGTH:
        raise KeyTooLongError(
            f"image id {image_id} gives a key of {len(key)} characters, more than {MAX_KEY_LENGTH}: {key}"
        )
    return key


def is_safe_key(key: str) -> bool:
    return bool(KEY_PATTERN.match(key))
