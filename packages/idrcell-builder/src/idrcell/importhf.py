"""`idrcell import-hf`: turn the authors' published IDRCell100k layout into idrcell-v1 shards.

The published dataset stores one PNG per channel, `imgs/part_<k>/screen_<screenId>_<imageId>_<ch>.png`.
Channels are grouped by (screen, image) across all parts and kept in numeric `<ch>` order. The
screen id is mapped to its IDR study and container through IDR's study catalogue (a TSV with
`Study`, `Container`, `Internal ID`) when one is available; otherwise the study is `screen-<id>` and
the container `screen`. Everything the layout does not say (labels, imaging method, source size)
is null in the sample JSON.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from idrcell.answers import MAX_OBJECT_ID
from idrcell.dataset import (
    DatasetSummary,
    EmptyDatasetError,
    SampleSource,
    ShardLimits,
    UnusableSample,
    check_output_dir,
    current_summary,
    write_dataset,
)
from idrcell.naming import KeyTooLongError, sample_key
from idrcell.render import IMAGE_SIZE, PixelError, encode_png, open_image, resize_to_square
from idrcell.shards import Member, imported_sample_meta, sample_members

FILE_PATTERN = re.compile(r"^screen_(?P<screen>\d+)_(?P<image>\d+)_(?P<channel>\d+)\.png$")
PART_PATTERN = re.compile(r"^part_\d+$")
# The format's channel counts (docs/format.md): the trainer's channel embedding has 10 slots.
MAX_CHANNELS = 10
# The published PNGs are 224 x 224; larger ones are resized, up to this side. Anything declaring
# more is refused from its header, before decoding (a 60,000 px square would need 3.6 GB).
MAX_IMPORT_SIDE = 4096


class HFLayoutError(RuntimeError):
    """The directory is not in the published IDRCell100k layout."""


@dataclass(frozen=True)
class ImportResult:
    summary: DatasetSummary
    images: int
    ignored_files: int
    already_done: bool


def load_screen_names(tsv: Path | None = None) -> dict[int, tuple[str, str]]:
    """Screen id -> (study, container) from IDR's study catalogue (screens only: ids are per type)."""
    if tsv is not None:
        text = Path(tsv).read_text(encoding="utf-8")
    else:
        packaged = resources.files("idrcell").joinpath("data", "idr_studies.tsv")
        if not packaged.is_file():
            return {}
        text = packaged.read_text(encoding="utf-8")
    names: dict[int, tuple[str, str]] = {}
    for row in csv.DictReader(io.StringIO(text), delimiter="\t"):
        container, internal_id = (row.get("Container") or "").strip(), (row.get("Internal ID") or "").strip()
        if container.startswith("screen") and internal_id.isdigit():
            names[int(internal_id)] = ((row.get("Study") or "").strip(), container)
    return names


def _as_grey_224(path: Path, source: Path) -> bytes:
    """The PNG's bytes if already 8-bit grey 224 x 224, else a converted, resized re-encoding.

    Raises `UnusableSample` naming the file when it is no image, or declares too many pixels.
    """
    data = path.read_bytes()
    try:
        with open_image(data, MAX_IMPORT_SIDE, MAX_IMPORT_SIDE) as image:
            image.load()
            if image.format == "PNG" and image.mode == "L" and image.size == (IMAGE_SIZE, IMAGE_SIZE):
                return data
            if image.mode in ("I;16", "I;16B", "I", "F"):
                array = np.asarray(image, dtype=np.float64)
                peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
                plane = np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8)
            else:
                plane = np.asarray(image.convert("L"), dtype=np.uint8)
    except PixelError as error:
        raise UnusableSample(f"{path.relative_to(source)}: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:  # PIL's errors while decoding
        raise UnusableSample(f"{path.relative_to(source)}: undecodable ({error})") from None
    if plane.size == 0:
        raise UnusableSample(f"{path.relative_to(source)}: an image of 0 pixels")
    return encode_png(resize_to_square(plane))


def _members(key: str, meta: dict[str, Any], files: list[Path], source: Path) -> list[Member]:
    return sample_members(key, meta, [_as_grey_224(path, source) for path in files])


def _refuse(reason: str) -> list[Member]:
    raise UnusableSample(reason)


def _unusable_image(screen_id: int, image_id: int, channels: list[int]) -> str | None:
    """Why an image cannot be in an idrcell-v1 dataset whatever its pixels, or None."""
    if screen_id > MAX_OBJECT_ID or image_id > MAX_OBJECT_ID:
        return f"screen {screen_id} image {image_id}: an id above 2^63 - 1 is no OMERO id"
    if len(channels) > MAX_CHANNELS:
        return (
            f"screen {screen_id} image {image_id}: {len(channels)} channels, more than the "
            f"{MAX_CHANNELS} the format allows"
        )
    return None


def _group_files(source: Path) -> tuple[dict[tuple[int, int], list[tuple[int, Path]]], int]:
    images = source / "imgs"
    if not images.is_dir():
        raise HFLayoutError(
            f"{source} has no imgs/ folder; expected imgs/part_<k>/screen_<screen>_<image>_<ch>.png"
        )
    groups: dict[tuple[int, int], list[tuple[int, Path]]] = {}
    ignored = 0
    for part in sorted(p for p in images.iterdir() if p.is_dir()):
        if not PART_PATTERN.match(part.name):
            ignored += 1
            continue
        for path in sorted(part.iterdir()):
            match = FILE_PATTERN.match(path.name)
            if not match or not path.is_file():
                ignored += 1
                continue
            identity = (int(match["screen"]), int(match["image"]))
            groups.setdefault(identity, []).append((int(match["channel"]), path))
    if not groups:
        raise HFLayoutError(f"{images} holds no files named screen_<screen>_<image>_<ch>.png under part_<k>/")
    return groups, ignored


def import_hf(
    source: Path | str,
    out: Path | str,
    seed: int = 0,
    limits: ShardLimits = ShardLimits(),
    catalogue: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    source, out = Path(source), Path(out)
    check_output_dir(out)
    groups, ignored = _group_files(source)
    names = load_screen_names(catalogue)
    sources: list[SampleSource] = []
    listing = hashlib.sha256()
    experiments: dict[str, dict[str, str]] = {}
    for (screen_id, image_id), channel_files in sorted(groups.items()):
        channel_files.sort()
        channels = [number for number, _ in channel_files]
        if len(set(channels)) != len(channels):
            raise HFLayoutError(f"screen {screen_id} image {image_id} has two files for one channel number")
        files = [path for _, path in channel_files]
        sizes = [path.stat().st_size for path in files]
        for path, size in zip(files, sizes, strict=True):
            listing.update(f"{path.relative_to(source)}\0{size}\n".encode())
        refused = _unusable_image(screen_id, image_id, channels)
        if refused is not None:  # left out and named in dataset.json, like an unreadable PNG
            name = f"screen_{screen_id}_{image_id}"
            sources.append(SampleSource(name, 0, functools.partial(_refuse, refused)))
            continue
        study, container = names.get(screen_id, (f"screen-{screen_id}", "screen"))
        try:
            key = sample_key(study, container, image_id)
        except KeyTooLongError as error:  # named in dataset.json like the refusals above
            name = f"screen_{screen_id}_{image_id}"
            sources.append(SampleSource(name, 0, functools.partial(_refuse, str(error))))
            continue
        experiments.setdefault(f"{study}/{container}", {"study": study, "container": container})
        channels = [
            {"index": position, "label": None, "emission_wavelength": None, "window": None}
            for position in range(1, len(files) + 1)
        ]
        source_size = {"width": None, "height": None, "pixels_type": None, "z": None, "t": None}
        meta = imported_sample_meta(key, study, container, image_id, None, channels, source_size)
        read = functools.partial(_members, key, meta, files, source)
        sources.append(SampleSource(key, sum(sizes) + 1024, read))
    listing.update(json.dumps(sorted(names.items())).encode())
    fingerprint = hashlib.sha256(
        json.dumps({"seed": seed, "limits": limits.__dict__, "files": listing.hexdigest()}).encode()
    ).hexdigest()
    summary = current_summary(out, fingerprint)
    if summary is not None:
        return ImportResult(summary, len(groups), ignored, already_done=True)
    metadata = {
        "experiments": [experiments[name] for name in sorted(experiments)],
        "imported_from": {
            "layout": "IDRCell100k imgs/part_<k>/",
            "images": len(groups),
            "ignored_files": ignored,
        },
    }
    try:
        summary = write_dataset(
            out,
            sources,
            seed=seed,
            limits=limits,
            fingerprint=fingerprint,
            metadata=metadata,
            progress=progress,
        )
    except EmptyDatasetError as error:
        raise HFLayoutError(f"{source}: nothing to import: {error}") from None
    return ImportResult(summary, len(groups), ignored, already_done=False)
