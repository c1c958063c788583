"""Pixels that look like fluorescence microscopy, synthesised lazily per plane.

Every image gets a field of cells (centres, radii, irregular outlines) seeded by (catalogue seed,
image id, timepoint), or, in a study whose `cell_layout` is "single", one cell near the centre, as in
the single-cell crops that profiling datasets publish; each channel draws a different structure of
those same cells: nuclei,
cytoplasm, puncta (organelles), membranes, filaments, or a bright-field-like texture. The
`real_cell` / `real_nuclei` structures crop real microscopy shipped with scikit-image
(`data.cell()`, `data.human_mitosis()`) when it loads offline, and fall back to the synthetic
bright-field / nuclei structures otherwise. Planes are produced on request and kept in a bounded
LRU cache, so a catalogue of any size costs no memory until it is rendered.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import draw, transform

from idrcell.emulator.catalogue import Channel, Image
from idrcell.emulator.catalogue_model import COMPARTMENTS

logger = logging.getLogger(__name__)

_NUMPY_TYPES = {"uint8": np.uint8, "uint16": np.uint16, "float": np.float32}


@dataclass(frozen=True)
class CellField:
    """The cells of one image at one timepoint; every channel renders the same cells."""

    labels: np.ndarray  # int32 (H, W): index of the nearest cell centre
    radial: np.ndarray  # float32 (H, W): distance to that centre in units of the cell radius
    centres: np.ndarray  # (N, 2) row, column
    radii: np.ndarray  # (N,) cell radius in pixels
    nucleus_ratio: np.ndarray  # (N,) nucleus radius / cell radius
    brightness: np.ndarray  # (N, 4) per-cell expression levels for the fluorescent structures
    # Pixels per unit of fine structure (spot and fibre widths, blur, texture): 1 in a field of cells,
    # larger for a single cell filling the image, so that its organelles keep their size relative to it.
    scale: float = 1.0


# The mean cell radius of a field (px), against which a single cell's fine structure is scaled.
FIELD_CELL_RADIUS = 22.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-spread noise with structure at the scale `sigma` (computed coarse, then zoomed)."""
    step = max(1, int(sigma // 2))
    coarse_shape = (max(2, -(-shape[0] // step)), max(2, -(-shape[1] // step)))
    coarse = ndimage.gaussian_filter(
        rng.standard_normal(coarse_shape, dtype=np.float32), sigma / step, truncate=3.0
    )
    coarse /= coarse.std() + 1e-6
    if step == 1:
        return coarse[: shape[0], : shape[1]]
    zoomed = transform.resize(coarse, (coarse_shape[0] * step, coarse_shape[1] * step), order=1, mode="edge")
    return zoomed[: shape[0], : shape[1]].astype(np.float32)


def cell_field(image: Image, seed: int, t: int) -> CellField:
    """Lay out the cells of `image` at timepoint `t` (cells drift a little between timepoints)."""
    rng = np.random.default_rng([seed, image.id, 0xCE11])
    height, width = image.height, image.width
    if image.cell_layout == "single":
        return _single_cell(rng, height, width)
    mean_radius = float(rng.uniform(14.0, 30.0))
    density = float(rng.uniform(0.25, 0.6))
    count = max(1, int(density * width * height / (np.pi * mean_radius**2)))
    centres = rng.uniform([0, 0], [height, width], size=(count, 2))
    centres += t * rng.normal(0.0, 0.15 * mean_radius, size=(count, 2))  # motion between frames
    radii = mean_radius * rng.uniform(0.7, 1.3, size=count)
    nucleus_ratio = rng.uniform(0.35, 0.55, size=count)
    brightness = rng.uniform(0.35, 1.0, size=(count, 4))
    seeds = np.ones((height, width), dtype=bool)
    rows = np.clip(centres[:, 0].astype(int), 0, height - 1)
    cols = np.clip(centres[:, 1].astype(int), 0, width - 1)
    seeds[rows, cols] = False
    distance, (nearest_row, nearest_col) = ndimage.distance_transform_edt(seeds, return_indices=True)
    index_map = np.full((height, width), -1, dtype=np.int32)
    index_map[rows, cols] = np.arange(count, dtype=np.int32)
    labels = index_map[nearest_row, nearest_col]
    # Irregular outlines: warp the radial distance by smooth noise.
    warp = 1.0 + 0.12 * _smooth_noise(rng, (height, width), sigma=mean_radius / 2)
    radial = (distance / radii[labels] * warp).astype(np.float32)
    return CellField(labels, radial, centres, radii, nucleus_ratio, brightness)


def _single_cell(rng: np.random.Generator, height: int, width: int) -> CellField:
    """One cell, its centre within +-8 % of the image's, its radius about a third of the shorter side."""
    side = min(height, width)
    centre = np.array([height / 2, width / 2]) + rng.uniform(-0.08, 0.08, size=2) * side
    radius = float(rng.uniform(0.28, 0.36)) * side
    scale = radius / FIELD_CELL_RADIUS
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot(rows - centre[0], cols - centre[1])
    # An irregular, slightly elongated outline: an ellipse at a random angle, warped by smooth noise.
    angle = rng.uniform(0, np.pi)
    along = ((rows - centre[0]) * np.sin(angle) + (cols - centre[1]) * np.cos(angle)) / max(distance.max(), 1)
    warp = (1.0 + 0.12 * _smooth_noise(rng, (height, width), sigma=radius / 2)) * (
        1.0 + 0.25 * rng.uniform() * along**2
    )
    radial = (distance / radius * warp).astype(np.float32)
    return CellField(
        labels=np.zeros((height, width), dtype=np.int32),
        radial=radial,
        centres=centre[None, :],
        radii=np.array([radius]),
        nucleus_ratio=rng.uniform(0.35, 0.55, size=1),
        brightness=rng.uniform(0.35, 1.0, size=(1, 4)),
        scale=scale,
    )


def _soft_step(x: np.ndarray, edge: float) -> np.ndarray:
    """1 inside (x < 0), 0 outside, with a soft edge `edge` wide."""
    return np.clip(0.5 - x / edge, 0.0, 1.0)


def _structure_signal(structure: str, cells: CellField, rng: np.random.Generator) -> np.ndarray:
    """A float32 (H, W) signal in about [0, 1] for one kind of structure."""
    labels, radial, scale = cells.labels, cells.radial, cells.scale
    shape = labels.shape
    texture = 1.0 + 0.25 * _smooth_noise(rng, shape, sigma=1.5 * scale)
    if structure == "nuclei":
        nucleus = _soft_step(radial - cells.nucleus_ratio[labels], 0.12)
        chromatin = 1.0 + 0.35 * _smooth_noise(rng, shape, sigma=2.5 * scale)
        signal = nucleus * cells.brightness[labels, 0] * chromatin * texture
        return ndimage.gaussian_filter(signal, 1.0 * scale)
    if structure == "cytoplasm":
        body = _soft_step(radial - 1.0, 0.25) * (0.55 + 0.45 * np.exp(-(radial**2)))
        nucleus = _soft_step(radial - cells.nucleus_ratio[labels], 0.1)
        signal = body * (1.0 - 0.45 * nucleus) * cells.brightness[labels, 1] * texture
        return ndimage.gaussian_filter(signal, 1.5 * scale)
    if structure == "puncta":
        spots = np.zeros(shape, dtype=np.float32)
        per_cell = rng.integers(4, 16, size=len(cells.radii))
        owner = np.repeat(np.arange(len(cells.radii)), per_cell)
        angle = rng.uniform(0, 2 * np.pi, size=owner.size)
        reach = cells.radii[owner] * np.sqrt(rng.uniform(0.05, 0.8, size=owner.size))
        rows = np.clip((cells.centres[owner, 0] + reach * np.sin(angle)).astype(int), 0, shape[0] - 1)
        cols = np.clip((cells.centres[owner, 1] + reach * np.cos(angle)).astype(int), 0, shape[1] - 1)
        np.add.at(spots, (rows, cols), rng.uniform(0.5, 1.0, size=owner.size).astype(np.float32))
        # Unit peak height per spot, then brighter than diffuse stains: organelles are compact and bright.
        width = 1.3 * scale
        signal = ndimage.gaussian_filter(spots, width) * (2 * np.pi * width**2)
        return 1.8 * signal * cells.brightness[labels, 2] + 0.08 * _soft_step(radial - 1.0, 0.3)
    if structure == "membrane":
        outline = np.exp(-(((radial - 1.0) / 0.08) ** 2))
        borders = np.zeros(shape, dtype=np.float32)
        borders[:-1, :] += (labels[:-1, :] != labels[1:, :]) & (radial[:-1, :] < 1.1)
        borders[:, :-1] += (labels[:, :-1] != labels[:, 1:]) & (radial[:, :-1] < 1.1)
        signal = (outline + np.clip(borders, 0, 1)) * cells.brightness[labels, 3] * texture
        return ndimage.gaussian_filter(signal, 1.0 * scale)
    if structure == "filaments":
        lines = np.zeros(shape, dtype=np.float32)
        for index in range(len(cells.radii)):
            for _ in range(int(rng.integers(3, 8))):
                angle = rng.uniform(0, np.pi)
                offset = rng.uniform(-0.6, 0.6) * cells.radii[index]
                half = cells.radii[index] * 0.9
                centre = cells.centres[index] + offset * np.array([np.cos(angle), -np.sin(angle)])
                delta = half * np.array([np.sin(angle), np.cos(angle)])
                r0, c0 = (centre - delta).astype(int)
                r1, c1 = (centre + delta).astype(int)
                rr, cc, value = draw.line_aa(r0, c0, r1, c1)
                keep = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
                lines[rr[keep], cc[keep]] += value[keep] * cells.brightness[index, 1]
        if scale > 1:  # one-pixel lines widened to the scaled fibre width, at the same peak height
            lines = ndimage.gaussian_filter(lines, 0.8 * (scale - 1)) * (0.8 * (scale - 1) * 2.5 + 1)
        cortex = 0.3 * np.exp(-(((radial - 0.95) / 0.1) ** 2))
        inside = _soft_step(radial - 1.0, 0.15)  # fibres end at the cell's edge
        return ndimage.gaussian_filter(np.clip(lines, 0, 1.5) * inside + cortex, 0.8)
    if structure == "centrosomes":
        # Two compact bodies on either side of the nucleus, on an axis drawn per cell.
        bodies = np.zeros(shape, dtype=np.float32)
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        for index, (centre, radius) in enumerate(zip(cells.centres, cells.radii, strict=True)):
            angle = rng.uniform(0, np.pi)
            offset = 0.55 * radius * np.array([np.sin(angle), np.cos(angle)])
            for body in (centre + offset, centre - offset):
                distance = np.hypot(rows - body[0], cols - body[1]) / (0.28 * radius)
                bodies = np.maximum(bodies, _soft_step(distance - 1.0, 0.4) * cells.brightness[index, 2])
        return ndimage.gaussian_filter(bodies * texture, 0.8 * scale) + 0.06 * _soft_step(radial - 1.0, 0.3)
    if structure == "stress_fibres":
        # Parallel bundles across each cell at one angle per cell, as actin stress fibres lie.
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        angles = rng.uniform(0, np.pi, size=len(cells.radii))[labels]
        rows = rows - cells.centres[labels, 0]
        cols = cols - cells.centres[labels, 1]
        along = rows * np.sin(angles) + cols * np.cos(angles)  # across the bundles
        period = 0.6 * cells.radii[labels]
        fibres = (0.5 * (1.0 + np.cos(2 * np.pi * along / period))) ** 3
        inside = _soft_step(radial - 0.9, 0.15)
        return ndimage.gaussian_filter(fibres * inside * cells.brightness[labels, 1] * texture, 0.6 * scale)
    # Bright-field: grey background, dark-and-bright rims around cells, a faint nucleus.
    mask = ndimage.gaussian_filter(_soft_step(radial - 1.0, 0.2), 2.0 * scale)
    rim = (np.gradient(mask, axis=0) + np.gradient(mask, axis=1)) * scale
    nucleus = _soft_step(radial - cells.nucleus_ratio[labels], 0.15)
    background = 0.5 + 0.05 * _smooth_noise(rng, shape, sigma=40.0)
    return background - 0.08 * mask - 0.06 * nucleus + 2.5 * rim + 0.03 * (texture - 1.0)


@functools.cache
def _real_source(name: str) -> np.ndarray | None:
    """A real microscopy image from scikit-image's bundled data, as float32 in [0, 1], or None offline."""
    try:
        from skimage import data

        picture = getattr(data, name)()
    except Exception as error:  # a missing optional download (pooch) or file: fall back silently
        logger.debug(
            "scikit-image data.%s is not available offline (%s); using synthetic pixels", name, error
        )
        return None
    picture = np.asarray(picture, dtype=np.float32)
    if picture.ndim == 3:
        picture = picture.mean(axis=-1)
    low, high = np.percentile(picture, [0.5, 99.8])
    return np.clip((picture - low) / max(high - low, 1e-6), 0.0, 1.0)


def _real_signal(name: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray | None:
    """A random crop of a real image (reflect-tiled and flipped), resized to `shape`."""
    picture = _real_source(name)
    if picture is None:
        return None
    scale = float(rng.uniform(0.6, 1.4))
    crop_h = min(picture.shape[0], max(8, int(shape[0] / scale)))
    crop_w = min(picture.shape[1], max(8, int(shape[1] / scale)))
    if crop_h >= shape[0] * 4 or crop_w >= shape[1] * 4:  # tiny targets: crop close to the target size
        crop_h, crop_w = min(picture.shape[0], shape[0]), min(picture.shape[1], shape[1])
    top = int(rng.integers(0, picture.shape[0] - crop_h + 1))
    left = int(rng.integers(0, picture.shape[1] - crop_w + 1))
    crop = picture[top : top + crop_h, left : left + crop_w]
    if rng.random() < 0.5:
        crop = crop[::-1]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return transform.resize(crop, shape, order=1, mode="reflect", anti_aliasing=False).astype(np.float32)


def localised(image: Image, channel_index: int, structure: str, seed: int) -> str:
    """The structure a channel shows in this image.

    In a localisation screen each well images another tagged protein, so a fluorescent channel
    shows another compartment from image to image; the draw is per (image, channel), the same at
    every z and t. `per_image` keeps the first channel as the nuclear counterstain; `per_image_all`
    draws it too, so that no channel position always shows the same structure.
    """
    if image.localisation == "fixed" or structure not in COMPARTMENTS:
        return structure
    if image.localisation == "per_image" and channel_index == 0:
        return structure
    rng = np.random.default_rng([seed, image.id, channel_index, 0x10CA])
    return COMPARTMENTS[int(rng.integers(len(COMPARTMENTS)))]


def synthesize_plane(
    image: Image, channel_index: int, z: int, t: int, seed: int, cells: CellField | None = None
) -> np.ndarray:
    """The raw plane (H, W) of one channel at (z, t), in the image's pixel type."""
    channel = image.channels[channel_index]
    dtype = _NUMPY_TYPES[image.pixels_type]
    if image.width == 0 or image.height == 0:
        return np.zeros((image.height, image.width), dtype=dtype)
    rng = np.random.default_rng([seed, image.id, channel_index, z, t, 0x9A7E])
    shape = (image.height, image.width)
    signal = None
    if channel.structure == "real_cell":
        signal = _real_signal("cell", shape, rng)
    elif channel.structure == "real_nuclei":
        signal = _real_signal("human_mitosis", shape, rng)
    if signal is None:
        if cells is None:
            cells = cell_field(image, seed, t)
        structure = {"real_cell": "brightfield", "real_nuclei": "nuclei"}.get(
            channel.structure, channel.structure
        )
        signal = _structure_signal(localised(image, channel_index, structure, seed), cells, rng)
    # Planes away from the focal plane are blurred, as in a widefield z-stack.
    defocus = abs(z - (image.size_z - 1) / 2.0)
    if defocus > 0:
        signal = ndimage.gaussian_filter(signal, 1.2 * defocus)
    return _to_pixel_values(signal.astype(np.float32), channel, dtype, rng)


def _to_pixel_values(
    signal: np.ndarray, channel: Channel, dtype: type, rng: np.random.Generator
) -> np.ndarray:
    """Map the signal so that background sits near the window start and bright cells near its end."""
    start, end = channel.window_start, channel.window_end
    values = start + signal * (end - start) * 0.95
    # Shot-like noise grows with intensity; read noise is a few percent of the window.
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    values += noise * (0.015 * (end - start) + 0.03 * np.sqrt(np.abs(values - channel.window_min) + 1.0))
    values = np.clip(values, channel.window_min, channel.window_max)
    if dtype is np.float32:
        return values.astype(np.float32)
    return np.rint(values).astype(dtype)


class PlaneCache:
    """Synthesises planes on demand and keeps the most recent ones up to `max_bytes` (thread-safe)."""

    def __init__(self, seed: int, max_bytes: int = 256 * 2**20) -> None:
        self.seed = seed
        self.max_bytes = max_bytes
        self._planes: OrderedDict[tuple[int, int, int, int], np.ndarray] = OrderedDict()
        self._fields: OrderedDict[tuple[int, int], CellField] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def plane(self, image: Image, channel_index: int, z: int, t: int) -> np.ndarray:
        key = (image.id, channel_index, z, t)
        with self._lock:
            cached = self._planes.get(key)
            if cached is not None:
                self._planes.move_to_end(key)
                self.hits += 1
                return cached
            self.misses += 1
        plane = synthesize_plane(image, channel_index, z, t, self.seed, self._cell_field(image, t))
        plane.setflags(write=False)
        with self._lock:
            if key not in self._planes:
                self._planes[key] = plane
                self._bytes += plane.nbytes
            while self._bytes > self.max_bytes and len(self._planes) > 1:
                _, evicted = self._planes.popitem(last=False)
                self._bytes -= evicted.nbytes
        return plane

    def _cell_field(self, image: Image, t: int) -> CellField | None:
        if image.width == 0 or image.height == 0:
            return None
        key = (image.id, t)
        with self._lock:
            cells = self._fields.get(key)
            if cells is not None:
                self._fields.move_to_end(key)
                return cells
        cells = cell_field(image, self.seed, t)
        with self._lock:
            self._fields[key] = cells
            while len(self._fields) > 8:  # a field is a few planes' worth of memory; keep only recent ones
                self._fields.popitem(last=False)
        return cells
