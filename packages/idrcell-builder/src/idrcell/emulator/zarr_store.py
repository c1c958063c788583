"""The emulator's OME-Zarr copies: the object store the IDR moved its pixels to in 2026.

Every converted study (`zarr` in the catalogue spec) gets one store per plate (HCS layout:
plate/row/column/field/level) or per project image, laid out like the IDR's bucket
(docs/idr-api.md, "OME-Zarr (2026)"):

- OME-NGFF 0.4 (zarr v2): `v0.4/<study id><container letter>/<plate or image id>.zarr`
- OME-NGFF 0.5 (zarr v3): `v0.5/<study id>/<plate name>.ome.zarr` (naming "name") or
  `v0.5/<study id>/<id>.zarr` (naming "id", and always for project images)

Files are produced on request and never stored: metadata is a few JSON documents, and a chunk is a
256 x 256 tile of one plane of one pyramid level, cut from the same synthesised planes the classic
routes render (pixels.py), so a sample read from Zarr can be compared with one rendered as JPEG.
Level k+1 is the 2 x 2 block mean of level k; images with more than one timepoint use `tczyx`
axes, the others `czyx`, as the IDR's stores differ per image.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import numcodecs
import numpy as np

from idrcell.emulator.catalogue_model import Catalogue, Container, Image, Plate, ZarrSettings
from idrcell.emulator.pixels import PlaneCache

CHUNK = 256  # tile side of a chunk, in pixels
MAX_LEVELS = 5
MIN_LEVEL_SIDE = 32  # no level whose short side is below this
_DTYPES = {"uint8": np.dtype("uint8"), "uint16": np.dtype("<u2"), "float": np.dtype("<f4")}
_V3_TYPES = {"uint8": "uint8", "uint16": "uint16", "float": "float32"}
_BLOSC = {"cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
_ZLIB_LEVEL = 6


def study_folder(container: Container, version: str) -> str:
    """`idr0901A` for v0.4 (study id + container letter), `idr0901` for v0.5, as the IDR names them."""
    study_id = container.study.split("-")[0]
    return f"{study_id}{container.container[-1].upper()}" if version == "0.4" else study_id


def level_shapes(image: Image) -> list[tuple[int, int]]:
    """(height, width) of each pyramid level: halved (floor) while the short side stays >= 32 px."""
    shapes = [(image.height, image.width)]
    while len(shapes) < MAX_LEVELS:
        height, width = shapes[-1][0] // 2, shapes[-1][1] // 2
        if min(height, width) < MIN_LEVEL_SIDE:
            break
        shapes.append((height, width))
    return shapes


def downsample(plane: np.ndarray) -> np.ndarray:
    """The 2 x 2 block mean (a trailing odd row or column is dropped), in the plane's dtype."""
    height, width = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
    blocks = plane[:height, :width].astype(np.float64).reshape(height // 2, 2, width // 2, 2)
    mean = blocks.mean(axis=(1, 3))
    if np.issubdtype(plane.dtype, np.integer):
        return np.rint(mean).astype(plane.dtype)
    return mean.astype(plane.dtype)


@dataclass(frozen=True)
class _Node:
    """What a store path under a root points at: a plate, a well, or an image's multiscales."""

    kind: str  # "plate" | "row" | "well" | "image"
    settings: ZarrSettings
    plate: Plate | None = None
    row: int | None = None
    column: int | None = None
    image: Image | None = None


class ZarrTree:
    """Answers GETs of store files (`get`) and S3-style listings (`list`) for one catalogue."""

    def __init__(self, catalogue: Catalogue, planes: PlaneCache, level_cache_bytes: int = 64 * 2**20) -> None:
        self.catalogue = catalogue
        self.planes = planes
        self.roots: dict[str, _Node] = {}  # "v0.4/idr0901A/10001.zarr" -> node
        for container in catalogue.containers:
            settings = container.zarr
            if settings is None:
                continue
            folder = f"v{settings.version}/{study_folder(container, settings.version)}"
            if container.kind == "screen":
                for plate_id in container.child_ids:
                    plate = catalogue.plates[plate_id]
                    name = f"{plate.name}.ome.zarr" if settings.naming == "name" else f"{plate.id}.zarr"
                    self.roots[f"{folder}/{name}"] = _Node("plate", settings, plate=plate)
            else:
                for image in catalogue.container_images(container):
                    if image.width and image.height and not image.forbidden:
                        self.roots[f"{folder}/{image.id}.zarr"] = _Node("image", settings, image=image)
        self._levels: OrderedDict[tuple[int, int, int, int, int], np.ndarray] = OrderedDict()
        self._level_bytes = 0
        self._level_cache_bytes = level_cache_bytes
        self._lock = threading.Lock()

    # ---- the object store's routes -------------------------------------------------------------
    def get(self, path: str) -> bytes | None:
        """The bytes of the file at `path` (relative to the zarr base URL), or None (404)."""
        for root, node in self.roots.items():
            if path.startswith(root + "/"):
                return self._file(node, path[len(root) + 1 :].split("/"))
        return None

    def list(self, prefix: str) -> tuple[list[str], list[str]]:
        """Keys and common prefixes one level below `prefix` (delimiter "/"), like ListObjectsV2."""
        folders: set[str] = set()
        for root in self.roots:
            if root.startswith(prefix):
                head = root[len(prefix) :].split("/", 1)[0]
                folders.add(prefix + head + "/")
        return [], sorted(folders)

    # ---- node resolution -------------------------------------------------------------------------
    def _file(self, node: _Node, parts: list[str]) -> bytes | None:
        v3 = node.settings.version == "0.5"
        if node.kind == "plate":
            assert node.plate is not None
            return self._plate_file(node, node.plate, parts, v3)
        assert node.image is not None
        return self._image_file(node.settings, node.image, parts, v3)

    def _plate_file(self, node: _Node, plate: Plate, parts: list[str], v3: bool) -> bytes | None:
        if len(parts) == 1:
            return self._group_file(parts[0], v3, self._plate_attrs(plate, node.settings))
        rows = {_row_name(row): row for row in range(plate.rows)}
        row = rows.get(parts[0])
        if row is None:
            return None
        if len(parts) == 2:
            return self._group_file(parts[1], v3, {})
        well = next((w for w in plate.wells if w.row == row and str(w.column + 1) == parts[1]), None)
        if well is None or not well.samples:
            return None
        if len(parts) == 3:
            images = [{"path": str(s.field_index), "acquisition": 0} for s in well.samples]
            attrs = {"well": {"images": images, **({} if v3 else {"version": "0.4"})}}
            return self._group_file(parts[2], v3, attrs)
        sample = next((s for s in well.samples if str(s.field_index) == parts[2]), None)
        if sample is None:
            return None
        image = self.catalogue.images[sample.image_id]
        if not image.width or not image.height:
            return None
        return self._image_file(node.settings, image, parts[3:], v3)

    def _image_file(self, settings: ZarrSettings, image: Image, parts: list[str], v3: bool) -> bytes | None:
        if len(parts) == 1:
            return self._group_file(parts[0], v3, self._image_attrs(image, v3))
        shapes = level_shapes(image)
        if not parts[0].isdigit() or int(parts[0]) >= len(shapes):
            return None
        level = int(parts[0])
        meta_name = "zarr.json" if v3 else ".zarray"
        if len(parts) == 2 and parts[1] == meta_name:
            return _json(self._array_meta(settings, image, shapes[level], v3))
        chunk_parts = parts[1:]
        if v3:
            if chunk_parts[:1] != ["c"]:
                return None
            chunk_parts = chunk_parts[1:]
        return self._chunk(settings, image, level, shapes[level], chunk_parts)

    @staticmethod
    def _group_file(name: str, v3: bool, attrs: dict[str, Any]) -> bytes | None:
        if v3:
            if name != "zarr.json":
                return None
            ome = {"version": "0.5", **attrs} if attrs else {}
            return _json({"zarr_format": 3, "node_type": "group", "attributes": {"ome": ome} if ome else {}})
        if name == ".zgroup":
            return _json({"zarr_format": 2})
        if name == ".zattrs":
            return _json(attrs)
        return None

    # ---- metadata -----------------------------------------------------------------------------
    def _plate_attrs(self, plate: Plate, settings: ZarrSettings) -> dict[str, Any]:
        wells = [w for w in plate.wells if w.samples]
        plate_json: dict[str, Any] = {
            "name": plate.name,
            "rows": [{"name": _row_name(row)} for row in range(plate.rows)],
            "columns": [{"name": str(column + 1)} for column in range(plate.columns)],
            "wells": [
                {"path": f"{_row_name(w.row)}/{w.column + 1}", "rowIndex": w.row, "columnIndex": w.column}
                for w in wells
            ],
            "field_count": max((len(w.samples) for w in wells), default=0),
            "acquisitions": [{"id": 0}],
        }
        if settings.version == "0.4":
            plate_json["version"] = "0.4"
        return {"plate": plate_json}

    def _image_attrs(self, image: Image, v3: bool) -> dict[str, Any]:
        axes = [
            {"name": "c", "type": "channel"},
            {"name": "z", "type": "space", "unit": "micrometer"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ]
        if image.size_t > 1:
            axes.insert(0, {"name": "t", "type": "time", "unit": "second"})
        size = image.pixel_size_um or 1.0
        datasets = []
        for level in range(len(level_shapes(image))):
            spatial = [1.0, size * 2**level, size * 2**level]
            scale = [1.0] * (len(axes) - 3) + spatial
            datasets.append(
                {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
            )
        multiscale: dict[str, Any] = {"name": image.name, "axes": axes, "datasets": datasets}
        if not v3:
            multiscale["version"] = "0.4"
        omero = {
            "name": image.name,
            "channels": [
                {
                    "label": channel.label,
                    "color": channel.color,
                    "active": True,
                    "coefficient": 1.0,
                    "family": "linear",
                    "inverted": False,
                    "window": {
                        "min": channel.window_min,
                        "max": channel.window_max,
                        "start": channel.window_start,
                        "end": channel.window_end,
                    },
                }
                for channel in image.channels
            ],
            "rdefs": {
                "defaultZ": image.default_z,
                "defaultT": image.default_t,
                "model": "greyscale" if image.size_c == 1 else "color",
            },
        }
        return {"multiscales": [multiscale], "omero": omero}

    def _array_shape(self, image: Image, shape: tuple[int, int]) -> tuple[list[int], list[int], list[str]]:
        names = ["c", "z", "y", "x"]
        dims = [image.size_c, image.size_z, shape[0], shape[1]]
        chunks = [1, 1, CHUNK, CHUNK]
        if image.size_t > 1:
            names, dims, chunks = ["t", *names], [image.size_t, *dims], [1, *chunks]
        return dims, chunks, names

    def _array_meta(
        self, settings: ZarrSettings, image: Image, shape: tuple[int, int], v3: bool
    ) -> dict[str, Any]:
        dims, chunks, names = self._array_shape(image, shape)
        dtype = _DTYPES[image.pixels_type]
        if not v3:
            compressor = (
                {"id": "blosc", **_BLOSC}
                if settings.compressor == "blosc"
                else {"id": "zlib", "level": _ZLIB_LEVEL}
            )
            return {
                "zarr_format": 2,
                "shape": dims,
                "chunks": chunks,
                "dtype": dtype.str,
                "compressor": compressor,
                "fill_value": 0,
                "filters": None,
                "order": "C",
                "dimension_separator": "/",
            }
        if settings.compressor == "blosc":
            shuffle = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}[_BLOSC["shuffle"]]
            codec = {
                "name": "blosc",
                "configuration": {**_BLOSC, "shuffle": shuffle, "typesize": dtype.itemsize},
            }
        else:
            codec = {"name": "gzip", "configuration": {"level": _ZLIB_LEVEL}}
        return {
            "zarr_format": 3,
            "node_type": "array",
            "shape": dims,
            "data_type": _V3_TYPES[image.pixels_type],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, codec],
            "dimension_names": names,
            "attributes": {},
        }

    # ---- pixels ---------------------------------------------------------------------------------
    def level_plane(self, image: Image, channel: int, z: int, t: int, level: int) -> np.ndarray:
        """One plane of one pyramid level (level 0 is the plane the classic routes render)."""
        if level == 0:
            return self.planes.plane(image, channel, z, t)
        key = (image.id, channel, z, t, level)
        with self._lock:
            cached = self._levels.get(key)
            if cached is not None:
                self._levels.move_to_end(key)
                return cached
        plane = downsample(self.level_plane(image, channel, z, t, level - 1))
        with self._lock:
            if key not in self._levels:
                self._levels[key] = plane
                self._level_bytes += plane.nbytes
            while self._level_bytes > self._level_cache_bytes and len(self._levels) > 1:
                _, evicted = self._levels.popitem(last=False)
                self._level_bytes -= evicted.nbytes
        return plane

    def _chunk(
        self, settings: ZarrSettings, image: Image, level: int, shape: tuple[int, int], parts: list[str]
    ) -> bytes | None:
        dims, chunks, _ = self._array_shape(image, shape)
        if len(parts) != len(dims) or not all(p.isdigit() for p in parts):
            return None
        index = [int(p) for p in parts]
        if any(i * c >= d for i, c, d in zip(index, chunks, dims, strict=True)):
            return None
        if image.size_t == 1:
            index = [0, *index]
        t, c, z, tile_y, tile_x = index
        plane = self.level_plane(image, c, z, t, level)
        tile = np.zeros((CHUNK, CHUNK), dtype=_DTYPES[image.pixels_type])  # edge chunks are padded
        part = plane[tile_y * CHUNK : (tile_y + 1) * CHUNK, tile_x * CHUNK : (tile_x + 1) * CHUNK]
        tile[: part.shape[0], : part.shape[1]] = part
        raw = np.ascontiguousarray(tile)
        if settings.compressor == "blosc":
            return bytes(numcodecs.Blosc(**_BLOSC).encode(raw))
        if settings.version == "0.5":
            return bytes(numcodecs.GZip(level=_ZLIB_LEVEL).encode(raw))
        return bytes(numcodecs.Zlib(level=_ZLIB_LEVEL).encode(raw))


def list_bucket_xml(bucket: str, prefix: str, keys: list[str], folders: list[str]) -> str:
    """An S3 ListObjectsV2 answer (the subset a client reading CommonPrefixes needs)."""
    items = "".join(f"<Contents><Key>{escape(key)}</Key></Contents>" for key in keys)
    items += "".join(f"<CommonPrefixes><Prefix>{escape(f)}</Prefix></CommonPrefixes>" for f in folders)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix><Delimiter>/</Delimiter>"
        f"<KeyCount>{len(keys) + len(folders)}</KeyCount><IsTruncated>false</IsTruncated>{items}"
        "</ListBucketResult>"
    )


def _row_name(row: int) -> str:
    letters, value = "", row
    while True:
        letters = chr(ord("A") + value % 26) + letters
        value = value // 26 - 1
        if value < 0:
            return letters


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=1).encode()
