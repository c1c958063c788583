"""Local image files -> one 2-D plane per channel -> the format's 224 x 224 8-bit PNGs.

An image is either a list of per-channel files (each one 2-D plane), or one file holding every
channel: a (C, H, W) or (H, W, C) stack, or a "tape" (the channels side by side in one 2-D image,
channel k in columns [k * w, (k + 1) * w) for a channel width w, the layout CHAMMI ships).

Each channel is mapped to 8 bits through a window [start, end] (given, else by `WINDOW_MODES`: the
channel's 0.1 and 99.9 percentiles, its dtype's range, its min and max, or chadavit-bench's rule),
then resized and encoded exactly as `idrcell build` does
(`render.resize_to_square`, `render.encode_png`). Pure functions of the file bytes: the same files
always give the same PNG bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from idrcell.render import PixelError, encode_png, open_image, resize_to_square
from idrcell.zarr_source import window_to_uint8

# The default window: the channel's 0.1 and 99.9 percentiles, so that a few hot or dead pixels do
# not decide the contrast of the other 99.8 %. numpy's default (linear) interpolation.
PERCENTILES = (0.1, 99.9)
# percentiles: the default. dtype: an integer type's whole range (8-bit pixels stay as they are).
# minmax: the channel's own min and max. bench: dtype for 8-bit pixels, else minmax, which is how
# chadavit-bench reads an image (`chadavit_bench.imaging.scale_to_unit`), so that a model trained on
# the import sees the intensities the bench will show it.
WINDOW_MODES = ("percentiles", "dtype", "minmax", "bench")
# The largest side read from disk (checked from the header, before decoding): a 16,384 px square
# of uint16 is 512 MiB, more than any field of view these importers are meant for.
MAX_SIDE = 16384
TIFF_SUFFIXES = (".tif", ".tiff")
LAYOUTS = ("auto", "chw", "hwc")
# Stacks with at most this many planes on the first (or last) axis are read as (C, H, W) (or
# (H, W, C)) by `layout` auto: microscopy channel counts are small, image sides are not.
MAX_STACK_CHANNELS = 16


class ImageFileError(ValueError):
    """A file that cannot give this image's channels; the message names the file and the reason."""


@dataclass(frozen=True)
class ImageSpec:
    """Where one image's channels are: several per-channel files, or one file (stack or tape)."""

    files: tuple[Path, ...]
    channel_width: int | None = None  # a tape image of channels this many columns wide
    layout: str = "auto"  # of a one-file stack: auto, chw or hwc


def read_array(path: Path) -> np.ndarray:
    """The pixels of one file: TIFF through tifffile (its first series), others through PIL.

    The declared size is checked against `MAX_SIDE` before the pixels are decoded.
    """
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tiff:
                if not tiff.series:
                    raise ImageFileError(f"{path}: a TIFF without an image")
                series = tiff.series[0]
                if max(series.shape, default=0) > MAX_SIDE * MAX_STACK_CHANNELS or any(
                    side > MAX_SIDE for side in sorted(series.shape)[-2:]
                ):
                    raise ImageFileError(f"{path}: the TIFF declares {series.shape}, larger than allowed")
                array = series.asarray()
        else:
            data = path.read_bytes()
            with open_image(data, MAX_SIDE * MAX_STACK_CHANNELS, MAX_SIDE) as image:
                image.load()
                array = _pil_array(image)
    except ImageFileError:
        raise
    except PixelError as error:
        raise ImageFileError(f"{path}: {error}") from None
    except OSError as error:
        raise ImageFileError(f"{path}: unreadable ({error.strerror or error})") from None
    except (SyntaxError, ValueError, EOFError, tifffile.TiffFileError) as error:
        raise ImageFileError(f"{path}: undecodable ({error})") from None
    array = np.squeeze(array)
    if array.size == 0:
        raise ImageFileError(f"{path}: an image of 0 pixels")
    if array.dtype.kind not in "uif" and array.dtype != np.bool_:
        raise ImageFileError(f"{path}: pixels of type {array.dtype}, not numbers")
    return array


def _pil_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("L", "I;16", "I;16B", "I;16L", "I", "F", "RGB", "RGBA"):
        return np.asarray(image)
    if image.mode in ("LA", "P", "1", "CMYK", "YCbCr"):
        # A palette or a grey image with alpha: its luminance (alpha is no channel of a microscope).
        return np.asarray(image.convert("L"))
    raise ImageFileError(f"PIL mode {image.mode} is not supported")


def _stack_planes(array: np.ndarray, layout: str, path: Path) -> list[np.ndarray]:
    if array.ndim == 2:
        return [array]
    if array.ndim != 3:
        raise ImageFileError(f"{path}: {array.ndim}-D pixels {array.shape}; expected 2-D or a 3-D stack")
    if layout == "auto":
        first, last = array.shape[0] <= MAX_STACK_CHANNELS, array.shape[2] <= MAX_STACK_CHANNELS
        if first == last:
            raise ImageFileError(
                f"{path}: cannot tell the channel axis of a {array.shape} stack; give layout chw or hwc"
            )
        layout = "chw" if first else "hwc"
    planes = array if layout == "chw" else np.moveaxis(array, 2, 0)
    return [np.ascontiguousarray(plane) for plane in planes]


def tape_planes(array: np.ndarray, channel_width: int, path: Path | str = "image") -> list[np.ndarray]:
    """A tape image (h, c * w) -> its c planes of (h, w), channel k from columns [k * w, (k + 1) * w).

    The same unfolding as CHAMMI's `np.reshape(img, (h, w, -1), order="F")`.
    """
    if array.ndim != 2:
        raise ImageFileError(f"{path}: a tape image must be 2-D, got {array.shape}")
    width = array.shape[1]
    if channel_width < 1 or width % channel_width:
        raise ImageFileError(f"{path}: width {width} is not a multiple of channel_width {channel_width}")
    return [array[:, k : k + channel_width] for k in range(0, width, channel_width)]


def read_planes(spec: ImageSpec) -> list[np.ndarray]:
    """The image's channels as 2-D planes of one size, in channel order."""
    if spec.channel_width is not None:
        if len(spec.files) != 1:
            raise ImageFileError(f"a tape image is one file; {len(spec.files)} were given")
        return tape_planes(read_array(spec.files[0]), spec.channel_width, spec.files[0])
    if len(spec.files) == 1:
        planes = _stack_planes(read_array(spec.files[0]), spec.layout, spec.files[0])
    else:
        planes = []
        for path in spec.files:
            array = read_array(path)
            if array.ndim != 2:
                raise ImageFileError(
                    f"{path}: a per-channel file holds {array.shape} pixels, not one 2-D plane"
                )
            planes.append(array)
    shapes = {plane.shape for plane in planes}
    if len(shapes) > 1:
        raise ImageFileError(f"{spec.files[0]}: channels of different sizes {sorted(shapes)} in one image")
    return planes


def auto_window(plane: np.ndarray, mode: str) -> tuple[float, float]:
    """The window of a channel without one, by `mode` (see `WINDOW_MODES`)."""
    if mode == "bench":
        mode = "dtype" if plane.dtype == np.uint8 else "minmax"
    if mode == "dtype" and plane.dtype.kind in "ui":
        info = np.iinfo(plane.dtype)
        return float(info.min), float(info.max)
    if mode == "dtype" and plane.dtype == np.bool_:
        return 0.0, 1.0
    values = plane.astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ImageFileError("a channel without one finite pixel")
    if mode == "minmax":
        return float(finite.min()), float(finite.max())
    low, high = np.percentile(finite, PERCENTILES)
    return float(low), float(high)


def to_uint8(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """[start, end] -> [0, 255] as OMERO renders (`zarr_source.window_to_uint8`); NaN -> 0."""
    values = plane.astype(np.float32)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        values = np.nan_to_num(values, nan=window[0], posinf=window[1], neginf=window[0])
    return window_to_uint8(values, *window)


def channel_png(plane: np.ndarray, window: tuple[float, float]) -> bytes:
    """One channel's stored PNG: window to 8 bits, then `idrcell build`'s resize and encoding."""
    return encode_png(resize_to_square(to_uint8(plane, window)))


def render_image(
    spec: ImageSpec, windows: Sequence[tuple[float, float] | None], mode: str
) -> tuple[list[bytes], list[tuple[float, float]], np.ndarray]:
    """(PNGs, the windows used, a plane for the size) of one image; `windows[i]` None -> `auto_window`."""
    planes = read_planes(spec)
    if windows and len(windows) != len(planes):
        raise ImageFileError(
            f"{spec.files[0]}: {len(windows)} windows given for an image of {len(planes)} channels"
        )
    used: list[tuple[float, float]] = []
    for index, plane in enumerate(planes):
        given = windows[index] if windows else None
        try:
            used.append(given if given is not None else auto_window(plane, mode))
        except ImageFileError as error:
            raise ImageFileError(f"{spec.files[0]}: channel {index}: {error}") from None
    return [channel_png(p, w) for p, w in zip(planes, used, strict=True)], used, planes[0]
